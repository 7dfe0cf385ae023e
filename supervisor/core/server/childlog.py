"""A server's log: its children's stderr and log messages, and its own notes.

A mixin of `Server` (this part reads only the attributes it declares). Every line goes into the
server's ring (for `mcpctl logs` and the dashboard) with its arrival time, and is published as a
log event; the daemon's own log gets it too, but rate-limited, so a chatty child cannot flood the
journal.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Any

from supervisor.policy.stderr_levels import level_of, logging_level
from supervisor.telemetry.logs import REDACT, LineRing, LogBudget

from ..clock import Clock
from ..instance import Instance
from .context import FleetContext

log = logging.getLogger("mcp_supervisor.server")
stderr_log = logging.getLogger("mcp_supervisor.child")

STDERR_RING = 2000
STDERR_RING_BYTES = 1024 * 1024
LOG_MESSAGE_CHARS = 2000  # of a child's notifications/message data, in the daemon's log
STDERR_LOG_PER_SECOND = 50


class ChildLog:
    """The log half of a `Server`."""

    name: str
    ctx: FleetContext
    clock: Clock
    _monotonic: Callable[[], float]
    stderr: LineRing
    stderr_at: collections.deque[float]
    _stderr_budget: LogBudget
    _message_budget: LogBudget

    def _log_message(self, params: dict[str, Any]) -> None:
        """A child's log message into the daemon's log: rate-limited like its stderr, cut short."""
        log_it, held_back = self._message_budget.admit(self._monotonic())
        if held_back:
            log.info("%s: (%d more log messages in the last second not logged)", self.name, held_back)
        if log_it:
            text = str(params.get("data"))
            if len(text) > LOG_MESSAGE_CHARS:
                text = text[:LOG_MESSAGE_CHARS] + " [cut]"
            log.info("%s: [%s] %s", self.name, str(params.get("level", "info"))[:20], text)

    def _record(self, line: str, level: str) -> None:
        """One line into this server's log: the ring, its arrival time, the log event."""
        at = self.clock.time()
        self.stderr.append(line)
        self.stderr_at.append(at)
        self.ctx.publish({"type": "log", "server": self.name, "line": line, "level": level, "at": at})

    def child_stderr(self, instance: Instance, line: str) -> None:
        level = level_of(line)
        self._record(line, level)
        # Into the daemon's own log too, but a chatty child must not flood the journal.
        log_it, held_back = self._stderr_budget.admit(self._monotonic())
        if held_back:
            stderr_log.info("%s: (%d more stderr lines in the last second not logged; "
                            "see mcpctl logs %s)", self.name, held_back, self.name)
        if log_it:
            stderr_log.log(logging_level(level), "%s: %s", self.name, line)

    def note(self, text: str) -> None:
        """A line of our own in this server's log (ring, file, `mcpctl logs`) and the daemon log."""
        self._record(REDACT(f"[mcp-supervisor] {text}"), "info")
        log.info("%s: %s", self.name, text)

    def stderr_times(self, count: int) -> list[float | None]:
        """Arrival times of the last `count` lines of `stderr`; None for lines older than the
        times kept (a config change carries the lines of the old server over, not their times)."""
        times = list(self.stderr_at)[-count:] if count > 0 else []
        return [*([None] * (count - len(times))), *times]
