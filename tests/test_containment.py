"""Containment: no client line, no child output and no full buffer ends the daemon (issue 14).

Each test is a regression test for one trigger that ended (or froze, or grew) the daemon, through
the real daemon, its real sockets and a real hostile child (`tests/servers/hostile_child.py`).
After each trigger the daemon must still answer `status` and a bystander server a call.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import orjson
import pytest

from supervisor.client.control import connect, read_line
from supervisor.client.errors import DaemonUnavailable
from supervisor.telemetry.logs import ChildLogFiles, LineRing
from supervisor.wire.outbox import Outbox, OutboxOverflow

from .conftest import ECHO, SERVERS, Daemon, MakeDaemon, server_toml, wait_for
from .mcp_raw import RawSession

HOSTILE = SERVERS / "hostile_child.py"


def _fleet(*extra: str) -> str:
    return server_toml("echo") + server_toml("hostile", HOSTILE) + "".join(extra)


def _still_serving(daemon: Daemon) -> None:
    """The daemon is alive and a bystander's call is answered correctly."""
    assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log_text()[-3000:]
    daemon.wait_state("echo", "ready")  # the bystander may still be starting on a loaded box
    with RawSession(daemon.socket, "echo") as session:
        reply = session.call_tool("echo", {"text": "still here"}, "bystander")
    assert reply["result"]["content"][0]["text"] == "still here"


def _control(path: Path, line: bytes) -> dict[str, Any]:
    """One raw line on a fresh control connection; its one reply."""
    sock = connect(path, 10)
    try:
        sock.sendall(line + b"\n")
        reply: dict[str, Any] = orjson.loads(read_line(sock, bytearray()))
        return reply
    finally:
        sock.close()


def _nested(depth: int) -> str:
    """JSON text of a list nested `depth` deep (orjson reads it; it refuses to write it)."""
    return "[" * depth + "1" + "]" * depth


# ---- client lines ---------------------------------------------------------------------------------

def test_attach_with_non_object_params_is_invalid_params_not_a_daemon_exit(make_daemon: MakeDaemon) -> None:
    """`supervisor/attach` with `"params": [1]` raised in the listener and ended the daemon."""
    daemon = make_daemon(_fleet())
    daemon.wait_state("echo", "ready")
    for params in ([1], "x", 5, {"server": ["echo"]}, {"server": "echo", "client": {}}):
        line = orjson.dumps({"jsonrpc": "2.0", "id": 9, "method": "supervisor/attach", "params": params})
        reply = _control(daemon.socket, line)
        assert reply["id"] == 9 and reply["error"]["code"] == -32602, (params, reply)
    _still_serving(daemon)


def test_discover_with_non_object_meta_is_invalid_params_not_a_daemon_exit(make_daemon: MakeDaemon) -> None:
    """`server/discover` with `"_meta": [1]` over an attached session ended the daemon."""
    daemon = make_daemon(_fleet())
    daemon.wait_state("echo", "ready")
    with RawSession(daemon.socket, "echo") as session:
        reply = session.request("server/discover", {"_meta": [1]}, "d1")
        assert reply["id"] == "d1" and reply["error"]["code"] == -32602
        reply = session.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": [1],
                                               "clientInfo": "x"}, "i1")
        assert reply["id"] == "i1" and reply["error"]["code"] == -32602
        assert session.call_tool("echo", {"text": "same session"}, 2)["result"]
    _still_serving(daemon)


def test_params_nested_300_deep_are_refused_at_parse_time(make_daemon: MakeDaemon) -> None:
    """A request nested deeper than the encoder can write back (orjson reads 1024, writes 254)
    raised in the session and ended the daemon; it is now refused when parsed."""
    daemon = make_daemon(_fleet())
    daemon.wait_state("echo", "ready")
    deep = ('{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo",'
            '"arguments":{"text":"x","deep":' + _nested(300) + "}}}").encode()
    with RawSession(daemon.socket, "echo") as session:
        session.send_raw(deep + b"\n")
        reply = session.response()
        assert reply["error"]["code"] == -32600 and reply["id"] == 3
        assert session.call_tool("echo", {"text": "after"}, 4)["result"]
    reply = _control(daemon.socket, ('{"jsonrpc":"2.0","id":5,"method":"supervisor/status",'
                                     '"params":{"servers":' + _nested(300) + "}}").encode())
    assert reply["error"]["code"] == -32600
    _still_serving(daemon)


def test_response_with_an_object_id_during_a_sampling_request_is_dropped(make_daemon: MakeDaemon) -> None:
    """A client answer whose id is an object (unhashable) while a legacy child's sampling
    request is outstanding raised in the lookup and ended the daemon."""
    daemon = make_daemon(server_toml("echo") + server_toml("hostile", HOSTILE, "--era", "legacy"))
    daemon.wait_state("hostile", "ready")
    with RawSession(daemon.socket, "hostile") as session:
        session.initialize()
        session.send({"jsonrpc": "2.0", "id": "s", "method": "tools/call",
                      "params": {"name": "sample", "arguments": {"prompt": "hi"}}})
        asked = session.recv()
        assert asked["method"] == "sampling/createMessage"
        session.send({"jsonrpc": "2.0", "id": {"a": 1}, "result": {}})
        session.send({"jsonrpc": "2.0", "id": [asked["id"]], "result": {}})
        session.send({"jsonrpc": "2.0", "id": asked["id"], "result": {
            "role": "assistant", "content": {"type": "text", "text": "hello"}, "model": "m"}})
        reply = session.response()
        assert reply["id"] == "s" and "hello" in reply["result"]["content"][0]["text"]
    _still_serving(daemon)


WRONG_TYPED = [
    ("supervisor/logs", {"server": "echo", "lines": "many"}),
    ("supervisor/logs", {"server": ["echo"]}),
    ("supervisor/start", {"servers": ["echo"], "wait": "soon"}),
    ("supervisor/stop", {"servers": ["echo"], "wait": [1]}),
    ("supervisor/events", {"logs": 5}),
    ("supervisor/events", {"tail": "x"}),
    ("supervisor/call", {"server": "echo", "tool": "echo", "timeout": {}}),
    ("supervisor/status", {"servers": "echo"}),
    ("supervisor/tools", {"server": 7}),
    ("supervisor/cache/clear", {"server": [1]}),
]


def test_wrong_typed_control_params_answer_invalid_params(make_daemon: MakeDaemon) -> None:
    """Wrong-typed control params answered -32603 (an internal error); they are the caller's
    mistake: -32602, and the daemon carries on."""
    daemon = make_daemon(server_toml("echo"))
    daemon.wait_state("echo", "ready")
    for method, params in WRONG_TYPED:
        reply = _control(daemon.socket, orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                                                      "params": params}))
        assert reply.get("error", {}).get("code") == -32602, (method, params, reply)
    assert daemon.status("echo")["state"] == "ready"


def test_invalid_request_ids_are_refused_before_any_lookup(make_daemon: MakeDaemon) -> None:
    """Ids that are not strings or integers are invalid requests, on the control socket and in
    a session: refused with -32600 (id null) before they are used as a key."""
    daemon = make_daemon(server_toml("echo"))
    daemon.wait_state("echo", "ready")
    with RawSession(daemon.socket, "echo") as session:
        for bad_id in ({"a": 1}, [1], 1.5, True):
            reply = _control(daemon.socket, orjson.dumps({"jsonrpc": "2.0", "id": bad_id,
                                                          "method": "supervisor/status"}))
            assert reply["error"]["code"] == -32600 and reply["id"] is None
            session.send({"jsonrpc": "2.0", "id": bad_id, "method": "tools/list"})
            reply = session.response()
            assert reply["error"]["code"] == -32600 and reply["id"] is None
            session.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                          "params": {"requestId": bad_id}})
        assert session.call_tool("echo", {"text": "ok"}, 1)["result"]
    _still_serving(daemon)


# ---- child output ---------------------------------------------------------------------------------

def test_tools_list_with_a_non_object_item_is_a_protocol_error_not_a_daemon_exit(
        make_daemon: MakeDaemon) -> None:
    """A child whose tools/list holds a non-object item made the daemon die seconds after every
    start; the daemon drops and counts the item from the list it keeps (cache, aggregate, status),
    and a client asking the child gets the child's own answer, as always."""
    daemon = make_daemon(server_toml("echo")
                         + server_toml("hostile", HOSTILE, "--tools-list-item", "1"))
    daemon.wait_state("hostile", "ready")
    kept = daemon.rpc("supervisor/tools", {"server": "hostile"})["servers"]["hostile"]
    assert kept and all(isinstance(t, dict) for t in kept)
    with RawSession(daemon.socket, "hostile") as session:
        session.initialize()
        assert session.call_tool("echo", {"text": "works"}, 1)["result"]
    wait_for(lambda: daemon.status("hostile")["protocol_errors"] >= 1, 10, what="protocol error counted")
    _still_serving(daemon)
    assert daemon.status("hostile")["state"] == "ready"


CHILD_GARBAGE = [
    # a progress token that is a list
    '{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":[1],"progress":1}}',
    # a notification whose method is not a string
    '{"jsonrpc":"2.0","method":["notifications/message"],"params":{}}',
    '{"jsonrpc":"2.0","method":7}',
    # an object as subscriptionId
    '{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"x",'
    '"_meta":{"io.modelcontextprotocol/subscriptionId":{"a":1}}}}',
    # requests with ids that are no ids
    '{"jsonrpc":"2.0","id":{"a":1},"method":"sampling/createMessage","params":{}}',
    '{"jsonrpc":"2.0","id":[1],"result":{}}',
    # a result nested 300 deep, to nobody, and a notification nested 300 deep
    '{"jsonrpc":"2.0","id":99999,"result":' + _nested(300) + "}",
    '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":'
    + _nested(300) + "}}",
    # a log message that is not an object
    '{"jsonrpc":"2.0","method":"notifications/message","params":[1]}',
]


def test_invalid_child_messages_are_counted_and_dropped_not_a_daemon_exit(make_daemon: MakeDaemon) -> None:
    """Each of these lines from a child ended the daemon; each is now a counted, logged protocol
    error, dropped, and the child keeps serving."""
    daemon = make_daemon(_fleet())
    daemon.wait_state("hostile", "ready")
    with RawSession(daemon.socket, "hostile") as session:
        session.initialize()
        reply = session.request("tools/call", {"name": "emit", "arguments": {"lines": CHILD_GARBAGE},
                                               "_meta": {"progressToken": "p"}}, "e")
        assert reply["id"] == "e" and reply["result"]["content"][0]["text"] == "emitted"
        assert session.call_tool("echo", {"text": "again"}, 2)["result"]
    errors = wait_for(lambda: daemon.status("hostile")["protocol_errors"] >= 8 and
                      daemon.status("hostile")["protocol_errors"], 10, what="protocol errors")
    assert errors >= 8
    _still_serving(daemon)
    metrics = daemon.rpc("supervisor/metrics")["text"]
    assert 'mcp_supervisor_child_protocol_errors_total{server="hostile"}' in metrics


MALFORMED_ANSWERS = [
    '{"jsonrpc":"2.0","id":$ID,"result":' + _nested(300) + "}",
    '{"jsonrpc":"2.0","id":$ID,"error":"not an object"}',
    '{"jsonrpc":"2.0","id":$ID,"result":{},"error":{"code":1,"message":"both"}}',
    '{"jsonrpc":"2.0","id":$ID}',
    '{"jsonrpc":"2.0","id":$ID,"result":[1]}',
]


def test_a_malformed_answer_to_a_pending_call_answers_its_caller_with_an_error(
        make_daemon: MakeDaemon) -> None:
    """A child's answer with a bad shape to a call in flight: the caller hears an error at once
    (it neither hangs until request_timeout nor takes the daemon down)."""
    daemon = make_daemon(_fleet())
    daemon.wait_state("hostile", "ready")
    with RawSession(daemon.socket, "hostile") as session:
        session.initialize()
        for index, answer in enumerate(MALFORMED_ANSWERS):
            reply = session.request("tools/call", {"name": "emit", "arguments": {
                "lines": [answer], "answer": False}}, f"bad-{index}")
            assert reply["id"] == f"bad-{index}" and reply["error"]["code"] == -32603, (answer, reply)
            assert "hostile" in reply["error"]["message"]
    _still_serving(daemon)


# ---- buffers --------------------------------------------------------------------------------------

def test_a_child_that_stops_reading_makes_admission_say_busy_before_its_stdin_bound(
        make_daemon: MakeDaemon) -> None:
    """Eight 15 MB calls under the default limits to a child that is not reading raised an
    uncaught overflow at 64 MiB and ended the daemon. The bytes waiting for a child's stdin are
    bounded: admission refuses with -32000 busy and data.retry_after_ms before the bound."""
    daemon = make_daemon(server_toml("echo") + server_toml("hostile", HOSTILE, max_in_flight=16))
    daemon.wait_state("hostile", "ready")
    text = "x" * (15 * 1000 * 1000)
    with RawSession(daemon.socket, "hostile", timeout=60) as session:
        session.initialize()
        session.send({"jsonrpc": "2.0", "id": "block", "method": "tools/call",
                      "params": {"name": "block", "arguments": {"seconds": 4}}})
        wait_for(lambda: daemon.status("hostile")["in_flight"] == 1, 10, what="the block call")
        for index in range(8):
            session.send({"jsonrpc": "2.0", "id": index, "method": "tools/call",
                          "params": {"name": "echo", "arguments": {"text": text}}})
        busy: list[dict[str, Any]] = []
        while len(busy) < 1:
            reply = session.response()
            if reply.get("error", {}).get("code") == -32000:
                busy.append(reply)
        assert busy[0]["error"]["data"]["retry_after_ms"] > 0
        assert "bytes waiting" in busy[0]["error"]["message"]
    _still_serving(daemon)
    assert daemon.status("hostile")["state"] == "ready"


def test_an_answer_over_the_size_limit_answers_its_caller_at_once(make_daemon: MakeDaemon) -> None:
    """An answer over the 16 MiB line limit was dropped and its caller waited the whole
    request_timeout; the id is read from the line's head and the caller hears -32006 at once."""
    daemon = make_daemon(server_toml("echo") + server_toml("hostile", HOSTILE, request_timeout=120))
    daemon.wait_state("hostile", "ready")
    with RawSession(daemon.socket, "hostile", timeout=30) as session:
        session.initialize()
        reply = session.call_tool("big", {"bytes": 17 * 1024 * 1024}, "huge")
        assert reply["id"] == "huge" and reply["error"]["code"] == -32006, reply
        assert reply["error"]["data"]["limit"] == 16 * 1024 * 1024
        assert session.call_tool("echo", {"text": "next"}, 2)["result"]
    _still_serving(daemon)


def test_a_client_that_never_reads_is_closed_at_its_buffer_bound(make_daemon: MakeDaemon) -> None:
    """A control client that never read grew the daemon without bound (37 MB to 1 GB): the pump
    that checked the bound was itself stuck writing to it. Checked on push now: over the bound,
    that connection is closed, and the daemon and everyone else carry on."""
    # One call at a time: the answers arrive one by one while the pump is stuck writing the first
    # (a burst would overflow before the pump ever ran, which the old check saw too).
    daemon = make_daemon(server_toml("echo") + server_toml("hostile", HOSTILE, max_in_flight=1))
    daemon.wait_state("hostile", "ready")
    session = RawSession(daemon.socket, "hostile", timeout=30)
    session.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    calls = 80  # 80 answers of 1 MB: far over the 33 MiB bound
    for index in range(calls):
        session.send({"jsonrpc": "2.0", "id": index, "method": "tools/call",
                      "params": {"name": "big", "arguments": {"bytes": 1024 * 1024}}})
    # Not reading a byte: the daemon must close the connection by itself (the old check ran only
    # between writes, so it fired, past the bound, only once the client read again).
    wait_for(lambda: "control connection dropped" in daemon.log_text(), 60,
             what="the daemon to close the connection of a client that does not read")
    answers = 0
    with contextlib.suppress(DaemonUnavailable, OSError):
        while answers < calls:
            session.recv()
            answers += 1
    session.close()
    assert answers < calls
    _still_serving(daemon)


# ---- URIs -----------------------------------------------------------------------------------------

def test_a_long_uri_against_a_many_variable_template_does_not_freeze_the_loop(
        make_daemon: MakeDaemon) -> None:
    """Aggregate `resources/read` matched URI templates with a backtracking regex: a 3 kB URI
    froze the event loop (24 s; the systemd watchdog kills at 30). Matching is linear now, so the
    answer ("matches no server's resources") comes at once and a template URI still routes."""
    daemon = make_daemon(server_toml("echo") + server_toml(
        "hostile", HOSTILE, "--resource-template", "h://{a}{b}{c}{d}{e}{f}{g}{h}z"))
    daemon.wait_state("echo", "ready")
    daemon.wait_state("hostile", "ready")
    sock = connect(daemon.socket, 10)  # the socket timeout is the test's deadline
    buffer = bytearray()

    def ask(message: dict[str, Any]) -> dict[str, Any]:
        sock.sendall(orjson.dumps(message) + b"\n")
        while True:
            reply: dict[str, Any] = orjson.loads(read_line(sock, buffer))
            if "id" in reply:
                return reply

    try:
        assert "result" in ask({"jsonrpc": "2.0", "id": "a", "method": "supervisor/attach",
                                "params": {"all": True}})
        reply = ask({"jsonrpc": "2.0", "id": 1, "method": "resources/read",
                     "params": {"uri": "h://" + "a" * 3000}})
        assert reply["error"]["code"] == -32602 and "matches no server" in reply["error"]["message"]
        reply = ask({"jsonrpc": "2.0", "id": 2, "method": "resources/read",
                     "params": {"uri": "test://echo/routed"}})
        assert reply["result"]["contents"][0]["text"] == "routed"
        reply = ask({"jsonrpc": "2.0", "id": 3, "method": "resources/read",
                     "params": {"uri": "test://echo/a/b"}})  # a simple variable never spans "/"
        assert reply["error"]["code"] == -32602
    finally:
        sock.close()
    _still_serving(daemon)


# ---- logs -----------------------------------------------------------------------------------------

def test_child_stderr_is_bounded_in_bytes_not_only_lines(make_daemon: MakeDaemon) -> None:
    """The stderr ring held 2000 lines of up to 64 kB each (128 MB per server); it is bounded in
    bytes too, and keeps the newest lines."""
    daemon = make_daemon(server_toml("echo") + server_toml("hostile", HOSTILE))
    daemon.wait_state("hostile", "ready")
    with RawSession(daemon.socket, "hostile") as session:
        session.initialize()
        for index in range(6):
            assert session.call_tool("stderr", {"text": f"{index}" * 60000, "lines": 50}, index)["result"]
        session.call_tool("stderr", {"text": "the last line", "lines": 1}, "last")
    def last_line() -> list[str]:
        lines: list[str] = daemon.rpc("supervisor/logs", {"server": "hostile", "lines": 2000})["lines"]
        return lines if lines and lines[-1].endswith("the last line") else []
    lines = wait_for(last_line, 10, what="the last stderr line in the ring")
    assert sum(len(line) for line in lines) <= 1024 * 1024
    _still_serving(daemon)


def test_child_log_messages_are_rate_limited_in_the_daemon_log(make_daemon: MakeDaemon) -> None:
    """Every notifications/message from a child went into the daemon's log: a flood filled the
    journal. They are rate-limited like stderr, and the log says how many were held back."""
    daemon = make_daemon(server_toml("echo") + server_toml("hostile", HOSTILE))
    daemon.wait_state("hostile", "ready")
    flood = ['{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info",'
             f'"data":"flood {index}"}}}}' for index in range(400)]
    with RawSession(daemon.socket, "hostile") as session:
        session.initialize()
        assert session.call_tool("emit", {"lines": flood}, "flood")["result"]
    logged = [line for line in daemon.log_text().splitlines() if "] flood " in line]
    assert 0 < len(logged) <= 100
    _still_serving(daemon)
    with RawSession(daemon.socket, "hostile") as session:
        session.initialize()
        # a message in a later second says how many of the flood were held back
        wait_for(lambda: session.call_tool("log", {"text": "after"}, "after") and
                 "log messages in the last second not logged" in daemon.log_text(), 10,
                 interval=0.3, what="the held-back count")


def test_log_rotation_never_overshoots_its_size(tmp_path: Path) -> None:
    """A batch bigger than the file's size limit was written whole after rotating (a 10 MiB log
    could become any size); the file keeps the newest lines within the limit and counts the rest."""
    files = ChildLogFiles(tmp_path, max_bytes=1000, backups=2)
    files.write({"s": [f"line {index:04d} " + "x" * 40 + "\n" for index in range(200)]})
    files.write({"s": [f"more {index:04d} " + "y" * 40 + "\n" for index in range(200)]})
    for path in tmp_path.iterdir():
        assert path.stat().st_size <= 1000, path
    assert files.path("s").read_text().splitlines()[-1].startswith("more 0199")
    assert files.dropped["s"] > 0


def test_line_ring_is_bounded_in_lines_and_bytes() -> None:
    ring = LineRing(max_lines=10, max_bytes=1000, max_line=300)
    for index in range(50):
        ring.append(f"{index}:" + "z" * 500)
    assert ring.size <= 1000 and len(ring) >= 1
    assert ring.tail(1)[0].startswith("49:") and ring.tail(1)[0].endswith("[cut]")
    for index in range(50):
        ring.append(str(index))
    assert len(ring) == 10 and ring.tail(3) == ["47", "48", "49"] and ring.tail(0) == []


class _NeverReads(anyio.abc.ByteSendStream):
    """A peer whose buffers are full: every send waits forever."""

    async def send(self, item: bytes) -> None:
        await anyio.sleep_forever()

    async def aclose(self) -> None:
        pass


def test_outbox_overflow_is_seen_on_push_even_while_the_pump_is_stuck_writing() -> None:
    """The bound was checked only by the pump, between writes; a pump stuck writing to a peer that
    never reads never checked it, and the backlog grew without limit. A push past the bound drops
    the backlog and ends the stuck write: the pump raises OutboxOverflow, its owner closes."""
    async def main() -> None:
        outbox = Outbox(limit=1000)
        with anyio.fail_after(5):
            with pytest.raises(ExceptionGroup) as raised:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(outbox.pump, _NeverReads())
                    outbox.push(b"x" * 600)
                    await anyio.lowlevel.checkpoint()
                    await anyio.lowlevel.checkpoint()  # the pump is inside send now
                    outbox.push(b"y" * 600)
                    outbox.push(b"z" * 600)  # past the bound: dropped, and the pump told
        assert [type(e) for e in raised.value.exceptions] == [OutboxOverflow]
        assert outbox.overflowed and outbox.size == 0 and outbox.closed

    anyio.run(main)


def test_an_http_body_nested_300_deep_is_an_invalid_request(make_daemon: MakeDaemon) -> None:
    """The HTTP door parsed bodies with plain orjson: a 300-deep request reached the session and
    failed when re-encoded. It is refused when parsed, with its id, like on the other doors."""
    import httpx

    from .conftest import free_port
    from .test_http import ACCEPT, ENVELOPE, http_toml, modern_headers

    port = free_port()
    daemon = make_daemon(http_toml(port) + server_toml("echo"))
    daemon.wait_state("echo", "ready")
    body = ('{"jsonrpc":"2.0","id":"deep","method":"tools/call","params":{"name":"echo",'
            '"arguments":{"text":"x","deep":' + _nested(300) + '},"_meta":'
            + orjson.dumps(ENVELOPE).decode() + "}}")
    with httpx.Client(timeout=30) as http:
        reply = http.post(f"http://127.0.0.1:{port}/mcp/echo", content=body.encode(),
                          headers={**modern_headers("tools/call", "echo"), "accept": ACCEPT})
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == -32600 and reply.json()["id"] == "deep"
    _still_serving(daemon)


def test_a_non_string_method_is_answered_with_its_id(make_daemon: MakeDaemon) -> None:
    """Regression (found by `python -m bench chaos`): `{"id": 0, "method": 0}` on the control socket
    was answered -32600 with a null id, so a client could not tell which request it was."""
    import socket as _socket

    import orjson as _orjson

    daemon = make_daemon(server_toml("echo", ECHO))
    with _socket.socket(_socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(daemon.socket))
        sock.sendall(b'{"jsonrpc":"2.0","id":0,"method":0}\n')
        reply = _orjson.loads(sock.makefile("rb").readline())
    assert reply["id"] == 0 and reply["error"]["code"] == -32600
