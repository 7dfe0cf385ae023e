"""The cache front's hit path in process (`supervisor/core/cache/front.py`): which requests share a
key, what a hit answers, and when a stored answer is no longer fresh. A real `CacheHub` and
`CacheFront` on an injected clock; the child's answers are delivered to the miss's `Flight` the way
the instance delivers them. The same paths end to end, with a real daemon, are in test_cache.py.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from supervisor.config import CacheSettings, ServerCache, ServerConfig
from supervisor.core.cache.front import RAW_KEY_BYTES, CacheFront, CacheHub, Flight

pytestmark = pytest.mark.anyio

TOOLS = [{"name": "echo", "inputSchema": {"type": "object"}}, {"name": "other", "inputSchema": {}}]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Values:
    """A sink that takes messages as values (an HTTP call, the aggregate)."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []

    def deliver(self, message: dict[str, Any]) -> None:
        self.got.append(message)


class Lines(Values):
    """A sink that writes lines, as a session does: hits come as ready answer lines."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[bytes] = []

    def deliver_answer_line(self, msg_id: Any, line: bytes, result: dict[str, Any]) -> None:
        self.lines.append(line)


def make_front(clock: Clock, ttl: float = 30.0) -> tuple[CacheHub, CacheFront]:
    hub = CacheHub(CacheSettings(), clock)
    config = ServerConfig(name="s", command="x", cache=ServerCache(tools=("echo", "other"), ttl=ttl))
    front = hub.front(config, lambda sink, message, modern: None)
    front.tools_changed(TOOLS)
    return hub, front


def call(msg_id: Any, arguments: Any, name: str = "echo", **extra: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments, **extra}}


def answer_for(front: CacheFront, message: dict[str, Any], result: dict[str, Any],
               modern: bool = False) -> None:
    """A miss, answered by the child with `result`: stored from then on."""
    flight = front.intercept(Values(), message, modern)
    assert isinstance(flight, Flight), f"expected a miss: {message}"
    flight.deliver({"jsonrpc": "2.0", "id": flight.routed_id, "result": result})


def hit(front: CacheFront, message: dict[str, Any], modern: bool = False) -> dict[str, Any] | None:
    """The answer a hit gives (parsed from its line), or None for a miss."""
    sink = Lines()
    routed = front.intercept(sink, message, modern)
    if routed is not None:
        assert isinstance(routed, Flight)
        front.landed(routed)  # nobody will answer it here: take it out of the flights
        return None
    assert len(sink.lines) == 1 and not sink.got
    line = sink.lines[0]
    assert line.endswith(b"}\n") and line.count(b"\n") == 1, line
    parsed: dict[str, Any] = orjson.loads(line)
    return parsed


def result(tag: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": tag}], "isError": False}


# Values that are equal or alike in Python (1 == True == 1.0, "é" composed or not) but are
# different requests: each must be its own key.
DISTINCT = [1, True, 1.0, "1", None, 0, False, "", [1], {"v": 1}, [], {}, "é", "e\u0301", "E", -0.0,
            10**18, 1e18, "x" * (RAW_KEY_BYTES - 40), "x" * (RAW_KEY_BYTES - 39), "x" * 400, "x" * 401]


async def test_different_params_never_share_an_answer() -> None:
    """Regression guard for the byte keys: every argument in DISTINCT (equal in Python, or a byte
    apart across the raw/hashed boundary) is stored under its own key, and each hit answers with
    its own result: a shared key would be a wrong answer, not just a cost."""
    _, front = make_front(Clock())
    for index, value in enumerate(DISTINCT):
        answer_for(front, call(index, {"v": value}), result(f"#{index}"))
    assert front.misses == len(DISTINCT)
    for index, value in enumerate(DISTINCT):
        got = hit(front, call(f"again-{index}", {"v": value}))
        assert got is not None, f"{value!r} was stored but missed"
        assert got["result"] == result(f"#{index}"), f"{value!r} got another argument's answer"
    # The same arguments to another tool, and the same call from the other era, are other keys.
    assert hit(front, call(1, {"v": 1}, name="other")) is None
    assert hit(front, call(1, {"v": 1}), modern=True) is None


async def test_both_sides_of_the_raw_key_boundary_hit() -> None:
    """Canonical params up to RAW_KEY_BYTES are the key; one byte longer is hashed. Both store and
    hit, and neither answers for the other."""
    _, front = make_front(Clock())
    at = {"name": "echo", "arguments": {"t": ""}}
    pad = RAW_KEY_BYTES - len(orjson.dumps(at, option=orjson.OPT_SORT_KEYS))
    short, long = "a" * pad, "a" * (pad + 1)
    assert len(orjson.dumps({"arguments": {"t": short}, "name": "echo"})) == RAW_KEY_BYTES
    answer_for(front, call(1, {"t": short}), result("short"))
    answer_for(front, call(2, {"t": long}), result("long"))
    assert (hit(front, call(3, {"t": short})) or {}).get("result") == result("short")
    assert (hit(front, call(4, {"t": long})) or {}).get("result") == result("long")


async def test_key_order_and_meta_are_not_part_of_the_question() -> None:
    """The key is the canonical form: members in another order (at any depth), and the `_meta`
    envelope (progress tokens), still hit the stored answer."""
    _, front = make_front(Clock())
    answer_for(front, call(1, {"a": 1, "b": {"x": 1, "y": [1, 2]}}), result("ab"))
    assert hit(front, call(2, {"b": {"y": [1, 2], "x": 1}, "a": 1})) is not None
    assert hit(front, call(3, {"a": 1, "b": {"x": 1, "y": [1, 2]}}, _meta={"progressToken": 9})) is not None
    assert hit(front, call(4, {"a": 1, "b": {"x": 1, "y": [2, 1]}})) is None, "list order is data"
    assert front.hits == 2


@pytest.mark.parametrize("msg_id", [0, 7, -3, 2**63 - 1, "", "plain", 'q"uote', "back\\slash",
                                    "new\nline", "tab\t", "\u2028", "é", "😀", "\x00", "1"])
async def test_a_hit_is_the_stored_answer_under_the_callers_exact_id(msg_id: Any) -> None:
    """The id is spliced into the stored answer's bytes: whatever the id, the line parses to
    exactly {jsonrpc, id, result} with the caller's id (same type, same characters) and the result
    the child gave; a sink without lines gets the same answer as a value."""
    _, front = make_front(Clock())
    stored = {"content": [{"type": "text", "text": "é \" \\ \n"}], "structuredContent": {"n": [1, 2.5]}}
    answer_for(front, call("first", {"t": 1}), stored)
    got = hit(front, call(msg_id, {"t": 1}))
    assert got == {"jsonrpc": "2.0", "id": msg_id, "result": stored}
    assert type(got["id"]) is type(msg_id)
    values = Values()
    assert front.intercept(values, call(msg_id, {"t": 1}), False) is None
    assert values.got == [{"jsonrpc": "2.0", "id": msg_id, "result": stored}]


async def test_a_stored_answer_is_fresh_until_its_ttl_then_a_miss_that_frees_it() -> None:
    """The hit path reads the memory tier without its `get`: it must keep the same rule, fresh
    strictly before the entry's expiry, and a stale entry is dropped (its bytes freed) and asked of
    the child again."""
    clock = Clock()
    hub, front = make_front(clock, ttl=5.0)
    answer_for(front, call(1, {"t": "x"}), result("x"))
    assert len(hub.local) == 1 and hub.local.bytes > 0
    clock.now += 4.999
    assert hit(front, call(2, {"t": "x"})) is not None
    clock.now += 0.001
    assert hit(front, call(3, {"t": "x"})) is None
    assert len(hub.local) == 0 and hub.local.bytes == 0
    assert front.hits == 1 and front.misses == 2


async def test_a_list_without_ttl_stays_until_invalidated() -> None:
    """A list is stored with no expiry: still a hit after any time, gone after its list_changed."""
    clock = Clock()
    _, front = make_front(clock)
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    answer_for(front, listing, {"tools": TOOLS})
    clock.now += 1e9
    assert (hit(front, {**listing, "id": 2}) or {}).get("result") == {"tools": TOOLS}
    front.notification("notifications/tools/list_changed")
    assert hit(front, {**listing, "id": 3}) is None


async def test_a_hit_counts_once_and_joins_nothing() -> None:
    """A hit is counted as a hit, never as a join, and leaves no flight behind; an identical
    request while the first is in flight joins it instead (single-flight)."""
    _, front = make_front(Clock())
    first = front.intercept(Values(), call(1, {"t": "s"}), False)
    assert isinstance(first, Flight)
    joined = Values()
    assert front.intercept(joined, call(2, {"t": "s"}), False) is None
    assert front.coalesced == 1
    first.deliver({"jsonrpc": "2.0", "id": 1, "result": result("s")})
    assert joined.got == [{"jsonrpc": "2.0", "id": 2, "result": result("s")}]
    assert hit(front, call(3, {"t": "s"})) is not None
    assert (front.hits, front.misses, front.coalesced, front.flights) == (1, 1, 1, {})
