"""A server's state, derived from its slots' states and its breaker: one pure rule.

Each slot (one child) is starting, in backoff or ready; the server is the best of them:

    any slot ready      ready (or degraded while the breaker is not closed; "2/3 instances ready"
                        while fewer than the target are)
    else any starting   starting, with that slot's reason
    else any in backoff backoff, with that slot's reason
    else                no verdict (stopped, failed, unavailable are set by the lifecycle)
"""

from __future__ import annotations

from collections.abc import Iterable

from supervisor.policy.states import State

_BEST_FIRST = (State.READY, State.STARTING, State.BACKOFF)


def derive_state(slots: Iterable[tuple[State, str]], breaker: str | None, ready: int,
                 target: int) -> tuple[State, str] | None:
    """`breaker`: None while closed, else how it reads ("circuit breaker open after ...")."""
    states = list(slots)
    for wanted in _BEST_FIRST:
        for slot_state, slot_reason in states:
            if slot_state == wanted:
                if wanted == State.READY:
                    if breaker is not None:
                        return State.DEGRADED, breaker
                    if ready < target:
                        slot_reason = f"{ready}/{target} instances ready"
                return wanted, slot_reason
    return None
