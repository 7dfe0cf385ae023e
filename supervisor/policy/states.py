"""Server states and the pure rules about them: what each means, and how long to back off.

Depends on nothing, so the restart policy can be tested as tables (OTP-style restart intensity:
at most `max_restarts` within `restart_window`, then give up).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence


class State(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    DEGRADED = "degraded"  # answers probes, but real requests time out or its breaker is open
    BACKOFF = "backoff"  # crashed; waiting before the next start
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"  # gave up: crash loop, or a start that keeps failing; `restart` revives it
    UNAVAILABLE = "unavailable"  # a prerequisite is missing: no spawn until it is provided


SERVING = frozenset({State.READY, State.DEGRADED})
DESCRIPTIONS = {
    State.STARTING: "spawned; waiting for the MCP handshake and the tools list",
    State.READY: "answering requests",
    State.DEGRADED: "running, but requests time out or fail; the circuit breaker decides",
    State.BACKOFF: "exited unexpectedly; will be started again after a delay",
    State.STOPPING: "being stopped (stdin closed, then SIGTERM, then SIGKILL)",
    State.STOPPED: "not running because it was stopped (or is lazy and not needed yet)",
    State.FAILED: "gave up after repeated failures; `mcpctl restart NAME` tries again",
    State.UNAVAILABLE: "cannot start: a command, a variable or a path it needs is missing",
}


def backoff_delay(attempt: int, initial: float, maximum: float, *, jitter: float = 0.2,
                  rng: random.Random | None = None) -> float:
    """Capped exponential backoff: initial * 2**(attempt-1), at most `maximum`, +/- jitter.

    `attempt` counts from 1. Jitter spreads restarts of servers that crashed together (a shared
    dependency went away) so they do not stampede it when it comes back.
    """
    if attempt < 1:
        return 0.0
    base = min(maximum, initial * (2 ** min(attempt - 1, 30)))
    if jitter:
        spread = base * jitter
        base += (rng or random).uniform(-spread, spread)
    return float(max(0.0, min(maximum, base)))


def start_failure_delay(failures: int, initial: float, maximum: float) -> float:
    """A child that exits before the handshake is misconfigured, not unlucky: back off harder
    (4x per attempt) so a missing credential does not become a restart storm."""
    if failures < 1:
        return 0.0
    return float(min(maximum, max(initial, 1.0) * (4 ** (failures - 1))))


def over_intensity(restart_times: Sequence[float], now: float, max_restarts: int,
                   window: float) -> bool:
    """True when more than `max_restarts` restarts happened within the last `window` seconds."""
    recent = [t for t in restart_times if now - t <= window]
    return len(recent) > max_restarts


class Exit(enum.StrEnum):
    """Why a child went away, as the restart policy sees it (also the `restart_reasons` keys)."""

    CRASH = "crash"  # exited after ready, without being asked: any code, or a signal
    UNRESPONSIVE = "unresponsive"  # health probes failed `unhealthy_after` times in a row
    MEMORY = "memory"  # over its memory limit (or the fleet's) for consecutive samples
    START_FAILURE = "start-failure"  # exited (or never answered) before the handshake finished


class Decision:
    """What to do after an exit: start again after `delay` seconds, or give up."""

    __slots__ = ("delay", "give_up", "why")

    def __init__(self, give_up: bool, delay: float, why: str = "") -> None:
        self.give_up = give_up
        self.delay = delay
        self.why = why

    def __repr__(self) -> str:
        return f"Decision(give_up={self.give_up}, delay={self.delay:g}, why={self.why!r})"


class RestartTracker:
    """One server's restart bookkeeping, fed explicit times so it can be tested as a table.

    - Crashes back off exponentially (`backoff_delay`); a child that stayed up `stable_after`
      starts the backoff over.
    - Every automatic restart (crash, unresponsive, memory) counts towards the OTP restart
      intensity: more than `max_restarts` within `restart_window` gives up. A child that hangs or
      leaks every time is a loop too, just a slower one.
    - Unresponsive and memory restarts start the replacement at once: the old child was ended on
      purpose and there is nothing to wait out.
    - Exits before the handshake are configuration faults: 4x backoff per attempt, give up after
      `max_start_failures` in a row. A child that reaches ready clears that count.
    - `reset()` (an operator's `restart`, a reload) forgets everything.
    """

    def __init__(self, *, max_restarts: int, restart_window: float, max_start_failures: int,
                 backoff_initial: float, backoff_max: float, stable_after: float,
                 rng: random.Random | None = None) -> None:
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.max_start_failures = max_start_failures
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.rng = rng
        self.attempt = 0
        self.start_failures = 0
        self.restart_times: list[float] = []

    def reset(self) -> None:
        self.attempt = 0
        self.start_failures = 0
        self.restart_times.clear()

    def ready(self) -> None:
        self.start_failures = 0

    def exited(self, kind: Exit, now: float, uptime: float | None = None) -> Decision:
        if kind is Exit.START_FAILURE:
            self.start_failures += 1
            if self.start_failures >= self.max_start_failures:
                return Decision(True, 0.0, f"gave up after {self.start_failures} failed starts")
            return Decision(False, start_failure_delay(self.start_failures, self.backoff_initial,
                                                       self.backoff_max))
        # Forget restarts that left the window, so the list stays as short as max_restarts.
        self.restart_times = [t for t in self.restart_times if now - t <= self.restart_window]
        self.restart_times.append(now)
        if over_intensity(self.restart_times, now, self.max_restarts, self.restart_window):
            return Decision(True, 0.0, f"{len(self.restart_times)} restarts within "
                                       f"{self.restart_window:g}s")
        if kind is not Exit.CRASH:
            return Decision(False, 0.0)
        if uptime is not None and uptime >= self.stable_after:
            self.attempt = 0
        self.attempt += 1
        return Decision(False, backoff_delay(self.attempt, self.backoff_initial, self.backoff_max,
                                             rng=self.rng))
