"""What kept bytes really hold: a bound counted in `len()` must be about the memory it holds.

orjson hands back its write buffer as the bytes object (at least 4 KiB, rounded up to a power of
two), so an encoded line that is kept, not written at once, can hold 40x its length. Measured
with tracemalloc, which sees the real allocations: deterministic, no timing involved.

Regression tests for the memory rise the regression gate found (session 5): the cached path's
daemon RSS at 77-94 MiB against 45-49 MiB, about 5 KiB per cached 100-byte answer.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from supervisor.config import CacheSettings, ServerCache, ServerConfig
from supervisor.core.cache.front import STORE_BACKLOG_BYTES, CacheHub, Flight
from supervisor.wire.jsonrpc import encode, trimmed
from supervisor.wire.outbox import Outbox


@pytest.fixture
def traced() -> Iterator[Callable[[], int]]:
    """Bytes allocated (and still held) since the fixture started."""
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    yield lambda: tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()


def _answer(n: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": n, "result": {"content": [{"type": "text", "text": f"echo {n}"}]}}


def test_trimmed_is_the_same_bytes_in_an_allocation_of_their_size(traced: Callable[[], int]) -> None:
    lines = [encode(_answer(n)) for n in range(200)]
    raw = traced()
    kept = [trimmed(line) for line in lines]
    assert kept == lines
    size = sum(map(len, lines))
    assert raw > 20 * size, "orjson no longer over-allocates: trimmed() may be dropped"
    assert traced() - raw < 2 * size + 16 * 1024


def test_a_backlog_for_a_peer_that_does_not_read_holds_about_what_it_counts(
        traced: Callable[[], int]) -> None:
    """Before the fix, 5,000 small lines waiting for a slow peer held ~20 MB while the outbox
    counted ~250 KB against its limit."""
    outbox = Outbox(limit=64 * 1024 * 1024)  # no pump: nobody reads
    for n in range(5000):
        outbox.push(encode(_answer(n)))
    assert outbox.size > 100_000
    assert traced() < 2 * outbox.size + 256 * 1024, (traced(), outbox.size)


def test_a_cached_answer_holds_about_its_size_not_orjsons_buffer(traced: Callable[[], int]) -> None:
    """Before the fix each cached 40-byte answer kept a 4 KiB buffer (5 KiB per entry in all)."""
    hub = CacheHub(CacheSettings())
    config = ServerConfig(name="s", command="x", cache=ServerCache(tools=("echo",)))
    front = hub.front(config, lambda sink, message, modern: None)
    front.configure([{"name": "echo", "inputSchema": {"type": "object"}}])
    baseline = traced()
    entries = 2000
    for n in range(entries):
        key = f"{front.prefix}tools/call:l:{n}".encode()
        flight = Flight(front, key, "tools/call", None, n)  # type: ignore[arg-type]  # store() never uses the sink
        front.store(flight, orjson.loads(orjson.dumps(_answer(n)["result"])))
    assert len(hub.local) == entries
    per_entry = (traced() - baseline) / entries
    assert per_entry < 1500, f"{per_entry:.0f} bytes per cached answer"


def test_answers_waiting_for_a_slow_redis_are_bounded_in_bytes(traced: Callable[[], int]) -> None:
    """Stores queue for the Redis worker; a Redis that is slow but not failing (the breaker stays
    closed) used to let them pile up without bound. The oldest now give way past
    STORE_BACKLOG_BYTES, counted in status, and the queue holds about what it counts."""
    hub = CacheHub(CacheSettings(backend="redis", url="redis://127.0.0.1:9/0"))  # never connected
    config = ServerConfig(name="s", command="x", cache=ServerCache(tools=("echo",)))
    front = hub.front(config, lambda sink, message, modern: None)
    front.configure([{"name": "echo", "inputSchema": {"type": "object"}}])
    front._worker_running = True  # as if its worker were busy with a slow Redis
    text = "x" * 3000
    for n in range(4000):  # ~12 MB of answers
        key = f"{front.prefix}tools/call:l:{n}".encode()
        flight = Flight(front, key, "tools/call", None, n)  # type: ignore[arg-type]  # never used by store()
        front.store(flight, {"content": [{"type": "text", "text": f"{text}{n}"}]})
    assert len(hub.local) == 0  # all went to the Redis queue
    assert front.stores_dropped > 0 and front.status()["stores_dropped"] == front.stores_dropped
    held = sum(len(item[1]) for item in front._stores)
    assert held <= STORE_BACKLOG_BYTES and front._store_bytes == held
    assert traced() < 2 * STORE_BACKLOG_BYTES, traced()
    front.invalidate(("tools/list",))
    front.invalidate(("tools/list",))
    front.invalidate(("tools/list",))
    assert list(front._deletes).count(f"{front.prefix}tools/list:") == 2
