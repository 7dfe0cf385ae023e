"""The HTTP door holds against hostile clients: deadlines, size caps, connection and session caps,
authentication before routing, bounded notification fan-out, slots given back at once.

Each test is a regression test for one trigger of issue 14, against a real daemon on real sockets,
with small limits set in `[http]` so the mechanism shows with a handful of connections.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import anyio
import httpx
import psutil
import pytest

from .conftest import ECHO, MakeDaemon, free_port, server_toml, wait_for
from .test_http import ENVELOPE, Door, legacy_session, modern_call, modern_headers

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def door_with(make_daemon: MakeDaemon, http_keys: str, servers: str | None = None,
                    nofile: tuple[int, int] | None = None, wait: bool = True) -> Door:
    port = free_port()
    text = f'[http]\nlisten = "127.0.0.1:{port}"\n{http_keys}\n' + (servers or server_toml("echo", ECHO))
    daemon = make_daemon(text, nofile=nofile)
    if wait:
        await anyio.to_thread.run_sync(lambda: daemon.wait_state("echo", "ready", timeout=60))
    return Door(daemon, port)


async def read_until_closed(stream: anyio.abc.ByteStream, limit: float = 10) -> bytes:
    """Everything the server sends until it closes the connection (fails after `limit` s)."""
    data = b""
    with anyio.fail_after(limit):
        while True:
            try:
                chunk = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return data
            data += chunk


async def echo_ok(http: httpx.AsyncClient, door: Door, text: str, **headers: str) -> bool:
    reply = await http.post(door.url("echo"), headers={**modern_headers("tools/call", "echo"), **headers},
                            json=modern_call(1, "echo", {"text": text}))
    return reply.status_code == 200 and reply.json()["result"]["content"][0]["text"] == text


async def test_request_head_not_finished_in_time_gets_408_and_is_closed(make_daemon: MakeDaemon) -> None:
    """Regression: a client that sends half a request head held its connection forever."""
    door = await door_with(make_daemon, 'header_timeout = "500ms"')
    async with await anyio.connect_tcp("127.0.0.1", door.port) as stream:
        await stream.send(b"POST /mcp/echo HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: appl")
        answer = await read_until_closed(stream)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    async with httpx.AsyncClient(timeout=30) as http:
        assert await echo_ok(http, door, "still serving")


async def test_request_head_over_the_cap_is_431(make_daemon: MakeDaemon) -> None:
    """Regression: request heads had no size cap (uvicorn buffers any number of headers)."""
    door = await door_with(make_daemon, 'max_header_bytes = "4KiB"')
    async with await anyio.connect_tcp("127.0.0.1", door.port) as stream:
        filler = b"".join(b"x-filler-%03d: %s\r\n" % (i, b"y" * 80) for i in range(100))
        await stream.send(b"POST /mcp/echo HTTP/1.1\r\nhost: 127.0.0.1\r\n" + filler)  # 10 KB, unfinished
        answer = await read_until_closed(stream)
    assert answer.startswith(b"HTTP/1.1 431 "), answer
    async with httpx.AsyncClient(timeout=30) as http:
        # A head within the cap is served as before.
        assert await echo_ok(http, door, "small head", **{"x-pad": "z" * 1000})


async def test_body_must_start_within_the_body_deadline(make_daemon: MakeDaemon) -> None:
    """Regression: the body deadline only ran from the first body byte, so headers announcing a
    body that never comes held the request (and its connection) forever."""
    door = await door_with(make_daemon, 'body_timeout = "500ms"')
    head = (b"POST /mcp/echo HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"accept: application/json\r\ncontent-length: 200\r\n\r\n")
    async with await anyio.connect_tcp("127.0.0.1", door.port) as stream:
        await stream.send(head)
        answer = await read_until_closed(stream)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"request body not received within 0.5s" in answer


async def test_connections_beyond_the_cap_are_refused_and_open_ones_keep_working(
        make_daemon: MakeDaemon) -> None:
    """Regression: half-sent connections piled up without bound until everyone got 503."""
    door = await door_with(make_daemon, "max_connections = 4")
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        assert await echo_ok(http, door, "first")  # one kept-alive connection
        idle = [await anyio.connect_tcp("127.0.0.1", door.port) for _ in range(3)]
        for stream in idle:
            await stream.send(b"POST /mcp/echo HTTP/1.1\r\n")  # half-sent heads
        async with await anyio.connect_tcp("127.0.0.1", door.port) as extra:
            answer = await read_until_closed(extra)
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert await echo_ok(http, door, "the open connection still works")
        for stream in idle:
            await stream.aclose()
    async with httpx.AsyncClient(timeout=30) as http:
        with anyio.fail_after(10):
            while True:  # the closed ones are given back as the daemon notices
                try:
                    if await echo_ok(http, door, "room again"):
                        break
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.05)


async def test_daemon_raises_its_soft_open_file_limit_to_the_hard_one(make_daemon: MakeDaemon) -> None:
    """Regression: the daemon ran with a shell's `ulimit -n 1024` although the hard limit allowed more."""
    door = await door_with(make_daemon, "", nofile=(256, 2048))
    assert door.daemon.proc is not None
    pid = door.daemon.proc.pid
    assert psutil.Process(pid).rlimit(psutil.RLIMIT_NOFILE) == (2048, 2048)


async def test_running_out_of_file_descriptors_never_ends_the_daemon(make_daemon: MakeDaemon) -> None:
    """Regression: with `ulimit -n 1024`, 1,100 half-sent HTTP connections made the next control
    connection's accept() fail with EMFILE, and that ended the daemon. Here: a 200-fd daemon, more
    HTTP and control connections than it has descriptors for; it refuses some and lives on."""
    door = await door_with(make_daemon, 'header_timeout = "60s"', nofile=(200, 200))
    daemon = door.daemon
    assert daemon.proc is not None
    held: list[socket.socket] = []
    try:
        for _ in range(150):
            sock = socket.create_connection(("127.0.0.1", door.port), timeout=5)
            sock.sendall(b"POST /mcp/echo HTTP/1.1\r\n")
            held.append(sock)
        for _ in range(150):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.connect(str(daemon.socket))
            held.append(sock)
        await anyio.sleep(1.5)  # the accept loop meets EMFILE meanwhile
        assert daemon.proc.poll() is None, daemon.log_text()[-3000:]
    finally:
        for sock in held:
            sock.close()
    status = await anyio.to_thread.run_sync(lambda: wait_for(daemon._answers, 20, what="status"))
    assert status
    assert daemon.proc.poll() is None
    assert "out of file descriptors" in daemon.log_text()
    async with httpx.AsyncClient(timeout=30) as http:
        assert await echo_ok(http, door, "after the storm")


async def test_unknown_server_without_a_token_is_401_and_names_nothing(make_daemon: MakeDaemon) -> None:
    """Regression: routing came before authentication, so a client without the token got a 404
    that listed every server of the fleet."""
    servers = server_toml("echo", ECHO) + server_toml("secret-crm", ECHO)
    door = await door_with(make_daemon, 'token = "t0ken-for-tests"', servers=servers)
    async with httpx.AsyncClient(timeout=30) as http:
        reply = await http.post(door.url("nosuch"), headers=modern_headers("tools/list"),
                                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert reply.status_code == 401
        assert "echo" not in reply.text and "secret-crm" not in reply.text
        authed = await http.post(door.url("nosuch"), headers={**modern_headers("tools/list"),
                                                              "authorization": "Bearer t0ken-for-tests"},
                                 json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert authed.status_code == 404


async def test_one_token_cannot_fill_the_session_table(make_daemon: MakeDaemon) -> None:
    """Regression: one token could open sessions until the 10,000-session table was full and every
    other legacy client was refused for an hour. Now each token's sessions are capped and the
    least recently used idle one makes room; a session in use (GET stream open) is never taken."""
    clients = ('[clients.greedy]\ntoken = "greedy-token-1"\n[clients.polite]\ntoken = "polite-token-1"\n')
    door = await door_with(make_daemon, "max_sessions = 6\nmax_sessions_per_token = 3",
                           servers=clients + server_toml("echo", ECHO))
    url = door.url("echo")
    greedy = {"authorization": "Bearer greedy-token-1"}
    polite = {"authorization": "Bearer polite-token-1"}

    async def tools_list(http: httpx.AsyncClient, headers: dict[str, str]) -> int:
        reply = await http.post(url, headers=headers,
                                json={"jsonrpc": "2.0", "id": 9, "method": "tools/list"})
        return reply.status_code

    async with httpx.AsyncClient(timeout=30, headers=greedy) as mine, \
            httpx.AsyncClient(timeout=30, headers=polite) as theirs:
        streaming = await legacy_session(mine, url)
        async with mine.stream("GET", url, headers={**streaming, "accept": "text/event-stream"}) as get:
            assert get.status_code == 200
            opened = [await legacy_session(mine, url) for _ in range(10)]
            assert await tools_list(mine, streaming) == 200, "a session with a stream is kept"
            assert [await tools_list(mine, h) for h in opened[-2:]] == [200, 200]
            assert all([await tools_list(mine, h) == 404 for h in opened[:-2]])
            others = [await legacy_session(theirs, url) for _ in range(3)]
            assert [await tools_list(theirs, h) for h in others] == [200, 200, 200]


async def test_a_session_whose_calls_were_answered_is_idle_and_can_make_room(make_daemon: MakeDaemon) -> None:
    """Regression: routing rewrites a request's id in place to the child's id, and the door then
    looked its call up under the rewritten id to forget it: every answered tools/call stayed in
    its session forever (a leak per call), and every session that had made one looked busy, so
    newcomers evicted each other (the bench's aggregate at 500 connections: "unknown or expired
    session") or were refused once the table was full of them."""
    door = await door_with(make_daemon, "max_sessions_per_token = 2")
    url = door.url("echo")

    async def echo(http: httpx.AsyncClient, headers: dict[str, str], msg_id: int) -> int:
        reply = await http.post(url, headers=headers, json={
            "jsonrpc": "2.0", "id": msg_id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": f"t{msg_id}"}}})
        if reply.status_code == 200:
            assert reply.json()["result"]["content"][0]["text"].endswith(f"t{msg_id}")
        return reply.status_code

    async with httpx.AsyncClient(timeout=30) as http:
        first = await legacy_session(http, url)
        second = await legacy_session(http, url)
        assert [await echo(http, first, 1), await echo(http, second, 1)] == [200, 200]
        third = await legacy_session(http, url)  # room is made by ending `first`, idle and oldest
        assert await echo(http, third, 1) == 200
        assert await echo(http, second, 2) == 200
        assert await echo(http, first, 2) == 404


async def test_notifications_go_only_to_sessions_with_an_open_stream(make_daemon: MakeDaemon) -> None:
    """Regression: every child notification was copied into every idle session's backlog (five
    10 KB notifications: 71 -> 557 MB). A session without a GET stream now keeps nothing and is
    told to list again when it opens one."""
    door = await door_with(make_daemon, "")
    url = door.url("echo")
    async with httpx.AsyncClient(timeout=30) as http:
        watching = await legacy_session(http, url)
        idle = await legacy_session(http, url)
        seen: list[dict[str, Any]] = []

        async def read(stream: httpx.Response, into: list[dict[str, Any]]) -> None:
            async for line in stream.aiter_lines():  # one by one: the test watches them arrive
                if line.startswith("data: "):
                    into.append(json.loads(line[6:]))  # noqa: PERF401

        async def poke(tool: str, arguments: dict[str, Any]) -> None:
            reply = await http.post(url, headers=watching, json={
                "jsonrpc": "2.0", "id": 5, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments}})
            assert reply.status_code == 200

        with anyio.fail_after(30):
            async with http.stream("GET", url, headers={**watching, "accept": "text/event-stream"}) as get, \
                    anyio.create_task_group() as tg:
                tg.start_soon(read, get, seen)
                for _ in range(5):
                    await poke("log", {"text": "x" * 10_000})
                for _ in range(3):
                    await poke("notify", {"kind": "tools"})
                while len(seen) < 8:
                    await anyio.sleep(0.02)
                tg.cancel_scope.cancel()
            assert [m["method"] for m in seen].count("notifications/message") == 5
            later: list[dict[str, Any]] = []
            async with http.stream("GET", url, headers={**idle, "accept": "text/event-stream"}) as get, \
                    anyio.create_task_group() as tg:
                tg.start_soon(read, get, later)
                while not later:
                    await anyio.sleep(0.02)
                # A live notification after it marks the end of what was waiting for this stream.
                reply = await http.post(url, headers=idle, json={
                    "jsonrpc": "2.0", "id": 6, "method": "tools/call",
                    "params": {"name": "notify", "arguments": {"kind": "prompts"}}})
                assert reply.status_code == 200
                while later[-1]["method"] != "notifications/prompts/list_changed":
                    await anyio.sleep(0.02)
                tg.cancel_scope.cancel()
    assert [m["method"] for m in later] == ["notifications/tools/list_changed",
                                            "notifications/prompts/list_changed"]


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


async def test_requests_that_cannot_reach_the_child_give_their_slot_back_at_once(
        make_daemon: MakeDaemon) -> None:
    """Regression: a request that failed on its way to the child (here: params nested deeper than
    the child's encoder writes) kept its in-flight slot until the request timeout, and its timeout
    counted as a breaker failure: 8 of them filled every slot and opened the breaker. Now it is
    answered at once, takes no slot, and the breaker never hears of it."""
    servers = server_toml("echo", ECHO, request_timeout="60s", breaker_errors=3)
    door = await door_with(make_daemon, "", servers=servers)
    url = door.url("echo")
    async with httpx.AsyncClient(timeout=30) as http:
        legacy = await legacy_session(http, url)
        for i in range(8):
            arguments = {"text": nested(300)}
            if i % 2:
                reply = await http.post(url, headers=legacy, json={
                    "jsonrpc": "2.0", "id": i, "method": "tools/call",
                    "params": {"name": "echo", "arguments": arguments}})
            else:
                reply = await http.post(url, headers=modern_headers("tools/call", "echo"),
                                        json=modern_call(i, "echo", arguments))
            assert reply.status_code in (200, 400), reply.text
            assert reply.json()["error"]["code"] == -32600
        status = await anyio.to_thread.run_sync(lambda: door.daemon.status("echo"))
        assert status["in_flight"] == 0 and status["queued"] == 0
        assert status["breaker"]["state"] == "closed"
        with anyio.fail_after(5):
            assert await echo_ok(http, door, "answered at once")


async def test_metric_labels_are_capped_in_length_and_count(make_daemon: MakeDaemon) -> None:
    """Regression: every method name a client sent became a metric label, with no length cap
    (/metrics grew to 200 MB). Long names and names past the count cap are counted as "other"."""
    door = await door_with(make_daemon, "")
    url = door.url("echo")
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(60):
            for method in (f"x/{i:03d}" + "y" * 5000, f"m/{i:03d}"):
                reply = await http.post(url, headers=modern_headers(method), json={
                    "jsonrpc": "2.0", "id": i, "method": method, "params": {"_meta": ENVELOPE}})
                assert reply.json()["error"]["code"] == -32601
        scraped = await http.get(f"{door.base}/metrics")
    assert len(scraped.content) < 200_000, len(scraped.content)
    from prometheus_client.parser import text_string_to_metric_families
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    methods = {s.labels["method"] for s in families["mcp_supervisor_requests"].samples
               if s.labels.get("server") == "echo"}
    assert "other" in methods
    assert len(methods) <= 41  # 40 names and "other"
    assert max(len(m) for m in methods) <= 64


async def test_a_request_id_that_is_no_json_rpc_id_is_400_not_a_crash_of_the_request(
        make_daemon: MakeDaemon) -> None:
    """Regression: a legacy request whose id was an object was used as a dict key before any
    check: the request died with a TypeError (500 and a traceback). Ids are now checked at the
    door, and whatever still fails inside a request ends that request alone (-32603)."""
    door = await door_with(make_daemon, "")
    url = door.url("echo")
    async with httpx.AsyncClient(timeout=30) as http:
        legacy = await legacy_session(http, url)
        for bad_id in ({"a": 1}, [1], 1.5, True, None):
            reply = await http.post(url, headers=legacy,
                                    json={"jsonrpc": "2.0", "id": bad_id, "method": "tools/list"})
            assert reply.status_code == 400, reply.text
            assert reply.json()["error"]["code"] == -32600
        listed = await http.post(url, headers=legacy,
                                 json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert listed.status_code == 200 and listed.json()["result"]["tools"]
    assert "Traceback" not in door.daemon.log_text()
