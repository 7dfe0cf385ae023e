"""The HTTP door's fast path (`doors/http/fast.py`) against a real daemon: what a request answered
by its connection must still do when it stops being the common case on the way.

The common request (a whole POST, answered with one JSON body) is served without an ASGI cycle;
these tests drive the turns off that road: pipelined requests, an answer too big for one write,
a call that streams progress before its answer (to a client that takes SSE, and to one that
takes only JSON)."""

from __future__ import annotations

import json
import socket
from typing import Any

import anyio
import httpx
import pytest

from .conftest import ECHO, MakeDaemon, server_toml
from .test_http import ACCEPT, legacy_session, modern_call, modern_headers, start_door

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _read_answers(sock: socket.socket, count: int) -> list[dict[str, Any]]:
    """`count` JSON answers with content-length from a blocking socket."""
    buffer = b""
    answers: list[dict[str, Any]] = []
    while len(answers) < count:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buffer[:head_end].decode("latin-1").lower()
            length = int(head.split("content-length:")[1].split("\r\n")[0])
            end = head_end + 4 + length
            if len(buffer) >= end:
                assert head.startswith("http/1.1 200"), head
                answers.append(json.loads(buffer[head_end + 4:end]))
                buffer = buffer[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, "the daemon closed the connection"
        buffer += chunk
    return answers


async def test_pipelined_session_calls_on_one_connection_are_answered_in_order(
        make_daemon: MakeDaemon) -> None:
    """Three legacy calls written at once on one keep-alive connection: the first is served by
    the connection, the ones behind it queue (as uvicorn queues pipelined requests), and each
    answer comes back in order under its own id."""
    door = await start_door(make_daemon, server_toml("echo", ECHO))
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await legacy_session(http, door.url("echo"))

    def pipelined() -> list[dict[str, Any]]:
        with socket.create_connection(("127.0.0.1", door.port), timeout=30) as sock:
            requests = b""
            for i in range(3):
                body = json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                                   "params": {"name": "echo", "arguments": {"text": f"p{i}"}}}).encode()
                head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                requests += (f"POST /mcp/echo HTTP/1.1\r\nHost: 127.0.0.1:{door.port}\r\n{head}"
                             f"content-length: {len(body)}\r\n\r\n").encode() + body
            sock.sendall(requests)
            return _read_answers(sock, 3)

    answers = await anyio.to_thread.run_sync(pipelined)
    assert [a["id"] for a in answers] == [0, 1, 2]
    assert [a["result"]["content"][0]["text"] for a in answers] == ["p0", "p1", "p2"]


async def test_an_answer_over_64_kib_arrives_whole_on_both_eras(make_daemon: MakeDaemon) -> None:
    door = await start_door(make_daemon, server_toml("echo", ECHO))
    url = door.url("echo")
    text = "x" * 200_000
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await legacy_session(http, url)
        legacy = await http.post(url, headers=headers, json={
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": text}}})
        modern = await http.post(url, headers=modern_headers("tools/call", "echo"),
                                 json=modern_call(2, "echo", {"text": text}))
        small = await http.post(url, headers=headers, json={
            "jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "after"}}})
    for reply, msg_id in ((legacy, 1), (modern, 2)):
        assert reply.status_code == 200, reply.text[:200]
        assert reply.json()["id"] == msg_id
        assert reply.json()["result"]["content"][0]["text"] == text
    assert small.json()["result"]["content"][0]["text"] == "after"


def _sse_messages(text: str) -> list[dict[str, Any]]:
    # (a resumable stream starts with an empty priming event)
    return [json.loads(line[5:]) for line in text.splitlines()
            if line.startswith("data:") and line[5:].strip()]


async def test_progress_before_the_answer_turns_the_call_into_an_sse_stream(make_daemon: MakeDaemon) -> None:
    """A call whose child sends progress first: a client that takes SSE gets the progress and
    then the answer on one stream; a JSON-only client gets only the answer, as JSON; the next
    request on the same connection is served as usual."""
    door = await start_door(make_daemon, server_toml("echo", ECHO))
    url = door.url("echo")

    def sleep_call(msg_id: int) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call",
                "params": {"name": "sleep", "arguments": {"seconds": 0.3},
                           "_meta": {"progressToken": f"t{msg_id}"}}}

    async with httpx.AsyncClient(timeout=30) as http:
        headers = await legacy_session(http, url)
        streamed = await http.post(url, headers=headers, json=sleep_call(1))
        assert streamed.headers["content-type"].startswith("text/event-stream")
        messages = _sse_messages(streamed.text)
        assert messages[-1]["id"] == 1 and messages[-1]["result"]["content"][0]["text"] == "slept"
        progress = [m for m in messages[:-1] if m.get("method") == "notifications/progress"]
        assert progress and all(m["params"]["progressToken"] == "t1" for m in progress)

        json_only = {**headers, "accept": "application/json"}
        answered = await http.post(url, headers=json_only, json=sleep_call(2))
        assert answered.headers["content-type"].startswith("application/json")
        assert answered.json()["result"]["content"][0]["text"] == "slept"

        after = await http.post(url, headers={**headers, "accept": ACCEPT}, json={
            "jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "next"}}})
        assert after.json()["result"]["content"][0]["text"] == "next"
    status = await anyio.to_thread.run_sync(lambda: door.daemon.status("echo"))
    assert status["in_flight"] == 0


# ---- what shows the fast path, and the keep-alive wait it no longer arms a timer for ---------------


async def _fast_taken(http: httpx.AsyncClient, door: Any) -> dict[str, float]:
    """`mcp_supervisor_http_fast_requests_total` by era, from the door's /metrics."""
    text = (await http.get(f"{door.base}/metrics")).text
    taken: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("mcp_supervisor_http_fast_requests_total{"):
            era = line.split('era="')[1].split('"')[0]
            taken[era] = float(line.rsplit(" ", 1)[1])
    assert set(taken) == {"legacy", "modern"}, text
    return taken


async def test_the_fast_path_counter_counts_fast_posts_and_nothing_that_went_the_asgi_way(
        make_daemon: MakeDaemon) -> None:
    """/metrics counts by era each POST the connection routed itself: a 2026-07-28 call and a
    session's notification and call move it; initialize, a POST that only takes SSE, one with a
    query string, a GET stream and the scrapes themselves (all served by the ASGI app) do not."""
    door = await start_door(make_daemon, server_toml("echo", ECHO))
    url = door.url("echo")
    async with httpx.AsyncClient(timeout=30) as http:
        assert await _fast_taken(http, door) == {"legacy": 0, "modern": 0}
        reply = await http.post(url, headers=modern_headers("tools/call", "echo"),
                                json=modern_call(1, "echo", {"text": "fast"}))
        assert reply.json()["result"]["content"][0]["text"] == "fast"
        assert await _fast_taken(http, door) == {"legacy": 0, "modern": 1}

        sse_only = await http.post(url, headers={**modern_headers("tools/call", "echo"),
                                                 "accept": "text/event-stream"},
                                   json=modern_call(2, "echo", {"text": "sse"}))
        assert sse_only.headers["content-type"].startswith("text/event-stream")
        query = await http.post(url + "?x=1", headers=modern_headers("tools/call", "echo"),
                                json=modern_call(3, "echo", {"text": "query"}))
        assert query.json()["result"]["content"][0]["text"] == "query"
        assert await _fast_taken(http, door) == {"legacy": 0, "modern": 1}

        headers = await legacy_session(http, url)  # initialize (ASGI), then initialized (fast)
        assert await _fast_taken(http, door) == {"legacy": 1, "modern": 1}
        async with http.stream("GET", url, headers={**headers, "accept": "text/event-stream"}) as stream:
            assert stream.status_code == 200
        call = await http.post(url, headers=headers, json={
            "jsonrpc": "2.0", "id": 4, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "session"}}})
        assert call.json()["result"]["content"][0]["text"] == "session"
        assert await _fast_taken(http, door) == {"legacy": 2, "modern": 1}


def _request(port: int, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


def _answer_then_idle_until_closed(port: int, request: bytes) -> float:
    """Send `request` on a new keep-alive connection, read its whole answer, and return how long
    the daemon then kept the idle connection open (fails if it is still open after 30 s)."""
    import time

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, "closed before the answer"
            buffer += chunk
        head, _, body = buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"connection: close" not in head.lower(), head
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "closed inside the answer"
            body += chunk
        answered = time.monotonic()
        assert sock.recv(65536) == b"", "the idle connection got bytes instead of being closed"
        return time.monotonic() - answered


@pytest.mark.parametrize("way", ["fast", "asgi"])
async def test_an_idle_keep_alive_connection_is_closed_after_keep_alive_on_either_path(
        make_daemon: MakeDaemon, way: str) -> None:
    """Regression for the keep-alive wait moving from uvicorn's per-request timer to the
    connection sweeper: a connection that only ever took the fast path, and one that only took
    the ASGI path, are each kept open while idle and closed once `keep_alive` has passed."""
    door = await start_door(make_daemon, server_toml("echo", ECHO), keep_alive="1s")
    if way == "fast":
        body = json.dumps(modern_call(1, "echo", {"text": "idle"})).encode()
        request = _request(door.port, "POST", "/mcp/echo", modern_headers("tools/call", "echo"), body)
    else:
        request = _request(door.port, "GET", "/healthz", {})
    async with httpx.AsyncClient(timeout=30) as http:
        before = await _fast_taken(http, door)
        idle = await anyio.to_thread.run_sync(_answer_then_idle_until_closed, door.port, request)
        after = await _fast_taken(http, door)
    assert after["modern"] - before["modern"] == (1 if way == "fast" else 0)
    # Kept while idle (the answer's own trip back can take a little of the second on a busy box),
    # then closed: the sweeper's wait ends the connection, the client sees EOF.
    assert idle >= 0.5, idle
