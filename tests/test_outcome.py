"""One `Outcome` says how a call ended; the counters, the breaker and the span read it."""

from __future__ import annotations

import pytest

from supervisor.policy.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from supervisor.policy.counters import RequestStats
from supervisor.policy.outcome import Outcome


@pytest.mark.parametrize(("outcome", "label", "failure", "neutral"), [
    (Outcome.OK, "ok", None, False),
    (Outcome.ERROR, "error", None, False),
    (Outcome.INTERNAL, "error", "internal error", False),
    (Outcome.TIMEOUT, "timeout", "timed out", False),
    (Outcome.CRASHED, "gone", "lost in a crash", False),
    (Outcome.GONE, "gone", None, True),
    (Outcome.CANCELLED, "cancelled", None, True),
    (Outcome.BUSY, "busy", None, False),
    (Outcome.UNAVAILABLE, "unavailable", None, False),
])
def test_each_outcome_says_its_label_and_its_verdict(outcome: Outcome, label: str, failure: str | None,
                                                     neutral: bool) -> None:
    assert (outcome.label, outcome.failure, outcome.neutral) == (label, failure, neutral)


def test_counters_merge_outcomes_that_share_a_label() -> None:
    """INTERNAL is an "error" and CRASHED is "gone" in the metrics: one series each, summed."""
    stats = RequestStats()
    for outcome in (Outcome.OK, Outcome.ERROR, Outcome.INTERNAL, Outcome.CRASHED, Outcome.GONE):
        stats.record("tools/call", outcome, 0.01)
    stats.refused("tools/call", Outcome.BUSY)
    assert stats.methods["tools/call"].by_label() == {"ok": 1, "error": 2, "gone": 2, "busy": 1}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("outcome", [Outcome.TIMEOUT, Outcome.CRASHED, Outcome.INTERNAL])
def test_breaker_settle_counts_server_failures(outcome: Outcome) -> None:
    clock = Clock()
    breaker = CircuitBreaker(2, 10.0, 5.0, clock)
    assert not breaker.settle(outcome, "tools/call")
    assert breaker.settle(outcome, "tools/call")  # the second within the window opens it
    assert breaker.state == OPEN and breaker.last_failure == f"tools/call {outcome.failure}"


@pytest.mark.parametrize("outcome", [Outcome.OK, Outcome.ERROR, Outcome.GONE, Outcome.CANCELLED])
def test_breaker_settle_never_counts_answers_or_cancellations(outcome: Outcome) -> None:
    breaker = CircuitBreaker(1, 10.0, 5.0, Clock())
    for _ in range(5):
        assert not breaker.settle(outcome, "tools/call")
    assert breaker.state == CLOSED


def test_a_half_open_trial_closes_on_an_answer_and_stays_half_open_when_cancelled() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10.0, 5.0, clock)
    breaker.settle(Outcome.TIMEOUT, "tools/call")
    clock.now = 6.0
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert not breaker.settle(Outcome.CANCELLED, "tools/call")
    assert breaker.allow()  # the cancelled trial let another through
    assert breaker.settle(Outcome.ERROR, "tools/call")  # an error answer is still an answer
    assert breaker.state == CLOSED
