"""Token buckets for `rate_limit = "100/min"`: per server and per client identity.

Time is a parameter (`now`), never read here, so tests drive exact counts with a fake clock and
the hot path pays one subtraction and one comparison per request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from supervisor.config import RateLimit


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second
    burst: int  # capacity
    tokens: float
    updated: float

    @classmethod
    def for_limit(cls, limit: RateLimit, now: float) -> TokenBucket:
        return cls(limit.rate, limit.burst, float(limit.burst), now)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def retry_after(self, now: float) -> float:
        """Seconds until a token will be available."""
        self._refill(now)
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.rate if self.rate > 0 else math.inf


class ClientLimits:
    """One bucket per client identity (token name, peer uid, `mcpctl connect --client` name)."""

    def __init__(self, limits: dict[str, RateLimit]) -> None:
        self._limits = limits
        self._buckets: dict[str, TokenBucket] = {}
        # Whether any client has a limit. Every request of every door reads it: an attribute, kept
        # with `_limits`, rather than a property (a Python call per request).
        self.active = bool(limits)

    def update(self, limits: dict[str, RateLimit]) -> None:
        self._limits = limits
        self.active = bool(limits)
        self._buckets = {k: v for k, v in self._buckets.items() if k in limits}

    def bucket(self, client: str, now: float) -> tuple[RateLimit, TokenBucket] | None:
        """The client's limit and its local bucket (made on first use); None: no limit."""
        limit = self._limits.get(client)
        if limit is None:
            return None
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket.for_limit(limit, now)
        return limit, bucket

    def check(self, client: str | None, now: float) -> float:
        """0.0 when the request may pass, else the seconds to wait before retrying."""
        if client is None:
            return 0.0
        limit = self._limits.get(client)
        if limit is None:
            return 0.0
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket.for_limit(limit, now)
        if bucket.take(now):
            return 0.0
        return max(bucket.retry_after(now), 0.001)
