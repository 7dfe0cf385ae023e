"""Log lines for journald and for machines: one event per line, secrets masked.

`--log-format json` gives one JSON object per line (time, level, logger, message). Whatever the
format, values of a server's `env` that look like credentials are replaced by `***` before a line
is written: status and logs must never print a secret.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable

import orjson

SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|PAT|PRIVATE)", re.I)
MIN_SECRET_LENGTH = 6


class Redactor:
    """Replaces known secret values with `***` in any text."""

    def __init__(self) -> None:
        self._pattern: re.Pattern[str] | None = None

    def update(self, secrets: Iterable[str]) -> None:
        values = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub("***", text)


REDACT = Redactor()


def secret_values(env: dict[str, str]) -> list[str]:
    """Values of variables whose names say they are credentials."""
    return [value for name, value in env.items() if SECRET_NAME.search(name) and value]


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = REDACT(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(event).decode()
