"""The time a server and its children read: injected, so tests move it by hand.

`Server`, its `Instance`s and the per-client instances never call `time.monotonic()` or
`time.time()` themselves; they read the `Clock` in their `FleetContext`. The daemon uses the
system's; an in-process test passes a clock it advances (trio's `MockClock` is the model), so
deadlines, backoff, breaker cooldowns, rate limits and idle stop are decided at the instant the
test says, without sleeping. Waiting (`anyio.sleep`, `move_on_after`) stays on the event loop's
own clock: the parts a test drives are the synchronous decisions those loops call.
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
