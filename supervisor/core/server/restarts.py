"""Restart decisions: how a child's life ended, and what the slot does next (pure), plus the record.

When a slot's child ends, `ending_of` names the ending (replaced on purpose, failed to start,
crashed) with the reason the server shows; the policy's `RestartTracker` (`policy.states`) turns
it into a delay or a verdict to give up; `next_step` says what the slot does with that:

    replaced (unresponsive, memory)  start again at once, or give up: "restart loop: ..."
    start failure                    back off, or give up: "<reason> (<why>)"
    crash                            back off, or give up: "crash loop: <why>; last: <reason>"

`RestartBook` is what `status` shows of it: how many restarts, why, and the last few with times.
Start failures are not restarts (the child never served), but they are counted among the reasons.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from supervisor.policy.states import Decision, Exit
from supervisor.telemetry.logs import REDACT

from ..instance import ExitInfo

HISTORY = 50  # restarts kept for `supervisor/status {detail: true}`


@dataclass(frozen=True)
class Ending:
    """How one child's life ended, as the restart policy and the status see it."""

    kind: Exit
    reason: str  # the server's `last_exit`
    last_stderr: list[str]
    uptime: float | None = None  # of a crash: how long it had served

    @property
    def replaced(self) -> bool:
        """Ended on purpose by the supervisor (unresponsive, over its memory limit)."""
        return self.kind not in (Exit.CRASH, Exit.START_FAILURE)


def ending_of(restart_kind: str | None, restart_reason: str | None, tail: list[str],
              info: ExitInfo | None, spawn_error: str | None, uptime: float) -> Ending:
    """`restart_kind`/`restart_reason`: set when the supervisor replaced the child; `tail`: its
    last stderr lines then; `info`: how it exited (None when it never ran); `uptime`: since it
    was ready (a crash's)."""
    if restart_kind is not None:
        kind = Exit(restart_kind)
        return Ending(kind, restart_reason or str(kind), tail)
    if info is None or info.before_ready:
        what = spawn_error or (info.describe() if info else "did not start")
        stderr = info.last_stderr if info else []
        last = (stderr[-1] if stderr else "").strip()
        return Ending(Exit.START_FAILURE, f"{what}: {last}" if last else what, stderr)
    reason = f"crashed: {info.describe()}"
    if info.last_stderr:
        reason += f": {info.last_stderr[-1].strip()}"
    return Ending(Exit.CRASH, reason, info.last_stderr, uptime)


@dataclass(frozen=True)
class Step:
    """What the slot does after an ending: give up (with this reason), or wait `delay` (none for
    a replacement) and start again, showing `slot_reason` meanwhile."""

    give_up: str | None
    slot_reason: str
    delay: float


def next_step(ending: Ending, decision: Decision) -> Step:
    reason = ending.reason
    if ending.replaced:
        return Step(f"restart loop: {decision.why}; last: {reason}" if decision.give_up else None,
                    f"restarting: {reason}", 0.0)
    if decision.give_up:
        give_up = (f"{reason} ({decision.why})" if ending.kind == Exit.START_FAILURE
                   else f"crash loop: {decision.why}; last: {reason}")
        return Step(give_up, "", 0.0)
    return Step(None, f"{reason}; next start in {decision.delay:.1f}s", decision.delay)


class RestartBook:
    """A server's restarts: the count, the count per reason, the last `HISTORY` with times."""

    def __init__(self, server: str, publish: Callable[[dict[str, Any]], None],
                 time: Callable[[], float]) -> None:
        self.server = server
        self._publish = publish
        self._time = time
        self.restarts = 0
        self.reasons: collections.Counter[str] = collections.Counter()
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY)

    def count(self, kind: str, reason: str) -> None:
        """One restart (a crash, a replacement, an operator's, a reload's), published."""
        self.restarts += 1
        self.reasons[kind] += 1
        at = self._time()
        self.history.append({"at": at, "kind": kind, "detail": REDACT(reason)})
        self._publish({"type": "restart", "server": self.server, "reason": kind, "detail": reason,
                       "at": at})

    def carry_over(self, old: RestartBook) -> None:
        """A changed entry replaced the server: its count goes on, one more for "config"."""
        self.restarts = old.restarts + 1
        self.reasons = old.reasons.copy()
        self.reasons["config"] += 1
