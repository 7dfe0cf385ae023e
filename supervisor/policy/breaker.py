"""A per-server circuit breaker: fail fast while a server keeps failing, probe, recover.

    closed ──(breaker_errors failures within breaker_window)──▶ open
    open ──(breaker_cooldown elapsed; the next call is let through)──▶ half-open
    half-open ──(that call succeeds)──▶ closed
    half-open ──(that call fails)──▶ open (a fresh cooldown)

Failures are request outcomes that say the server, not the caller, is in trouble: timeouts, a
child that died under the request, and JSON-RPC internal errors (-32603). Invalid params, unknown
tools or `isError` results are the caller's business and never count.

The hot path is the closed state with no recent failures: callers check `breaker.state is CLOSED`
(one attribute load and an identity compare) and skip the breaker entirely, so a successful call
costs nothing here and allocates nothing. Failures are remembered in a deque of at most
`breaker_errors` timestamps: "the oldest of the last N failures is within the window" is exactly
"N failures within the window", in O(1).

Time comes from an injected clock, so tests drive the state machine without sleeping.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

from .outcome import Outcome

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"

Clock = Callable[[], float]


class CircuitBreaker:
    __slots__ = ("_failures", "_probing", "clock", "cooldown", "errors", "last_failure", "opened",
                 "retry_at", "state", "window")

    def __init__(self, errors: int, window: float, cooldown: float,
                 clock: Clock = time.monotonic) -> None:
        self.errors = max(1, errors)
        self.window = window
        self.cooldown = cooldown
        self.clock = clock
        self.state = CLOSED
        self.retry_at = 0.0  # clock time when an open breaker lets one call through
        self.opened = 0  # how many times it opened (status, tests)
        self.last_failure = ""
        self._failures: collections.deque[float] = collections.deque(maxlen=self.errors)
        self._probing = False  # half-open: the one trial call is out

    def allow(self) -> bool:
        """May a call go through now? Callers only ask when `state is not CLOSED`."""
        if self.state is CLOSED:
            return True
        if self.state is OPEN:
            if self.clock() < self.retry_at:
                return False
            self.state = HALF_OPEN
            self._probing = False
        if self._probing:
            return False
        self._probing = True
        return True

    def failure(self, what: str) -> bool:
        """Record a failure; True when this opened the breaker."""
        now = self.clock()
        self.last_failure = what
        if self.state is HALF_OPEN:
            self._open(now)
            return True
        if self.state is OPEN:
            return False  # a call admitted before it opened; the cooldown stands
        failures = self._failures
        failures.append(now)
        if len(failures) == self.errors and now - failures[0] <= self.window:
            self._open(now)
            return True
        return False

    def success(self) -> bool:
        """Record a success; True when this closed the breaker (only a half-open trial does)."""
        if self.state is not HALF_OPEN:
            return False  # closed: nothing to do; open: a late answer does not end the cooldown
        self.reset()
        return True

    def settle(self, outcome: Outcome, what: str) -> bool:
        """How one call to `what` ended (see `Outcome`): True when that opened or closed the breaker."""
        failure = outcome.failure
        if failure is not None:
            return self.failure(f"{what} {failure}")
        if outcome.neutral:
            self.neutral()
            return False
        return self.success()

    def neutral(self) -> None:
        """The trial call ended without a verdict (cancelled by its client): let another through."""
        if self.state is HALF_OPEN:
            self._probing = False

    def reset(self) -> None:
        self.state = CLOSED
        self._failures.clear()
        self._probing = False

    def _open(self, now: float) -> None:
        self.state = OPEN
        self.opened += 1
        self.retry_at = now + self.cooldown
        self._probing = False

    def retry_after_ms(self) -> int:
        return max(0, int((self.retry_at - self.clock()) * 1000 + 0.999))

    def recent_failures(self) -> int:
        now = self.clock()
        return sum(1 for t in self._failures if now - t <= self.window)

    def current(self) -> str:
        """The state as a caller would find it now (open turns half-open once the cooldown ends)."""
        if self.state is OPEN and self.clock() >= self.retry_at:
            return HALF_OPEN
        return self.state

    def describe(self) -> str:
        state = self.current()
        if state == OPEN:
            return (f"circuit breaker open after {self.errors} failures within {self.window:g}s "
                    f"(last: {self.last_failure}); next trial call in {self.retry_after_ms()} ms")
        if state == HALF_OPEN:
            return f"circuit breaker half-open: the next call is a trial (last: {self.last_failure})"
        return ""

    def status(self) -> dict[str, Any]:
        state = self.current()
        return {
            "state": state,
            "failures": self.recent_failures(),
            "threshold": self.errors,
            "window_s": self.window,
            "retry_after_ms": self.retry_after_ms() if state == OPEN else None,
            "opened": self.opened,
            "last_failure": self.last_failure or None,
        }
