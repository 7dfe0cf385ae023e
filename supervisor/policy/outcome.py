"""How a request ended: one value, read by the counters, the circuit breaker and the trace span.

It used to be said three ways at once (a bool, a metrics int and a breaker string, so a cancelled
call was `False, counters.CANCELLED, CANCELLED`). One enum says it once, and the three readers ask
it what they need:

    outcome      metrics label   breaker        who is to blame
    OK           ok              success        nobody
    ERROR        error           success        the caller (invalid params, unknown tool: an answer)
    INTERNAL     error           failure        the server (-32603, an answer we cannot pass on)
    TIMEOUT      timeout         failure        the server (no answer within the deadline)
    CRASHED      gone            failure        the server (the first request lost in a crash)
    GONE         gone            neutral        nobody (stopped on purpose, a crash's other requests)
    CANCELLED    cancelled       neutral        the client gave up
    BUSY         busy            (refused at admission: never reached a child)
    UNAVAILABLE  unavailable     (refused at admission)

One crash is one breaker failure however many requests it took along: the first is CRASHED, the
rest GONE. It is an IntEnum so `RequestStats` indexes its per-outcome list with it on the hot path.
"""

from __future__ import annotations

import enum


class Outcome(enum.IntEnum):
    OK = 0
    ERROR = 1
    TIMEOUT = 2
    CANCELLED = 3
    GONE = 4
    BUSY = 5
    UNAVAILABLE = 6
    INTERNAL = 7
    CRASHED = 8

    @property
    def label(self) -> str:
        """The value of the metrics `outcome` label (and the trace span's status)."""
        return LABELS[self]

    @property
    def failure(self) -> str | None:
        """What the breaker remembers when this outcome counts against the server, else None."""
        return FAILURES.get(self)

    @property
    def neutral(self) -> bool:
        """Ended without a verdict on the server: a half-open breaker lets another trial through."""
        return self is Outcome.CANCELLED or self is Outcome.GONE


LABELS: tuple[str, ...] = ("ok", "error", "timeout", "cancelled", "gone", "busy", "unavailable",
                           "error", "gone")
"""By value: the label of each outcome (INTERNAL counts as "error", CRASHED as "gone")."""

FAILURES: dict[Outcome, str] = {
    Outcome.TIMEOUT: "timed out",
    Outcome.CRASHED: "lost in a crash",
    Outcome.INTERNAL: "internal error",
}
