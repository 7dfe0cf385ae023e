"""Rate limits shared by every node of a cluster: token buckets kept in Redis.

With `[cluster]`, a `rate_limit` (a server's, or an HTTP client's) means the same on three nodes
as on one: every node spends from one bucket in the shared Redis, so the request that exceeds the
limit is refused whichever node it reaches. One Lua script refills and spends atomically, on
Redis's own clock (`TIME`), so nodes whose clocks differ still agree.

The hot path stays synchronous: a request that needs a token is handed to `ClusterLimiter.check`
with a callback, and one worker task sends every waiting check to Redis in one pipeline and calls
the callbacks with the answer. When Redis is down, slow or answers nonsense, each node falls back
to its own local bucket for that check (the limit then holds per node, as it does without a
cluster) and says so once; a rate limit never fails or delays a call past `timeout` because its
store misbehaves.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Any

import anyio

from supervisor.config import RateLimit
from supervisor.policy.ratelimit import TokenBucket

log = logging.getLogger("mcp_supervisor.cluster")

KEY_PREFIX = "mcps:rl:"
BATCH = 256  # checks sent in one pipeline
MAX_PENDING = 10000  # checks waiting for Redis; beyond this the local bucket decides at once

# KEYS[1]: the bucket. ARGV: rate (tokens per second), burst, idle expiry (ms).
# Returns {allowed (0/1), seconds to wait (a string: Lua numbers become integers on the way out)}.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate) end
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
elseif rate > 0 then
  wait = (1 - tokens) / rate
else
  wait = 3600
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {allowed, tostring(wait)}
"""

Done = Callable[[float], None]  # called with 0.0 (pass) or the seconds to wait before retrying


class _Check:
    __slots__ = ("done", "key", "limit", "local")

    def __init__(self, key: str, limit: RateLimit, local: TokenBucket, done: Done) -> None:
        self.key = key
        self.limit = limit
        self.local = local
        self.done = done


def local_decision(bucket: TokenBucket, now: float) -> float:
    """What the node's own bucket says: 0.0 to pass, else seconds to wait (at least 1 ms)."""
    if bucket.take(now):
        return 0.0
    return max(bucket.retry_after(now), 0.001)


class ClusterLimiter:
    def __init__(self, url: str, *, timeout: float, clock: Callable[[], float]) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.timeout = timeout
        self.clock = clock
        self.failing: str | None = None
        self.fallbacks = 0  # checks the local bucket decided because Redis could not
        self._pending: collections.deque[_Check] = collections.deque()
        self._wake = anyio.Event()
        self._redis = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                     max_connections=4, retry=Retry(NoBackoff(), 0),
                                     health_check_interval=0)
        self._script = self._redis.register_script(_SCRIPT)

    @property
    def mode(self) -> str:
        return "local" if self.failing else "cluster"

    def check(self, key: str, limit: RateLimit, local: TokenBucket, done: Done) -> None:
        """Spend one token of the cluster's bucket `key`; `done` hears the answer, later."""
        if len(self._pending) >= MAX_PENDING:
            self.fallbacks += 1
            done(local_decision(local, self.clock()))
            return
        self._pending.append(_Check(KEY_PREFIX + key, limit, local, done))
        self._wake.set()

    async def take(self, key: str, limit: RateLimit, local: TokenBucket) -> float:
        """`check` for a caller that can wait (the HTTP door): the seconds to wait, 0.0 to pass."""
        answered = anyio.Event()
        result = [0.0]

        def done(wait: float) -> None:
            result[0] = wait
            answered.set()

        self.check(key, limit, local, done)
        with anyio.fail_after(self.timeout * 4 + 1):  # the worker answers within its timeout
            await answered.wait()
        return result[0]

    async def run(self) -> None:
        try:
            while True:
                if not self._pending:
                    self._wake = anyio.Event()
                    await self._wake.wait()
                batch = [self._pending.popleft() for _ in range(min(BATCH, len(self._pending)))]
                await self._decide(batch)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await self._redis.aclose()

    async def _decide(self, batch: list[_Check]) -> None:
        answers: list[Any] | None = None
        try:
            with anyio.fail_after(self.timeout):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for check in batch:
                        limit = check.limit
                        idle_ms = int(max(limit.burst / limit.rate if limit.rate > 0 else 3600, 1) * 2000)
                        await self._script(keys=[check.key], args=[limit.rate, limit.burst, idle_ms],
                                           client=pipe)
                    answers = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # Redis down, slow or refusing: the local buckets decide
            self._failed(f"{type(exc).__name__}: {exc}")
        now = self.clock()
        for i, check in enumerate(batch):
            wait = _parse(answers[i]) if answers is not None and i < len(answers) else None
            if wait is None:
                self.fallbacks += 1
                wait = local_decision(check.local, now)
            elif self.failing is not None:
                log.info("cluster rate limits: Redis answers again; buckets are shared")
                self.failing = None
            try:
                check.done(wait)
            except Exception:  # one request's routing failing ends that request, not the worker
                log.exception("cluster rate limits: routing a checked request failed")

    def _failed(self, text: str) -> None:
        if self.failing is None:
            log.warning("cluster rate limits: Redis is unreachable (%s); each node enforces its own "
                        "buckets until it answers", text)
        self.failing = text


def _parse(answer: Any) -> float | None:
    """The script's {allowed, wait}; None when Redis answered something else (an error)."""
    if not isinstance(answer, list) or len(answer) != 2:
        return None
    allowed, wait = answer
    try:
        seconds = float(wait.decode() if isinstance(wait, bytes) else wait)
    except (TypeError, ValueError):
        return None
    return 0.0 if allowed == 1 else max(seconds, 0.001)
