"""The level of a child's stderr line, for colouring the log view.

The daemon is to publish a `level` with each log line (from its stderr level mapping); where it
does, the dashboard uses that. Until then, and for lines from a daemon that does not, `level_of`
reads the usual logger shapes itself: an uppercase level word (`ERROR`, `WARN`), a bracketed or
`level=` word in any case (`[error]`, `level=warn`), `Error:` or a Python traceback opening the
line. A line that names no level is `info` (children print their chatter to stderr because stdout
is the protocol), and a line that merely mentions "0 errors" stays `info`.
"""

from __future__ import annotations

import re

LEVELS = ("debug", "info", "warning", "error", "critical")

LEVEL_STYLES = {
    "debug": "dim",
    "info": "",
    "warning": "yellow",
    "error": "bold red",
    "critical": "bold white on red",
}

LEVEL_TAGS = {"debug": "DBG", "info": "INF", "warning": "WRN", "error": "ERR", "critical": "CRT"}
"""Three letters per level, so the message column lines up."""

_WORDS = {
    "trace": "debug", "debug": "debug", "dbg": "debug",
    "info": "info", "notice": "info",
    "warn": "warning", "warning": "warning",
    "error": "error", "err": "error",
    "critical": "critical", "crit": "critical", "fatal": "critical", "panic": "critical",
}  # fmt: skip
_WORD = "|".join(sorted(_WORDS, key=len, reverse=True))
_MARKER = re.compile(
    rf"""\b(?P<upper>(?-i:TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|CRITICAL|FATAL|PANIC))\b
       | [\[(<](?P<bracket>{_WORD})[\])>:]
       | \blevel[=:]\s*"?(?P<kv>{_WORD})\b
       | ^\s*(?P<lead>{_WORD})\s*:
       | ^(?P<trace>Traceback\s\(most\srecent\scall\slast\)|\w*(?:Error|Exception):\s)
    """,
    re.IGNORECASE | re.VERBOSE,
)
SCAN = 120
"""A logger puts the level near the start of the line; the rest is the message."""


def level_of(line: str) -> str:
    """One of LEVELS for a stderr line."""
    match = _MARKER.search(line[:SCAN])
    if match is None:
        return "info"
    if match.lastgroup == "trace":
        return "error"
    return _WORDS[match.group(match.lastgroup or 0).lower()]


def known_level(value: object, line: str) -> str:
    """The daemon's `level` when it sent a valid one, else the level read from the line."""
    return value if isinstance(value, str) and value in LEVELS else level_of(line)
