"""The cache's pure parts with an injected clock: MemoryCache LRU/TTL/size, the Redis breaker, the
cacheability rules as tables, and RedisCache against a real redis-server (garbage, outage)."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from supervisor.config import ServerCache, ServerConfig
from supervisor.core.cache.front import cacheable_tools, fingerprint, result_ttl
from supervisor.core.cache.store import Breaker, MemoryCache, RedisCache

from .redis_server import RedisServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_lru_evicts_least_recently_used() -> None:
    cache = MemoryCache(max_entries=3, max_bytes=1 << 20, clock=Clock())
    for key in (b"a", b"b", b"c"):
        cache.put(key, {"v": key}, 10, None)
    assert cache.get(b"a") == {"v": b"a"}  # a is now the most recent
    cache.put(b"d", {"v": b"d"}, 10, None)
    assert cache.get(b"b") is None
    assert [cache.get(k) is not None for k in (b"a", b"c", b"d")] == [True, True, True]
    assert len(cache) == 3 and cache.evictions == 1


def test_memory_ttl_expires_with_the_clock() -> None:
    clock = Clock()
    cache = MemoryCache(10, 1 << 20, clock)
    cache.put(b"k", {"v": 1}, 5, 0.3)
    cache.put(b"forever", {"v": 2}, 5, None)
    clock.now += 0.299
    assert cache.get(b"k") == {"v": 1}
    clock.now += 0.002
    assert cache.get(b"k") is None
    assert cache.bytes == 5 and len(cache) == 1
    clock.now += 1e9
    assert cache.get(b"forever") == {"v": 2}


def test_memory_max_bytes_evicts_and_rejects_oversized() -> None:
    cache = MemoryCache(100, 100, Clock())
    cache.put(b"a", 1, 40, None)
    cache.put(b"b", 2, 40, None)
    cache.put(b"c", 3, 40, None)  # 120 > 100: a goes
    assert cache.get(b"a") is None and cache.bytes == 80
    assert cache.put(b"huge", 4, 101, None) is False
    assert cache.get(b"b") == 2
    cache.put(b"b", 5, 10, None)  # replacing updates the byte count
    assert cache.bytes == 50
    assert cache.put(b"zero-ttl", 6, 1, 0) is False


def test_memory_delete_prefix() -> None:
    cache = MemoryCache(100, 1000, Clock())
    for key in (b"mcps:a:f:tools/list:l:1", b"mcps:a:f:tools/list:m:2", b"mcps:a:f:tools/call:l:3",
                b"mcps:ab:f:tools/list:l:4"):
        cache.put(key, 1, 1, None)
    assert cache.delete_prefix_now("mcps:a:f:tools/list:") == 2
    assert cache.delete_prefix_now("mcps:a:") == 1
    assert len(cache) == 1 and cache.bytes == 1


def test_breaker_opens_after_threshold_and_probes_once() -> None:
    clock = Clock()
    breaker = Breaker(clock, threshold=3, cooldown=0.5, max_cooldown=2.0)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow() and not breaker.may_try()
    clock.now += 0.5
    assert breaker.may_try()
    assert breaker.allow()  # the probe
    assert not breaker.allow() and not breaker.may_try()  # only one at a time
    breaker.failure()  # probe failed: open again, cooldown doubled
    clock.now += 0.99
    assert not breaker.allow()
    clock.now += 0.01
    assert breaker.allow()
    breaker.failure()
    clock.now += 2.0  # capped at max_cooldown
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.cooldown == 0.5 and breaker.trips == 3


TOOLS = [
    {"name": "get_user", "inputSchema": {}},
    {"name": "get_rid", "inputSchema": {}, "annotations": {"destructiveHint": True}},
    {"name": "delete_all", "inputSchema": {}, "annotations": {"destructiveHint": True}},
    {"name": "search", "inputSchema": {}, "annotations": {"readOnlyHint": True}},
    {"name": "write", "inputSchema": {}},
]


@pytest.mark.parametrize(("globs", "expected"), [
    ((), set()),
    (("get_*",), {"get_user"}),  # get_rid is destructive and only matched by a glob
    (("get_*", "get_rid"), {"get_user", "get_rid"}),
    (("*",), {"get_user", "search", "write"}),
    (("delete_all", "search"), {"delete_all", "search"}),
    (("missing",), set()),
])
def test_cacheable_tools(globs: tuple[str, ...], expected: set[str]) -> None:
    assert cacheable_tools(TOOLS, globs) == expected


@pytest.mark.parametrize(("method", "result", "expected"), [
    ("tools/list", {"tools": []}, (True, None)),
    ("tools/list", {"tools": [], "ttlMs": 0, "cacheScope": "private"}, (True, None)),
    ("tools/list", {"tools": [], "ttlMs": 2500}, (True, 2.5)),
    ("tools/call", {"content": []}, (True, 300.0)),
    ("tools/call", {"content": [], "isError": False}, (True, 300.0)),
    ("tools/call", {"content": [], "isError": True}, (False, None)),
    ("tools/call", {"content": [], "ttlMs": 100}, (True, 0.1)),
    ("tools/call", {"resultType": "input_required", "inputRequests": {}}, (False, None)),
    ("tools/call", {"resultType": "complete", "content": []}, (True, 300.0)),
    ("resources/read", {"contents": []}, (False, None)),
    ("resources/read", {"contents": [], "ttlMs": 0}, (False, None)),
    ("resources/read", {"contents": [], "ttlMs": 1000}, (True, 1.0)),
])
def test_result_ttl(method: str, result: dict[str, object], expected: tuple[bool, float | None]) -> None:
    assert result_ttl(method, result, 300.0) == expected


def test_fingerprint_follows_config_and_tools() -> None:
    base = ServerConfig(name="s", command="x")
    same = ServerConfig(name="s", command="x")
    assert fingerprint(base, TOOLS) == fingerprint(same, list(TOOLS))
    assert fingerprint(base, TOOLS) != fingerprint(base, TOOLS[:-1])
    assert fingerprint(base, TOOLS) != fingerprint(ServerConfig(name="s", command="x", args=("-v",)), TOOLS)
    opted = ServerConfig(name="s", command="x", cache=ServerCache(tools=("get_*",)))
    assert fingerprint(base, TOOLS) != fingerprint(opted, TOOLS)


# ---- RedisCache against a real server -----------------------------------------------------------

@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


def test_redis_round_trip_garbage_and_outage(redis_server: RedisServer) -> None:
    async def main() -> None:
        # The healthy phase must not race the timeout: on a loaded 2-core CI box the first connect
        # to a just-started redis-server took over 0.2 s, the put read as an outage and the test
        # failed for the wrong reason. The outage phase below is refused at once, so it needs none.
        cache = RedisCache(redis_server.url, timeout=5.0)
        try:
            await cache.put_many([(b"mcps:s:f:a", b'{"x":1}', 60.0)])
            assert cache.errors == 0, cache.last_error
            assert await cache.get_many([b"mcps:s:f:a", b"mcps:s:f:none"]) == [{"x": 1}, None]
            redis_server.client().set("mcps:s:f:junk", b"\xff not json")
            redis_server.client().set("mcps:s:f:list", b"[1,2]")
            assert await cache.get_many([b"mcps:s:f:junk", b"mcps:s:f:list"]) == [None, None]
            assert cache.garbage == 2 and cache.errors == 2
            assert await cache.count("mcps:s:") == 3
            assert await cache.delete_prefix("mcps:s:f:") == 3
            redis_server.kill()
            with anyio.fail_after(2):
                for _ in range(5):
                    assert await cache.get_many([b"mcps:s:f:a"]) == [None]
            assert cache.breaker.state in ("open", "half-open") and cache.errors >= 5
        finally:
            await cache.aclose()

    anyio.run(main)
