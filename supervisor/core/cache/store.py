"""Where cached results live: an embedded LRU+TTL memory cache, or a shared Redis.

Two backends behind one small surface, and the pieces both need:

    MemoryCache   in the daemon; synchronous get/put, so a hit answers without a task switch
    RedisCache    redis.asyncio with a pooled client; every operation bounded by `timeout`,
                  failures counted and fed to a Breaker, never raised to the caller
    Breaker       after `threshold` consecutive failures, bypass Redis for a cooldown (doubling up
                  to `max_cooldown`), then let one probe through; a success closes it again

Policy (what is cacheable, for how long, single-flight, invalidation) lives in `cache.front`; this
module only stores bytes and dicts under keys.

Keys look like `mcps:<server>:<fingerprint>:<method>:<era>:<params>` (the params' canonical JSON,
or its hash when long), so invalidating a whole server, or one list method of it, is a prefix
delete in either backend. Keys are bytes, built from the params' encoded bytes and never decoded
(Redis takes them as they are); prefixes are given as text.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import orjson

log = logging.getLogger("mcp_supervisor.cache")

Clock = Callable[[], float]
KEY_ROOT = "mcps:"


class Cache(Protocol):
    """What both backends offer. `shared` backends are seen by other daemons."""

    shared: bool

    def stats(self) -> dict[str, Any]: ...
    async def delete_prefix(self, prefix: str) -> int: ...
    async def aclose(self) -> None: ...


class Entry:
    """One stored value: fresh while `expires` is None or later than the cache's clock."""

    __slots__ = ("expires", "size", "value")

    def __init__(self, value: Any, size: int, expires: float | None) -> None:
        self.value = value
        self.size = size
        self.expires = expires


class MemoryCache:
    """LRU with per-entry TTL, bounded by entry count and by (approximate, encoded) bytes.

    Values are stored as the decoded result dicts and handed out as they are: a hit costs one dict
    lookup and no decoding. Callers treat cached values as immutable.

    `get` is the reader. A caller that cannot afford a Python call per hit (`CacheFront`) reads
    through `find`, `touch` and `clock` instead, which are the C functions `get` calls: `find(key)`
    is the `Entry` or None; a found entry is fresh while its `expires` is None or later than
    `clock()`; a fresh entry that is used is `touch`ed (it becomes the most recently used); a
    stale one is `drop`ped.
    """

    shared = False

    def __init__(self, max_entries: int, max_bytes: int, clock: Clock = time.monotonic) -> None:
        self.max_entries = max(1, max_entries)
        self.max_bytes = max(1, max_bytes)
        self.bytes = 0
        self.evictions = 0
        self._clock = clock
        # Never replaced (`aclose` clears it): `find` and `touch` are bound to it.
        self._data: collections.OrderedDict[bytes, Entry] = collections.OrderedDict()
        self.find = self._data.get
        self.touch = self._data.move_to_end
        self.clock = clock

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: bytes) -> Any | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry.expires is not None and entry.expires <= self._clock():
            self._remove(key)
            return None
        self._data.move_to_end(key)
        return entry.value

    def put(self, key: bytes, value: Any, size: int, ttl: float | None) -> bool:
        """Store `value` (whose encoded size is `size`) for `ttl` seconds (None: until evicted)."""
        if size > self.max_bytes or (ttl is not None and ttl <= 0):
            return False
        if key in self._data:
            self._remove(key)
        expires = None if ttl is None else self._clock() + ttl
        self._data[key] = Entry(value, size, expires)
        self.bytes += size
        data = self._data
        while len(data) > self.max_entries or self.bytes > self.max_bytes:
            _, old = data.popitem(last=False)
            self.bytes -= old.size
            self.evictions += 1
        return True

    def _remove(self, key: bytes) -> None:
        entry = self._data.pop(key)
        self.bytes -= entry.size

    def drop(self, key: bytes) -> None:
        """Forget `key` (a stale entry a caller found), if it is still there."""
        if key in self._data:
            self._remove(key)

    def delete_prefix_now(self, prefix: str) -> int:
        start = prefix.encode()
        doomed = [key for key in self._data if key.startswith(start)]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    async def delete_prefix(self, prefix: str) -> int:
        return self.delete_prefix_now(prefix)

    def stats(self) -> dict[str, Any]:
        return {"entries": len(self._data), "bytes": self.bytes, "evictions": self.evictions}

    async def aclose(self) -> None:
        self._data.clear()
        self.bytes = 0


class Breaker:
    """Consecutive failures open it; after a cooldown one probe may pass; success closes it."""

    def __init__(self, clock: Clock = time.monotonic, threshold: int = 3, cooldown: float = 0.5,
                 max_cooldown: float = 10.0) -> None:
        self.threshold = threshold
        self.base_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.cooldown = cooldown
        self.failures = 0
        self.trips = 0
        self.open_until: float | None = None
        self._probing = False
        self._clock = clock

    @property
    def state(self) -> str:
        if self.open_until is None:
            return "closed"
        return "half-open" if self._probing or self._clock() >= self.open_until else "open"

    def may_try(self) -> bool:
        """Whether `allow` could say yes now, without taking the half-open probe."""
        return self.open_until is None or (not self._probing and self._clock() >= self.open_until)

    def retry_in(self) -> float:
        """Seconds until `may_try` can say yes again (0 when it already can)."""
        if self.open_until is None:
            return 0.0
        return max(0.01, self.open_until - self._clock())

    def allow(self) -> bool:
        if self.open_until is None:
            return True
        if self._probing or self._clock() < self.open_until:
            return False
        self._probing = True  # exactly one probe while half-open
        return True

    def success(self) -> None:
        if self.open_until is not None:
            log.info("redis cache reachable again; breaker closed")
        self.failures = 0
        self.open_until = None
        self._probing = False
        self.cooldown = self.base_cooldown

    def failure(self) -> None:
        self.failures += 1
        if self._probing or (self.open_until is None and self.failures >= self.threshold):
            self.open_until = self._clock() + self.cooldown
            self.cooldown = min(self.cooldown * 2, self.max_cooldown)
            self._probing = False
            self.trips += 1


class RedisCache:
    """Redis via `redis.asyncio`, one pooled client. Nothing here raises: a failed, slow or garbled
    operation counts in `errors`, feeds the breaker and reads as a miss."""

    shared = True
    # Administrative operations (clear, count) scan the keyspace; they get more time than lookups.
    ADMIN_TIMEOUT = 2.0

    def __init__(self, url: str, timeout: float, clock: Clock = time.monotonic,
                 max_connections: int = 32) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = url
        self.timeout = timeout
        self.errors = 0
        self.garbage = 0
        self.breaker = Breaker(clock)
        self.last_error: str | None = None
        # No client-side retries: a retry would only stretch the time a caller waits; the breaker
        # decides when to try again.
        self._redis = Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            max_connections=max_connections, retry=Retry(NoBackoff(), 0), health_check_interval=0)

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        text = f"{what}: {type(exc).__name__}: {exc}"
        if self.breaker.open_until is None and self.breaker.failures + 1 >= self.breaker.threshold:
            log.warning("redis cache failing (%s); bypassing it for %.1fs", text, self.breaker.cooldown)
        self.last_error = text
        self.breaker.failure()

    async def get_many(self, keys: list[bytes]) -> list[Any | None]:
        """Decoded values (dicts) or None per key; all None if Redis is bypassed or fails."""
        misses: list[Any | None] = [None] * len(keys)
        if not keys or not self.breaker.allow():
            return misses
        try:
            with anyio.fail_after(self.timeout):
                raw = await self._redis.mget(keys)
        except Exception as exc:  # any Redis trouble is a miss, never the caller's problem
            self._failed("get", exc)
            return misses
        self.breaker.success()
        values: list[Any | None] = []
        for blob in raw:
            if blob is None:
                values.append(None)
                continue
            try:
                value = orjson.loads(blob)
            except orjson.JSONDecodeError:
                value = None
            if value.__class__ is not dict:
                self.garbage += 1
                self.errors += 1
                value = None
            values.append(value)
        return values

    async def put_many(self, items: list[tuple[bytes, bytes, float]]) -> None:
        """SET key value PX ttl for each item, pipelined in one round trip."""
        if not items or not self.breaker.allow():
            return
        try:
            with anyio.fail_after(self.timeout):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key, blob, ttl in items:
                        pipe.set(key, blob, px=max(1, int(ttl * 1000)))
                    await pipe.execute()
        except Exception as exc:
            self._failed("set", exc)
            return
        self.breaker.success()

    async def delete_prefix(self, prefix: str) -> int:
        """UNLINK every key under `prefix` (SCAN, never KEYS). -1 if Redis could not be reached."""
        if not self.breaker.allow():
            return -1
        deleted = 0
        try:
            with anyio.fail_after(self.ADMIN_TIMEOUT):
                batch: list[bytes] = []
                async for key in self._redis.scan_iter(match=_glob_escape(prefix) + "*", count=1000):
                    batch.append(key)
                    if len(batch) >= 500:
                        deleted += await self._redis.unlink(*batch)
                        batch.clear()
                if batch:
                    deleted += await self._redis.unlink(*batch)
        except Exception as exc:
            self._failed("delete", exc)
            return -1
        self.breaker.success()
        return deleted

    async def count(self, prefix: str = KEY_ROOT) -> int | None:
        """Keys under `prefix`, or None when Redis cannot say soon (status must stay quick)."""
        if not self.breaker.allow():
            return None
        total = 0
        try:
            with anyio.fail_after(max(0.25, self.timeout * 4)):
                async for _ in self._redis.scan_iter(match=_glob_escape(prefix) + "*", count=1000):
                    total += 1
        except Exception as exc:
            self._failed("count", exc)
            return None
        self.breaker.success()
        return total

    def stats(self) -> dict[str, Any]:
        return {"errors": self.errors, "garbage": self.garbage, "breaker": self.breaker.state,
                "breaker_trips": self.breaker.trips, "last_error": self.last_error}

    async def aclose(self) -> None:
        with anyio.move_on_after(1, shield=True):
            await self._redis.aclose()


def _glob_escape(text: str) -> str:
    """Escape Redis glob metacharacters, so a server name like `a*b` matches only itself."""
    out = []
    for char in text:
        if char in "*?[]\\":
            out.append("\\")
        out.append(char)
    return "".join(out)
