"""Log lines for journald and for machines, children's stderr in files; secrets masked everywhere.

The daemon's own log: one event per line on stderr. `--log-format json` gives one JSON object per
line (time, level, logger, message, exception). Under systemd (`$JOURNAL_STREAM` names our stderr)
text lines start with a `<N>` syslog priority instead of a timestamp, so journald records the level
and adds the time itself.

Each child's stderr goes to `STATE_DIR/logs/NAME.log` (rotated by size: NAME.log.1 ... .3) by
`ChildLogFiles`, which batches lines and writes them from a worker thread so a slow disk never
stalls the event loop; past a bound it drops lines and counts them (a metric) rather than grow.

Secrets (see `supervisor.config.secrets_mask` for what counts) are replaced by `***` before any line is
written or kept: the daemon's log (whole formatted line, tracebacks included), each child's stderr
at the source (ring, files, `mcpctl logs`, events) and every state reason shown by `mcpctl status`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import anyio
import orjson

from supervisor.config.secrets_mask import MASK
from supervisor.paths import private_dir

# What is secret and how it is masked is decided in one place: supervisor.config.secrets_mask.
REDACT = MASK


class RedactingHandler(logging.StreamHandler[TextIO]):
    """Masks secrets in the whole formatted line: message, arguments and traceback alike."""

    def format(self, record: logging.LogRecord) -> str:
        return REDACT(super().format(record))


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


_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """`<6>logger: message`: journald reads the priority prefix and stamps the time itself."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"<{_PRIORITY.get(record.levelno, 6)}>{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        return text


def stderr_is_journal(environ: Mapping[str, str], fd: int = 2) -> bool:
    """True when `$JOURNAL_STREAM` ("DEV:INODE") is the file `fd` points at (systemd sets it)."""
    value = environ.get("JOURNAL_STREAM", "")
    dev, _, inode = value.partition(":")
    if not dev.isdigit() or not inode.isdigit():
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return st.st_dev == int(dev) and st.st_ino == int(inode)


class LineRing:
    """The last lines of a stream, bounded in count and in bytes.

    Lines are counted by length plus a per-line overhead (what a short line costs in a deque), so
    a child writing few long lines and one writing many short ones are held to the same memory.
    A single line longer than `max_line` is cut there."""

    __slots__ = ("_lines", "_size", "max_bytes", "max_line", "max_lines")

    LINE_OVERHEAD = 64

    def __init__(self, max_lines: int, max_bytes: int, max_line: int = 8192) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.max_line = max_line
        self._lines: collections.deque[str] = collections.deque()
        self._size = 0

    def append(self, line: str) -> None:
        if len(line) > self.max_line:
            line = line[:self.max_line] + " [cut]"
        lines = self._lines
        lines.append(line)
        self._size += len(line) + self.LINE_OVERHEAD
        while len(lines) > self.max_lines or self._size > self.max_bytes:
            self._size -= len(lines.popleft()) + self.LINE_OVERHEAD

    def extend(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.append(line)

    def tail(self, count: int) -> list[str]:
        """The last `count` lines (none for count <= 0)."""
        if count <= 0:
            return []
        lines = self._lines
        return list(lines)[-count:] if count < len(lines) else list(lines)

    @property
    def size(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[str]:
        return iter(self._lines)

    def __len__(self) -> int:
        return len(self._lines)


class LogBudget:
    """At most `per_second` lines a second of one source into the daemon's log (a chatty child
    must not flood the journal); `admit` says whether to log this one and how many lines of the
    last window were held back, to be said once."""

    __slots__ = ("_logged", "_suppressed", "_window", "per_second")

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._window = -1e9
        self._logged = 0
        self._suppressed = 0

    def admit(self, now: float) -> tuple[bool, int]:
        held_back = 0
        if now - self._window >= 1.0:
            held_back = self._suppressed
            self._window = now
            self._logged = 0
            self._suppressed = 0
        if self._logged < self.per_second:
            self._logged += 1
            return True, held_back
        self._suppressed += 1
        return False, held_back


LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 3
MAX_PENDING_LINES = 20000
FLUSH_INTERVAL = 0.2


class ChildLogFiles:
    """Children's stderr lines into `DIR/NAME.log`, size-rotated, written off the event loop.

    `add` (event loop, per line) only appends to a list; `run` wakes at most every FLUSH_INTERVAL
    and hands the batch to a worker thread. While the thread writes, new lines wait in the next
    batch, up to MAX_PENDING_LINES; beyond that they are dropped and counted, never buffered
    without bound. Lines arrive here already redacted (see `Instance._read_stderr`).
    """

    def __init__(self, directory: Path, *, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS,
                 max_pending: int = MAX_PENDING_LINES, interval: float = FLUSH_INTERVAL) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.backups = backups
        self.max_pending = max_pending
        self.interval = interval
        self.dropped: collections.Counter[str] = collections.Counter()
        self._pending: dict[str, list[str]] = {}
        self._pending_count = 0
        self._unreported: collections.Counter[str] = collections.Counter()
        self._wake: anyio.Event | None = None
        self._failing = False  # the last write failed (warned once)

    def path(self, server: str) -> Path:
        return self.directory / f"{server}.log"

    def on_event(self, event: Mapping[str, Any]) -> None:
        """An EventBus subscriber: keeps the `log` events (one per stderr line)."""
        if event.get("type") == "log":
            self.add(str(event["server"]), str(event["line"]))

    def add(self, server: str, line: str) -> None:
        if self._pending_count >= self.max_pending:
            self.dropped[server] += 1
            self._unreported[server] += 1
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        self._pending.setdefault(server, []).append(f"{stamp} {line}\n")
        self._pending_count += 1
        if self._wake is not None:
            self._wake.set()

    def _take(self) -> dict[str, list[str]]:
        batch = self._pending
        for server, count in self._unreported.items():
            batch.setdefault(server, []).append(
                f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())} [mcp-supervisor: {count} lines "
                "dropped: the log writer fell behind]\n")
        self._unreported.clear()
        self._pending = {}
        self._pending_count = 0
        return batch

    async def run(self) -> None:
        try:
            while True:
                self._wake = anyio.Event()
                if not self._pending and not self._unreported:
                    await self._wake.wait()
                await anyio.sleep(self.interval)  # gather a batch: one write per file per interval
                batch = self._take()
                await anyio.to_thread.run_sync(self.write, batch)
        finally:
            with anyio.CancelScope(shield=True):
                batch = self._take()
                if batch:
                    await anyio.to_thread.run_sync(self.write, batch)

    def write(self, batch: Mapping[str, list[str]]) -> None:
        """Blocking: append each server's lines to its file, rotating first when it would overflow.

        Files are bookkeeping: when they cannot be written (the directory cannot be created, a
        full disk, no descriptors left) the lines are counted as dropped and the daemon says so
        once until writing works again; it never stops for it."""
        try:
            private_dir(self.directory)
        except OSError as exc:
            for server, lines in batch.items():
                self.dropped[server] += len(lines)
            self._warn(f"cannot create the log directory {self.directory}: {exc.strerror or exc}")
            return
        failed = False
        for server, lines in batch.items():
            data = "".join(lines).encode("utf-8", "replace")
            if len(data) > self.max_bytes:  # more than a whole file: keep the newest lines only
                cut = data.find(b"\n", len(data) - self.max_bytes) + 1
                self.dropped[server] += data.count(b"\n", 0, cut)
                data = data[cut:]
            path = self.path(server)
            try:
                size = path.stat().st_size
            except OSError:  # missing (0), or unreadable: the write below says why
                size = 0
            try:
                if size and size + len(data) > self.max_bytes:
                    self._rotate(path)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "ab") as handle:
                    handle.write(data)
            except OSError as exc:  # a full disk must not take the daemon down
                self.dropped[server] += len(lines)
                self._warn(f"cannot write {path}: {exc.strerror or exc}")
                failed = True
        if not failed and self._failing:
            self._failing = False
            logging.getLogger("mcp_supervisor.logs").info("child log files are written again")

    def _warn(self, text: str) -> None:
        if not self._failing:
            self._failing = True
            logging.getLogger("mcp_supervisor.logs").warning(
                "%s; child stderr lines are dropped (and counted) until this works again", text)

    def _rotate(self, path: Path) -> None:
        for index in range(self.backups - 1, 0, -1):
            older = path.with_name(f"{path.name}.{index}")
            if older.exists():
                os.replace(older, path.with_name(f"{path.name}.{index + 1}"))
        if self.backups > 0:
            os.replace(path, path.with_name(f"{path.name}.1"))
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
