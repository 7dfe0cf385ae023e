"""The log level a child's stderr line carries, read from the line itself.

Children write whatever their language's logger writes: Python's `logging` (`ERROR:root:...`,
`2026-12-01 10:00:00,123 - app - WARNING - ...`), Node loggers (`[error] ...`, pino's
`{"level":50,...}`, winston's `{"level":"warn",...}`), Rust's tracing (`... ERROR crate: ...`),
Go's `level=error`, a bare `Error: ...` from an uncaught Node exception, a Python traceback, or
argparse's `prog: error: ...`.
`level_of` finds the first such marker near the start of the line; a line without one is `info`
(most children print progress chatter to stderr because stdout is the protocol).

Only markers in a logger's shape count: an uppercase word (`ERROR`, `WARN`), a bracketed or
`level=` word in any case, a JSON `level` field, or `error:` opening the line. A message that
merely says "0 errors" stays `info`.
"""

from __future__ import annotations

import logging
import re

DEBUG = "debug"
INFO = "info"
WARNING = "warning"
ERROR = "error"
CRITICAL = "critical"

LEVELS = (DEBUG, INFO, WARNING, ERROR, CRITICAL)
LOGGING_LEVEL = {DEBUG: logging.DEBUG, INFO: logging.INFO, WARNING: logging.WARNING,
                 ERROR: logging.ERROR, CRITICAL: logging.CRITICAL}

_WORDS = {
    "trace": DEBUG, "debug": DEBUG, "dbg": DEBUG, "verbose": DEBUG,
    "info": INFO, "information": INFO, "notice": INFO, "log": INFO,
    "warn": WARNING, "warning": WARNING,
    "error": ERROR, "err": ERROR, "eror": ERROR,
    "critical": CRITICAL, "crit": CRITICAL, "fatal": CRITICAL, "panic": CRITICAL,
    "emerg": CRITICAL, "alert": CRITICAL,
}
# pino / bunyan numeric levels.
_NUMBERS = {10: DEBUG, 20: DEBUG, 30: INFO, 40: WARNING, 50: ERROR, 60: CRITICAL}

_WORD = "|".join(sorted(_WORDS, key=len, reverse=True))
_MARKER = re.compile(
    rf"""^\s*(?P<lead>{_WORD})(?:\s*:|!)
       | ^(?P<npm>npm\s+ERR!)
       | ^[\w./-]+:\s(?P<prog>error|warning):\s
       | ^(?P<trace>Traceback\s\(most\srecent\scall\slast\)|\s*(?-i:(?:Uncaught\s)?\w*(?:Error|Exception)):\s)
       | [\[(<](?P<bracket>{_WORD})[\])>:]
       | \blevel(?:name)?[=:]\s*"?(?P<kv>{_WORD}|\d\d)\b
       | "level(?:name)?"\s*:\s*"?(?P<json>{_WORD}|\d\d)\b
       | (?P<pywarn>(?-i:\b\w*Warning):\s)
       | (?P<upper>(?-i:\b(?:TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|CRITICAL|FATAL|PANIC)\b))
    """,
    re.IGNORECASE | re.VERBOSE,
)
SCAN = 200  # a logger puts the level near the start; the rest of a long line is the message


def level_of(line: str) -> str:
    """One of LEVELS for a child's stderr line (`info` when the line names none)."""
    for match in _MARKER.finditer(line[:SCAN]):
        kind = match.lastgroup
        text = match.group(kind or 0)
        if kind in ("upper", "bracket", "kv", "json", "lead", "prog"):
            word = text.lower()
            if word.isdigit():
                number = _NUMBERS.get(int(word))
                if number is not None:
                    return number
                continue
            return _WORDS[word]
        if kind in ("npm", "trace"):
            return ERROR
        if kind == "pywarn":
            return WARNING
    return INFO


def logging_level(level: str) -> int:
    return LOGGING_LEVEL.get(level, logging.INFO)
