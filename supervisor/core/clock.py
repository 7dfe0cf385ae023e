"""The time core reads: injected, so tests move it by hand.

Nothing in `supervisor.core` calls `time.monotonic()` or `time.time()` itself. `Server`, its
`Instance`s, the per-client instances, tool pins, the fleet and the memory watch read the `Clock`
in their `FleetContext`; the parts that live beside a fleet (sessions, the input-required and task
tables, the installer, leftover-process cleanup) take one as an argument, the system's by default.
The daemon uses the system's; an in-process test passes a clock it advances (trio's `MockClock` is
the model), so deadlines, backoff, breaker cooldowns, rate limits, state expiry and idle stop are
decided at the instant the test says, without sleeping. (The cache and the cluster limiter take a
plain `clock` function the same way.) Waiting (`anyio.sleep`, `move_on_after`) stays on the event
loop's own clock: the parts a test drives are the synchronous decisions those loops call.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: deadlines, durations, rates."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch: what is shown and published ("since", "at")."""


class SystemClock:
    """The real clocks: the functions themselves, so a bound `clock.monotonic` on the hot path costs
    what `time.monotonic` does."""

    __slots__ = ()
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


SYSTEM_CLOCK: Clock = SystemClock()
