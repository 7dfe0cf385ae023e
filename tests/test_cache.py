"""Caching end to end: a real daemon, real test servers, a real redis-server.

The echo server's `calls` tool counts the tool calls the child really answered, so "the child was
not called" is proven by the child itself, not by the daemon's own counters.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from supervisor.client.control import read_line

from .conftest import ECHO, Daemon, MakeDaemon, server_toml, wait_for
from .mcp_raw import RawSession
from .redis_server import RedisServer


def cached_server(name: str, *args: str, tools: tuple[str, ...] = (), ttl: str | None = None,
                  lists: bool | None = None) -> str:
    text = server_toml(name, ECHO, *args)
    text += f"[servers.{name}.cache]\ntools = [{', '.join(orjson.dumps(t).decode() for t in tools)}]\n"
    if ttl is not None:
        text += f'ttl = "{ttl}"\n'
    if lists is not None:
        text += f"lists = {'true' if lists else 'false'}\n"
    return text


def redis_section(server: RedisServer, timeout: str = "50ms") -> str:
    return f'[cache]\nbackend = "redis"\nurl = "{server.url}"\ntimeout = "{timeout}"\n'


def session(daemon: Daemon, server: str = "echo") -> RawSession:
    raw = RawSession(daemon.socket, server)
    assert "result" in raw.attach_reply, raw.attach_reply
    raw.initialize()
    return raw


def calls(raw: RawSession, tool: str) -> int:
    reply = raw.call_tool("calls", {"tool": tool}, msg_id="count")
    return int(reply["result"]["structuredContent"]["calls"])


def text(reply: dict[str, Any]) -> str:
    assert "result" in reply, reply
    return str(reply["result"]["content"][0]["text"])


def cache_status(daemon: Daemon, server: str = "echo") -> dict[str, Any]:
    status: dict[str, Any] = daemon.status()["cache"]
    status["server"] = status["servers"].get(server, {})
    return status


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


# ---- what is cached, and what never is ----------------------------------------------------------

def test_opted_in_tool_is_answered_from_the_cache(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(cached_server("echo", tools=("echo", "fail", "del*", "sample")))
    daemon.wait_state("echo", "ready")
    with session(daemon) as raw:
        assert text(raw.call_tool("echo", {"text": "a"}, 1)) == "a"
        assert calls(raw, "echo") == 1
        for i in range(3):
            assert text(raw.call_tool("echo", {"text": "a"}, 10 + i)) == "a"
        assert calls(raw, "echo") == 1, "repeated identical calls must not reach the child"
        # _meta (progress tokens, the 2026 envelope) is not part of the question.
        raw.send({"jsonrpc": "2.0", "id": "meta", "method": "tools/call",
                  "params": {"name": "echo", "arguments": {"text": "a"}, "_meta": {"progressToken": 7}}})
        assert raw.response()["id"] == "meta"
        # Key order is not either: canonical JSON.
        assert text(raw.call_tool("echo", {"text": "b", "x": 1}, 20)) == "b"
        assert text(raw.call_tool("echo", {"x": 1, "text": "b"}, 21)) == "b"
        assert calls(raw, "echo") == 2
        status = cache_status(daemon)
        assert status["backend"] == "memory"
        assert status["server"]["hits"] >= 5 and status["hits"] >= 5
        assert status["entries"] >= 2 and status["errors"] == 0


def test_a_hit_is_the_stored_answer_under_the_callers_id_for_short_and_long_params(
        make_daemon: MakeDaemon) -> None:
    """A memory hit is framed around the result's stored JSON (not encoded again), and params up
    to RAW_KEY_BYTES are their own key while longer ones are hashed: both kinds hit, each answer
    is the stored result under the asking request's own id (integer or string), and a long
    argument never answers for a short one."""
    daemon = make_daemon(cached_server("echo", tools=("echo",)))
    daemon.wait_state("echo", "ready")
    long_text = "L" * 400
    msg_id: int | str  # integer ids first, then both kinds
    with session(daemon) as raw:
        for msg_id, arg in ((1, "short"), (2, long_text)):
            assert text(raw.call_tool("echo", {"text": arg}, msg_id)) == arg
        assert calls(raw, "echo") == 2
        for msg_id, arg in ((3, "short"), ("s-4", long_text), ("s-5", "short"), (6, long_text)):
            raw.send({"jsonrpc": "2.0", "id": msg_id, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": arg}}})
            answer = raw.response()
            assert answer["id"] == msg_id and answer["jsonrpc"] == "2.0", answer
            assert answer["result"]["content"][0]["text"] == arg
        assert calls(raw, "echo") == 2, "every repeat was a hit"


def test_a_hit_line_carries_any_valid_id_exactly(make_daemon: MakeDaemon) -> None:
    """A hit's line is the stored result's bytes with the caller's id spliced in: over the socket,
    each line is one line of JSON that parses to exactly the first answer under the asking id,
    whatever characters the id holds (quotes, backslashes, newlines, U+2028, non-ASCII, NUL) and
    whether it is an integer or a string of digits."""
    daemon = make_daemon(cached_server("echo", tools=("echo",)))
    daemon.wait_state("echo", "ready")
    ids: list[int | str] = [0, -1, 2**53 + 1, "1", "", 'q"uote', "back\\slash", "new\nline",
                            "\u2028", "é😀", "\x00"]
    with session(daemon) as raw:
        first = raw.call_tool("echo", {"text": "ids"}, "first")
        assert calls(raw, "echo") == 1
        for msg_id in ids:
            raw.send({"jsonrpc": "2.0", "id": msg_id, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": "ids"}}})
            line = read_line(raw.sock, raw.buffer)
            answer = orjson.loads(line)
            assert answer == {"jsonrpc": "2.0", "id": msg_id, "result": first["result"]}, line
            assert type(answer["id"]) is type(msg_id)
        assert calls(raw, "echo") == 1, "every repeat was a hit"


def test_not_opted_in_error_destructive_and_input_required_never_cached(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(cached_server("echo", tools=("echo", "fail", "del*", "sample")))
    daemon.wait_state("echo", "ready")
    with session(daemon) as raw:
        for i in range(2):
            assert text(raw.call_tool("add", {"a": 1, "b": 2}, f"add{i}")) == "3"
            assert raw.call_tool("fail", {}, f"fail{i}")["result"]["isError"] is True
            assert text(raw.call_tool("delete_all", {}, f"del{i}")) == "deleted"
            sample = raw.call_tool("sample", {"prompt": "hi"}, f"sample{i}")["result"]
            assert sample["resultType"] == "input_required"  # the modern child asks via the client
        assert calls(raw, "add") == 2, "a tool that is not opted in is never cached"
        assert calls(raw, "fail") == 2, "isError results are never cached"
        assert calls(raw, "delete_all") == 2, "destructiveHint tools matched only by a glob are not cached"
        assert calls(raw, "sample") == 2, "input_required results are never cached"
        # A retry carrying inputResponses is never answered from (or stored in) the cache.
        for i in range(2):
            retry = raw.call_tool("sample", {"prompt": "hi"}, f"retry{i}")
            assert retry["result"]["resultType"] == "input_required"
        raw.send({"jsonrpc": "2.0", "id": "r1", "method": "tools/call", "params": {
            "name": "sample", "arguments": {"prompt": "hi"}, "requestState": "sample",
            "inputResponses": {"sample": {"role": "assistant", "content": {"type": "text", "text": "x"}}}}})
        assert raw.response()["result"]["structuredContent"]["response"]["role"] == "assistant"
        assert calls(raw, "sample") == 5


def test_destructive_tool_cached_when_named_exactly(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(cached_server("echo", tools=("delete_all",)))
    daemon.wait_state("echo", "ready")
    with session(daemon) as raw:
        for i in range(3):
            assert text(raw.call_tool("delete_all", {}, i)) == "deleted"
        assert calls(raw, "delete_all") == 1


def test_tool_result_expires_after_its_ttl(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(cached_server("echo", tools=("echo",), ttl="300ms"))
    daemon.wait_state("echo", "ready")
    with session(daemon) as raw:
        started = time.monotonic()
        raw.call_tool("echo", {"text": "t"}, 1)
        raw.call_tool("echo", {"text": "t"}, 2)
        assert calls(raw, "echo") == 1
        ids = iter(range(100, 10000))

        def expired() -> bool:
            raw.call_tool("echo", {"text": "t"}, next(ids))
            return calls(raw, "echo") == 2

        wait_for(expired, 5, 0.02, what="the cached result to expire")
        assert time.monotonic() - started >= 0.28


def test_lists_cached_and_invalidated_by_list_changed_and_restart(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(cached_server("echo"))
    daemon.wait_state("echo", "ready")
    with session(daemon) as raw:
        first = raw.request("tools/list", {}, 1)
        assert raw.request("tools/list", {}, 2) == {**first, "id": 2}
        before = cache_status(daemon)["server"]
        assert before["hits"] == 1 and before["misses"] == 1
        raw.request("prompts/list", {}, 3)
        raw.request("prompts/list", {}, 4)
        assert cache_status(daemon)["server"]["hits"] == 2
        # The child sends notifications/tools/list_changed before it answers the notify tool.
        assert text(raw.call_tool("notify", {"kind": "tools"}, 5)).startswith("sent")
        raw.request("tools/list", {}, 6)
        raw.request("prompts/list", {}, 7)  # prompts were not invalidated
        after = cache_status(daemon)["server"]
        assert (after["hits"], after["misses"]) == (3, 3)
        assert any(n["method"] == "notifications/tools/list_changed" for n in raw.notifications)
    daemon.rpc("supervisor/restart", {"servers": ["echo"], "wait": 20})
    daemon.wait_state("echo", "ready")
    with session(daemon) as raw:
        raw.request("prompts/list", {}, 1)
        assert cache_status(daemon)["server"]["misses"] == 4, "a restarted child's lists are re-read"


def test_lists_false_disables_list_caching(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(cached_server("echo", lists=False))
    daemon.wait_state("echo", "ready")
    with session(daemon) as raw:
        raw.request("tools/list", {}, 1)
        raw.request("tools/list", {}, 2)
    assert cache_status(daemon)["server"] == {"hits": 0, "misses": 0, "coalesced": 0,
                                                 "stores_dropped": 0}


def test_modern_ttl_ms_makes_resources_cacheable(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(cached_server("ttl", "--ttl-ms", "60000") + cached_server("plain"))
    daemon.wait_state("ttl", "ready")
    daemon.wait_state("plain", "ready")
    for name, hits in (("ttl", 2), ("plain", 0)):
        with session(daemon, name) as raw:
            for i in range(3):
                reply = raw.request("resources/read", {"uri": "test://hello"}, i)
                assert reply["result"]["contents"][0]["text"] == "hello world"
        assert cache_status(daemon, name)["server"]["hits"] == hits, name


def test_single_flight_identical_calls_make_one_child_call(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(cached_server("echo", tools=("sleep",)))
    daemon.wait_state("echo", "ready")
    with session(daemon) as one, session(daemon) as two:
        for i in range(8):
            one.send({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                      "params": {"name": "sleep", "arguments": {"seconds": 0.3}}})
        for i in range(4):
            two.send({"jsonrpc": "2.0", "id": f"b{i}", "method": "tools/call",
                      "params": {"name": "sleep", "arguments": {"seconds": 0.3}}})
        answers = {one.response()["id"]: "x" for _ in range(8)}
        answers |= {two.response()["id"]: "x" for _ in range(4)}
        assert set(answers) == {*range(8), *(f"b{i}" for i in range(4))}
        assert calls(one, "sleep") == 1
    assert cache_status(daemon)["coalesced"] == 11


def test_cancelling_the_first_caller_keeps_the_shared_call_for_others(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(cached_server("echo", tools=("sleep",)))
    daemon.wait_state("echo", "ready")
    call = {"name": "sleep", "arguments": {"seconds": 0.4}}
    with session(daemon) as one, session(daemon) as two:
        one.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call})
        wait_for(lambda: daemon.status("echo")["in_flight"] == 1, 5, what="the call to reach the child")
        two.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call})
        wait_for(lambda: cache_status(daemon)["coalesced"] == 1, 5, what="the second call to join")
        one.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}})
        assert text(two.response()) == "slept"
        assert calls(two, "sleep") == 1
        assert orjson.loads(text(two.call_tool("cancelled", {}, 3))) == []


def test_cache_clear_and_status_json(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(cached_server("echo", tools=("echo",)) + cached_server("other", tools=("echo",)))
    daemon.wait_state("echo", "ready")
    daemon.wait_state("other", "ready")
    with session(daemon) as raw, session(daemon, "other") as other:
        raw.call_tool("echo", {"text": "c"}, 1)
        other.call_tool("echo", {"text": "c"}, 1)
        status = orjson.loads(daemon.ctl("status", "--json").stdout)["cache"]
        assert {"backend", "hits", "misses", "errors", "entries"} <= set(status)
        assert status["entries"] >= 2
        done = daemon.ctl("cache", "clear", "echo")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("cleared ") and "of echo" in done.stdout
        raw.call_tool("echo", {"text": "c"}, 2)
        other.call_tool("echo", {"text": "c"}, 2)
        assert calls(raw, "echo") == 2 and calls(other, "echo") == 1
        assert daemon.ctl("cache", "clear", "nope").returncode == 2
        assert orjson.loads(daemon.ctl("cache", "clear", "--json").stdout)["cleared"] >= 1


# ---- Redis ------------------------------------------------------------------------------------

def test_two_daemons_share_one_redis(make_daemon: MakeDaemon, redis_server: RedisServer) -> None:
    # Generous timeout: this test is about sharing, and a loaded CI box can take 50 ms to answer.
    config = redis_section(redis_server, "1s") + cached_server("echo", tools=("echo",))
    first = make_daemon(config, subdir="a")
    second = make_daemon(config, subdir="b")
    first.wait_state("echo", "ready")
    second.wait_state("echo", "ready")
    client = redis_server.client()
    with session(first) as raw:
        assert text(raw.call_tool("echo", {"text": "shared"}, 1)) == "shared"
        assert calls(raw, "echo") == 1
        keys = wait_for(lambda: list(client.scan_iter(match="mcps:echo:*:tools/call:*")), 5,
                        what="the result to reach Redis")
        # The key's text is the params' canonical JSON, as daemons of other versions sharing this
        # Redis build it: `mcps:<server>:<fingerprint>:tools/call:<era>:<params>`.
        assert keys[0].endswith(b':tools/call:l:{"arguments":{"text":"shared"},"name":"echo"}'), keys
    with session(second) as raw:
        assert text(raw.call_tool("echo", {"text": "shared"}, 1)) == "shared"
        assert calls(raw, "echo") == 0, "the second daemon's child must not be called"
    status = cache_status(second)
    assert status["backend"] == "redis" and status["hits"] == 1
    assert status["errors"] == 0, status["redis"]["last_error"]
    assert status["redis"]["breaker"] == "closed"
    # Lists of the echo server are cacheScope "private" on its modern connection: never in Redis.
    assert not list(client.scan_iter(match="mcps:echo:*:tools/list:*"))


def test_redis_killed_mid_run_then_back(make_daemon: MakeDaemon, redis_server: RedisServer) -> None:
    daemon = make_daemon(redis_section(redis_server) + cached_server("echo", tools=("echo",)))
    daemon.wait_state("echo", "ready")
    with session(daemon) as raw:
        raw.call_tool("echo", {"text": "before"}, 1)
        redis_server.kill()
        for i in range(10):
            started = time.monotonic()
            assert text(raw.call_tool("echo", {"text": f"down{i}"}, f"d{i}")) == f"down{i}"
            assert time.monotonic() - started < 1.0
        assert calls(raw, "echo") == 11
        status = cache_status(daemon)
        assert status["errors"] >= 1 and status["redis"]["breaker"] in ("open", "half-open")

        redis_server.start()  # same port, empty
        client = redis_server.client()
        ids = iter(range(1000))

        def recovered() -> bool:
            n = next(ids)
            raw.call_tool("echo", {"text": f"up{n}"}, f"u{n}")
            return bool(list(client.scan_iter(match="mcps:echo:*")))

        wait_for(recovered, 20, 0.1, what="the daemon to use Redis again")
        wait_for(lambda: cache_status(daemon)["redis"]["breaker"] == "closed", 5, what="breaker closed")
        key = next(iter(client.scan_iter(match="mcps:echo:*")))
        stored = client.get(key)
        assert isinstance(stored, bytes), stored
        assert orjson.loads(stored)["content"][0]["text"].startswith("up")


def test_redis_slower_than_the_timeout(make_daemon: MakeDaemon, redis_server: RedisServer) -> None:
    daemon = make_daemon(redis_section(redis_server, "50ms") + cached_server("echo", tools=("echo",)))
    daemon.wait_state("echo", "ready")
    with session(daemon) as raw:
        raw.call_tool("echo", {"text": "warm"}, 1)
        redis_server.pause()  # SIGSTOP: connections are accepted by the kernel, nothing answers
        try:
            worst = 0.0
            for i in range(8):
                started = time.monotonic()
                assert text(raw.call_tool("echo", {"text": f"slow{i}"}, f"s{i}")) == f"slow{i}"
                worst = max(worst, time.monotonic() - started)
            # Bounded by the 50 ms timeout (plus the child and scheduling), and soon bypassed.
            assert worst < 0.5, worst
            status = cache_status(daemon)
            assert status["errors"] >= 3 and status["redis"]["breaker"] in ("open", "half-open")
        finally:
            redis_server.resume()


def test_config_change_never_serves_the_old_entries(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(cached_server("echo", tools=("echo",)))
    daemon.wait_state("echo", "ready")
    with session(daemon) as raw:
        raw.call_tool("echo", {"text": "r"}, 1)
        raw.call_tool("echo", {"text": "r"}, 2)
        assert calls(raw, "echo") == 1
    daemon.write_config(cached_server("echo", "--name", "renamed", tools=("echo",)))
    assert daemon.rpc("supervisor/reload")["changed"] == ["echo"]
    daemon.wait_state("echo", "ready")
    with session(daemon) as raw:
        raw.call_tool("echo", {"text": "r"}, 1)
        assert calls(raw, "echo") == 1, "the new child must have been asked"
