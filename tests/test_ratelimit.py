"""Token buckets with a controllable clock: exact counts, no sleeps."""

from __future__ import annotations

import pytest

from supervisor.config import RateLimit
from supervisor.policy.ratelimit import ClientLimits, TokenBucket


def test_burst_then_refill_exactly() -> None:
    bucket = TokenBucket.for_limit(RateLimit.parse("60/min", burst=3), now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after(0.0) == pytest.approx(1.0)
    assert not bucket.take(0.999)
    assert bucket.take(1.0)
    assert not bucket.take(1.0)
    # A long quiet spell refills only up to the burst.
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize(("text", "per_second"), [("100/min", 100 / 60), ("10/s", 10.0),
                                                   ("3600/hour", 1.0)])
def test_rates(text: str, per_second: float) -> None:
    bucket = TokenBucket.for_limit(RateLimit.parse(text, burst=1), now=0.0)
    assert bucket.take(0.0)
    assert bucket.retry_after(0.0) == pytest.approx(1 / per_second)


def test_clients_are_isolated() -> None:
    limits = ClientLimits({"alice": RateLimit.parse("2/min"), "bob": RateLimit.parse("1/min")})
    assert limits.check("alice", 0.0) == 0.0
    assert limits.check("alice", 0.0) == 0.0
    assert limits.check("alice", 0.0) == pytest.approx(30.0)
    assert limits.check("bob", 0.0) == 0.0  # alice's exhaustion is not bob's
    assert limits.check("bob", 0.0) == pytest.approx(60.0)
    assert limits.check("carol", 0.0) == 0.0  # unknown clients are unlimited
    assert limits.check(None, 0.0) == 0.0
