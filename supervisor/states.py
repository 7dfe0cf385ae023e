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
