"""Contract tests of `supervisor.wire.fastio`: each trick against the real library it leans on.

These fail when an upgrade of anyio, uvicorn or uvloop changes an internal a trick relies on, so
the daemon does not silently fall back to a slow path (or, worse, lose a hang-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import select
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from supervisor.wire import fastio
from supervisor.wire.fastio.fast_requests import MAX_FAST_BODY, FastHttpConnection, FastRequest
from supervisor.wire.fastio.http_connection import (
    READ_SIZE,
    CoalescingTransport,
    HttpConnection,
    connections_of,
    small_reads,
)

from .conftest import free_port, wait_for

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    not fastio.uvloop_installed(), reason="uvloop is not installed"))]


def test_the_daemon_loop_is_uvloop_when_installed_unless_asyncio_is_asked_for() -> None:
    expected = "uvloop" if fastio.uvloop_installed() else "asyncio"
    assert fastio.loop_name({}) == expected
    assert fastio.loop_name({fastio.LOOP_ENV: "uvloop"}) == expected
    assert fastio.loop_name({fastio.LOOP_ENV: "asyncio"}) == "asyncio"
    assert fastio.loop_name({fastio.LOOP_ENV: " AsyncIO "}) == "asyncio"


@pytest.mark.parametrize("name", LOOPS)
def test_run_runs_main_on_the_named_loop(name: str) -> None:
    async def main() -> str:
        return type(asyncio.get_running_loop()).__module__

    module = fastio.run(main, {fastio.LOOP_ENV: name})
    assert module.startswith("uvloop" if name == "uvloop" else "asyncio")


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_tune_gc_raises_generation_0_and_freezes_the_heap(restored_gc: None) -> None:
    _, gen1, gen2 = gc.get_threshold()
    fastio.tune_gc()
    assert gc.get_threshold() == (fastio.GEN0_THRESHOLD, gen1, gen2)
    assert gc.get_freeze_count() > 0


@pytest.mark.parametrize("name", LOOPS)
def test_a_child_stdin_transport_is_found_and_written_directly(name: str) -> None:
    """anyio's process stdin wraps a StreamWriter whose transport `pipe_transport` finds on both
    loops; the sender writes at once, and takes nothing once the buffer is past high water."""
    async def main() -> None:
        echo_line = "import sys; print(sys.stdin.readline().strip())"
        proc = await anyio.open_process([sys.executable, "-c", echo_line])
        try:
            transport = fastio.pipe_transport(proc.stdin)
            assert transport is not None
            send = fastio.pipe_sender(transport, high_water=1024)
            assert send(b"hello\n") == 6
            assert proc.stdout is not None
            with anyio.fail_after(20):
                assert (await proc.stdout.receive()).strip() == b"hello"
        finally:
            proc.kill()
            await proc.aclose()

    fastio.run(main, {fastio.LOOP_ENV: name})


def test_pipe_sender_takes_nothing_past_high_water() -> None:
    class Full:
        def write(self, data: bytes) -> None:
            raise AssertionError("written past high water")

        def is_closing(self) -> bool:
            return False

        def get_write_buffer_size(self) -> int:
            return 2048

    assert fastio.pipe_sender(Full(), high_water=1024)(b"x") == 0
    assert fastio.pipe_transport(object()) is None


def test_watch_hang_up_refuses_what_is_not_a_uvicorn_cycle() -> None:
    async def receive() -> dict[str, Any]:
        return {}

    assert fastio.watch_hang_up(receive, lambda: None) is False
    fastio.hung_up(None)  # a connection lost before any request: nothing to tell


@pytest.mark.parametrize("name", LOOPS)
@pytest.mark.parametrize("base", ["subclass", "HttpConnection"])
def test_a_waiting_request_hears_its_client_hang_up(name: str, base: str) -> None:
    """uvicorn's httptools `receive` is a bound method of the request's cycle, the protocol's
    `cycle` is that same request while it waits, and `connection_lost` runs when the client goes:
    a protocol that calls `fastio.hung_up` there reaches the callback of the waiting request."""
    heard: list[str] = []
    watched: list[bool] = []

    class Protocol(HttpToolsProtocol):
        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            fastio.hung_up(self.cycle)

    # `HttpConnection` (the door's base) does the same in its own `connection_lost`.
    chosen = Protocol if base == "subclass" else HttpConnection

    async def app(scope: Any, receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        if scope["type"] != "http":
            return
        await receive()  # the body
        gone = asyncio.Event()

        def hung_up() -> None:
            heard.append("gone")
            gone.set()

        watched.append(fastio.watch_hang_up(receive, hung_up))
        await asyncio.wait_for(gone.wait(), 20)
        fastio.unwatch_hang_up(receive)

    async def main() -> None:
        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None,
                                access_log=False, http=chosen, ws="none")
        server = uvicorn.Server(config)
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]  # no signal handlers off the main thread
        task = asyncio.ensure_future(server.serve())
        try:
            await anyio.to_thread.run_sync(lambda: wait_for(lambda: server.started, 20))
            client = subprocess.Popen([sys.executable, "-c", (
                "import socket,time,sys\n"
                f"s=socket.create_connection(('127.0.0.1',{port}))\n"
                "s.sendall(b'POST / HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 2\\r\\n\\r\\n{}')\n"
                "time.sleep(0.5)\ns.close()\n")])
            await anyio.to_thread.run_sync(client.wait)
            await anyio.to_thread.run_sync(lambda: wait_for(lambda: heard, 20))
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 20)
        assert watched == [True]
        assert heard == ["gone"]

    fastio.run(main, {fastio.LOOP_ENV: name})


# ---- a child's stdout fed from the pipe transport's read callback ---------------------------------

_WRITER = ("import os, sys\n"
           "sys.stdout.buffer.write(b'early\\n'); sys.stdout.flush()\n"
           "sys.stdin.readline()\n"
           "for i in range({count}):\n"
           "    sys.stdout.buffer.write(b'line %d\\n' % i)\n"
           "    if i == 9:  # a first chunk is on its way: say so\n"
           "        sys.stdout.flush(); os.write(os.open({written!r}, os.O_WRONLY), b'x')\n"
           "sys.stdout.flush()\n")

Before = Callable[[anyio.abc.Process, int], Any]


async def _fed_until_eof(count: int, before: Before | None = None) -> tuple[bytes, list[object]]:
    """Start a child that says `early`, waits for a line on stdin, then writes `count` lines (and
    says on a FIFO of its own when the first ten are on their way); read its stdout with
    `read_pipe_with_callback` once `early` is in the StreamReader and `before(proc, the FIFO's
    read end)` returned. What was fed, and the stdout transport's protocol before and after."""
    with tempfile.TemporaryDirectory() as fifos:
        fifo = os.path.join(fifos, "written")
        os.mkfifo(fifo)
        written = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the child says when it wrote all
        try:
            return await _fed(count, before, fifo, written)
        finally:
            os.close(written)


async def _fed(count: int, before: Before | None, fifo: str, written: int) -> tuple[bytes, list[object]]:
    script = _WRITER.format(count=count, written=fifo)
    proc = await anyio.open_process([sys.executable, "-c", script])
    try:
        assert proc.stdout is not None and proc.stdin is not None
        reader = proc.stdout._stream  # type: ignore[attr-defined]  # the contract under test: a StreamReader
        with anyio.fail_after(20):
            while b"early" not in reader._buffer:
                await anyio.sleep(0.01)
        await proc.stdin.send(b"go\n")
        if before is not None:
            await before(proc, written)
        transport = reader._transport
        protocols: list[object] = [transport.get_protocol()]
        fed = bytearray()
        with anyio.fail_after(20):
            assert await fastio.read_pipe_with_callback(proc.stdout, fed.extend)
        protocols.append(transport.get_protocol())
        return bytes(fed), protocols
    finally:
        await _ended(proc)


async def _ended(proc: anyio.abc.Process) -> None:
    with contextlib.suppress(ProcessLookupError):  # uvloop raises it for a child already reaped
        proc.kill()
    await proc.aclose()


def _lines(count: int) -> bytes:
    return b"early\n" + b"".join(b"line %d\n" % i for i in range(count))


@pytest.mark.parametrize("name", LOOPS)
def test_a_child_stdout_is_fed_from_the_read_callback_in_order_and_the_protocol_is_restored(
        name: str) -> None:
    """anyio's process stdout is a StreamReader over a pipe transport on both loops: what the
    reader buffered before the swap comes first, then every chunk in order, and the end of stream
    reaches the transport's own protocol (the subprocess transport reaps the child only once each
    of its pipes said so), which the closed transport no longer holds."""
    async def main() -> None:
        fed, (before, after) = await _fed_until_eof(2000)
        assert fed == _lines(2000)
        assert getattr(before, "disconnected", None) is True
        assert after in (before, None)

    fastio.run(main, {fastio.LOOP_ENV: name})


async def _read_just_before_the_swap(proc: anyio.abc.Process, written: int) -> None:
    """Have the transport read a chunk in the loop pass just before the swap: block until the child
    wrote its first lines (the loop cannot read them meanwhile), then yield twice, so the
    transport's read (and the call_soon that hands the chunk to the StreamReader) is queued ahead
    of our next step."""
    readable, _, _ = select.select([written], [], [], 20)
    assert readable
    await asyncio.sleep(0)
    await asyncio.sleep(0)


@pytest.mark.parametrize("name", LOOPS)
def test_a_chunk_read_just_before_the_swap_is_fed_not_lost(name: str) -> None:
    """Regression test: both loops' subprocess transports hand what they read to the StreamReader
    with call_soon, so a chunk read in the pass before the swap reached the StreamReader after its
    buffer was taken, and was lost (1 run in 8 on uvloop). It must be fed, in order."""
    async def main() -> None:
        fed, _ = await _fed_until_eof(2000, _read_just_before_the_swap)
        assert fed == _lines(2000)

    fastio.run(main, {fastio.LOOP_ENV: name})


async def _until_paused(proc: anyio.abc.Process, written: int) -> None:
    """Wait until the StreamReader paused the transport: its buffer passed twice its limit."""
    reader = proc.stdout._stream  # type: ignore[union-attr]  # the contract under test: a StreamReader
    with anyio.fail_after(20):
        while not reader._paused:
            await anyio.sleep(0.01)


PAUSING = 40_000  # lines of about 10 bytes: past twice the StreamReader's 64 KiB limit


@pytest.mark.parametrize("name", LOOPS)
def test_a_pipe_transport_the_stream_reader_paused_is_resumed(name: str) -> None:
    """A child that wrote more than the StreamReader holds before the swap left its transport
    paused: the read resumes it and nothing is lost."""
    async def main() -> None:
        fed, _ = await _fed_until_eof(PAUSING, _until_paused)
        assert fed == _lines(PAUSING)

    fastio.run(main, {fastio.LOOP_ENV: name})


def _as_in_python_3_11_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make asyncio's read pipe transport the one of Debian's Python 3.11.2: no `is_reading` of its
    own (it inherits `ReadTransport.is_reading`, which raises NotImplementedError), so none of its
    own methods asks it either (later point releases added `_add_reader`, which does)."""
    from asyncio import unix_events

    def add_reader(self: Any, fd: int, callback: Callable[[], None]) -> None:
        self._loop._add_reader(fd, callback)

    def pause_reading(self: Any) -> None:
        if self._closing or self._paused:
            return
        self._paused = True
        self._loop._remove_reader(self._fileno)

    def resume_reading(self: Any) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._loop._add_reader(self._fileno, self._read_ready)

    transport = unix_events._UnixReadPipeTransport  # type: ignore[attr-defined]  # private, untyped: the class under test
    monkeypatch.setattr(transport, "is_reading", asyncio.ReadTransport.is_reading)
    monkeypatch.setattr(transport, "pause_reading", pause_reading)
    monkeypatch.setattr(transport, "resume_reading", resume_reading)
    if hasattr(transport, "_add_reader"):
        monkeypatch.setattr(transport, "_add_reader", add_reader)


def test_a_pipe_transport_without_is_reading_is_resumed_not_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression test (897c0ae): on Debian's Python 3.11.2 a pipe transport's `is_reading`
    raises NotImplementedError; reading a child's stdout called it, and every instance ended at
    once when the daemon ran on /usr/bin/python3. Here the transport is 3.11.2's and the
    StreamReader has paused it: the read must resume it and deliver every byte."""
    _as_in_python_3_11_2(monkeypatch)

    async def main() -> None:
        fed, _ = await _fed_until_eof(PAUSING, _until_paused)
        assert fed == _lines(PAUSING)

    fastio.run(main, {fastio.LOOP_ENV: "asyncio"})


@pytest.mark.parametrize("name", LOOPS)
def test_an_error_in_the_feed_ends_the_read_raises_it_and_restores_the_protocol(name: str) -> None:
    class Stop(Exception):
        pass

    async def main() -> None:
        script = _WRITER.format(count=10, written="/dev/null")
        proc = await anyio.open_process([sys.executable, "-c", script])
        try:
            assert proc.stdout is not None and proc.stdin is not None
            transport = proc.stdout._stream._transport  # type: ignore[attr-defined]  # under test
            original = transport.get_protocol()
            await proc.stdin.send(b"go\n")

            def feed(data: bytes) -> None:
                raise Stop

            with anyio.fail_after(20), pytest.raises(Stop):
                await fastio.read_pipe_with_callback(proc.stdout, feed)
            assert transport.get_protocol() is original
        finally:
            await _ended(proc)

    fastio.run(main, {fastio.LOOP_ENV: name})


def test_read_pipe_with_callback_declines_what_is_not_a_process_pipe() -> None:
    async def main() -> None:
        send, receive = anyio.create_memory_object_stream[bytes](1)
        with send, receive:
            assert await fastio.read_pipe_with_callback(receive, lambda data: None) is False

    anyio.run(main)


# ---- the loop pass in progress ----------------------------------------------------------------------


@pytest.mark.parametrize("name", LOOPS)
def test_a_write_deferred_from_an_io_callback_runs_after_every_io_callback_of_the_pass(name: str) -> None:
    """What `Outbox` batching relies on: with two sockets readable in the same pass, a callback
    queued by the first reader runs after the second reader, on both loops, so a write deferred
    there joins the second one's. asyncio says it may wait (the second reader is in its ready
    queue); uvloop shows no queue (None: the outbox judges by itself)."""
    async def main() -> tuple[list[str], int | None]:
        loop = asyncio.get_running_loop()
        can_wait = fastio.write_can_wait(loop)
        order: list[str] = []
        said: list[int | None] = []
        done = asyncio.Event()
        pairs = [socket.socketpair() for _ in range(2)]
        try:
            def deferred() -> None:
                order.append("deferred")
                done.set()

            def first() -> None:
                loop.remove_reader(pairs[0][0])
                order.append("first")
                said.append(can_wait() if can_wait is not None else None)
                loop.call_soon(deferred)

            def second() -> None:
                loop.remove_reader(pairs[1][0])
                order.append("second")

            for (_, writer) in pairs:
                writer.send(b"x")  # both readable before the loop next polls
            loop.add_reader(pairs[0][0], first)
            loop.add_reader(pairs[1][0], second)
            await asyncio.wait_for(done.wait(), 20)
        finally:
            for a, b in pairs:
                a.close()
                b.close()
        return order, said[0]

    order, said = fastio.run(main, {fastio.LOOP_ENV: name})
    assert order == ["first", "second", "deferred"]
    if name == "asyncio":
        assert said
    else:
        assert said is None


def test_on_asyncio_a_write_waits_only_when_other_callbacks_are_queued() -> None:
    """Alone in its pass, a batch is written at once: waiting would cost asyncio one more select."""
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        can_wait = fastio.write_can_wait(loop)
        assert can_wait is not None
        said: list[int] = []
        done = asyncio.Event()

        def followed() -> None:
            said.append(can_wait())  # the no-op queued after it still waits to run

        def alone() -> None:
            said.append(can_wait())  # the task waits on `done`: nothing else is queued
            done.set()

        loop.call_soon(followed)
        loop.call_soon(lambda: None)
        loop.call_later(0.01, alone)
        await asyncio.wait_for(done.wait(), 20)
        return said

    followed, alone = fastio.run(main, {fastio.LOOP_ENV: "asyncio"})
    assert followed
    assert not alone


# ---- the HTTP door's connection (fastio.http_connection) ------------------------------------------


class _Recorder:
    """A transport that records what is written through it (and forwards everything)."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def _serve(app: Any, protocol: type[HttpConnection], main: Callable[[uvicorn.Server, int], Any],
           name: str) -> None:
    """Run a real uvicorn server on `protocol` on the loop `name`, and `main(server, port)`."""
    async def run() -> None:
        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None,
                                access_log=False, http=protocol, ws="none")
        server = uvicorn.Server(config)
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]  # no signal handlers off the main thread
        task = asyncio.ensure_future(server.serve())
        try:
            with anyio.fail_after(20):
                while not server.started:
                    await anyio.sleep(0.01)
            await main(server, port)
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 20)

    fastio.run(run, {fastio.LOOP_ENV: name})


async def _until(predicate: Callable[[], bool], what: str) -> None:
    """Poll `predicate` on the loop (every 10 ms, for up to 20 s) until it holds."""
    with anyio.move_on_after(20):
        while not predicate():
            await anyio.sleep(0.01)
    assert predicate(), f"timed out waiting for {what}"


@pytest.mark.parametrize("name", LOOPS)
def test_a_connection_knows_what_it_awaits_from_its_client(name: str) -> None:
    """uvicorn's `cycle` is replaced when a head completes, its `more_body` is False once the body
    is all in and `response_started` True once the answer began, and the server's
    `server_state.connections` is the set the protocol adds itself to, and the cycle's
    `on_response` is the protocol's `on_response_complete`: from these alone `HttpConnection`
    keeps a deadline for the head (from its first byte), the body (from the head) and the
    keep-alive wait (from the answer; uvicorn arms no timer of its own), and refuses a head over
    `max_head`."""
    answering: list[bool] = []
    too_big: list[int] = []

    class Connection(HttpConnection):
        header_timeout = 100.0
        body_timeout = 1000.0
        keep_alive = 10000.0
        max_head = 1024

        def head_too_big(self) -> None:
            too_big.append(self._head)
            super().head_too_big()

    async def app(scope: Any, receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        (conn,) = [c for c in connections_of(server_of[0]) if c.cycle is not None]
        answering.append(conn.answering())
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        answering.append(conn.answering())
        await send({"type": "http.response.body", "body": b"ok"})

    server_of: list[uvicorn.Server] = []

    async def main(server: uvicorn.Server, port: int) -> None:
        server_of.append(server)
        Connection.loop_time = staticmethod(asyncio.get_running_loop().time)
        now = asyncio.get_running_loop().time
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            await _until(lambda: len(connections_of(server)) == 1, "the connection")
            (conn,) = connections_of(server)
            assert conn.connections is connections_of(server)
            assert conn.reading_head() and 90 < conn.deadline - now() <= 100  # the first head
            await client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await client.receive()).endswith(b"ok")
            # Between requests: the keep-alive wait, as a deadline and not as uvicorn's timer.
            assert conn.idle() and conn.reading_head() and 9000 < conn.deadline - now() <= 10000
            assert conn.timeout_keep_alive_task is None
            await client.send(b"POST / HTTP/1.1\r\nHost: x\r\n")
            await _until(lambda: not conn.idle(), "the next head begun")
            assert conn.reading_head() and 0 < conn.deadline - now() <= 100
            await client.send(b"Content-Length: 5\r\n\r\nab")
            await _until(lambda: not conn.reading_head(), "the body being read")
            assert 900 < conn.deadline - now() <= 1000
            await client.send(b"cde")
            assert (await client.receive()).endswith(b"ok")
            assert conn.idle() and conn.reading_head() and 9000 < conn.deadline - now() <= 10000
            assert conn.timeout_keep_alive_task is None
            assert answering == [False, True, False, True]
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000)
            with anyio.fail_after(20):
                with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    while await client.receive():
                        pass
        assert too_big and too_big[0] > 1024

    _serve(app, Connection, main, name)


@pytest.mark.parametrize("name", LOOPS)
def test_a_json_answer_is_one_write_and_a_stream_head_goes_out_alone(name: str) -> None:
    """uvicorn writes a response head (starting `HTTP/1.1 `) and its body as separate writes;
    `CoalescingTransport` makes them one when they come in the same step, and writes a head with
    nothing after it (an SSE stream's start) at the end of the loop pass."""
    recorded: list[_Recorder] = []

    class Connection(HttpConnection):
        def accept(self, transport: asyncio.BaseTransport) -> None:
            recorder = _Recorder(transport)
            recorded.append(recorder)
            super().accept(recorder)  # type: ignore[arg-type]  # a duck-typed transport

    async def app(scope: Any, receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        if scope["type"] != "http":
            return
        await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        if scope["path"] == "/stream":
            await anyio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"data: x\n\n"})

    async def main(server: uvicorn.Server, port: int) -> None:
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            await client.send(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
            with anyio.fail_after(20):
                got = b""
                while b"data: x" not in got:
                    got += await client.receive()
            (recorder,) = recorded
            assert isinstance(connections_of(server).copy().pop().transport, CoalescingTransport)
            assert len(recorder.writes) == 1, recorder.writes
            assert recorder.writes[0].startswith(b"HTTP/1.1 200") and b"data: x" in recorder.writes[0]
            await client.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            with anyio.fail_after(20):
                got = b""
                while b"data: x" not in got:
                    got += await client.receive()
            head, *rest = recorder.writes[1:]
            assert head.startswith(b"HTTP/1.1 200") and b"data: x" not in head
            assert rest and b"data: x" in b"".join(rest)  # chunked, since no content-length

    _serve(app, Connection, main, name)


@pytest.mark.parametrize("name", LOOPS)
def test_small_reads_sets_the_read_size_of_asyncios_socket_transport(name: str) -> None:
    """asyncio's socket transport reads `max_size` bytes per `recv` (256 KiB unless told): the
    attribute `small_reads` lowers. uvloop's has no such attribute, and `small_reads` leaves it."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        try:
            transport, _ = await loop.create_connection(asyncio.Protocol, *listener.getsockname()[:2])
            try:
                small_reads(transport)
                if name == "asyncio":
                    selector_transport = asyncio.selector_events._SelectorSocketTransport  # type: ignore[attr-defined]  # private, and not in typeshed
                    assert selector_transport.max_size == 256 * 1024  # what it would read
                    assert transport.max_size == READ_SIZE  # type: ignore[attr-defined]  # asyncio's private read size
                else:
                    assert not hasattr(transport, "max_size")
            finally:
                transport.close()
        finally:
            listener.close()

    fastio.run(main, {fastio.LOOP_ENV: name})


# ---- fast_requests: the whole POST served by its connection ----------------------------------------

_JSON_HEAD = b"content-type: application/json\r\n"


class _FastApp:
    """Takes POSTs whose body starts with `fast`, answers `now` at once and keeps the others for
    the test; everything else is the ASGI app's (which echoes what it received)."""

    def __init__(self) -> None:
        self.kept: list[FastRequest] = []
        self.asgi: list[tuple[str, str, bytes]] = []
        self.hung_up: list[bytes] = []

    def fast_request(self, request: FastRequest) -> bool:
        body = bytes(request.body)
        if not body.startswith(b"fast"):
            return False
        if body == b"fast boom":
            raise RuntimeError("a bug in the app")
        if body == b"fast now":
            request.respond(200, _JSON_HEAD, b'{"fast":true}')
            return True
        request.on_hang_up = lambda: self.hung_up.append(body)
        self.kept.append(request)
        return True

    async def __call__(self, scope: Any, receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.asgi.append((scope["method"], scope["path"], body))
        answer = b"asgi:%d" % len(body)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


def _fast_protocol(app: _FastApp) -> type[FastHttpConnection]:
    class Protocol(FastHttpConnection):
        def connection_made(self, transport: Any) -> None:
            self.fast_app = app
            self.raw_transport = transport
            super().connection_made(transport)

    return Protocol


@contextlib.asynccontextmanager
async def _fast_serving(app: _FastApp) -> AsyncIterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None,
                            access_log=False, http=_fast_protocol(app), ws="none")
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]  # no signal handlers off the main thread
    task = asyncio.ensure_future(server.serve())
    try:
        await anyio.to_thread.run_sync(lambda: wait_for(lambda: server.started, 20))
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


def _post(body: bytes, path: bytes = b"/mcp/x") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (path, len(body), body)


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    if b"transfer-encoding: chunked" in head:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if not size:
                return head, body
            body += chunk[:-2]
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return head, await asyncio.wait_for(reader.readexactly(length), 20)


def _fast_run(name: str, test: Callable[[_FastApp, int], Any]) -> None:
    async def main() -> None:
        app = _FastApp()
        async with _fast_serving(app) as port:
            await test(app, port)

    fastio.run(main, {fastio.LOOP_ENV: name})


@pytest.mark.parametrize("name", LOOPS)
def test_a_connection_given_its_loop_never_asks_asyncio_for_it(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: on Python 3.11 each `asyncio.get_running_loop()` or `get_event_loop()` checks
    the process id with a getpid syscall, and uvicorn asked once per connection (its protocol's
    `__init__`), our coalescing transport once more. Given `event_loop`, neither a connection nor
    its requests (taken, or served the ASGI way) ask."""
    asked: list[str] = []

    def counting(real: Callable[[], asyncio.AbstractEventLoop], what: str) -> Callable[[], Any]:
        def ask() -> asyncio.AbstractEventLoop:
            caller = sys._getframe(1).f_code
            asked.append(f"{what} from {caller.co_filename}:{caller.co_name}")
            return real()
        return ask

    for what in ("get_running_loop", "get_event_loop"):
        monkeypatch.setattr(asyncio, what, counting(getattr(asyncio, what), what))

    async def test(app: _FastApp, port: int) -> None:
        monkeypatch.setattr(FastHttpConnection, "event_loop", asyncio.get_running_loop())
        asked.clear()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for body in (b"fast now", b"asgi", b"fast now"):
            writer.write(_post(body))
            await _read_response(reader)
        writer.close()
        ours = [a for a in asked if "uvicorn" in a or "supervisor" in a]
        assert ours == [], ours

    _fast_run(name, test)


@pytest.mark.parametrize("name", LOOPS)
def test_a_taken_request_is_answered_in_one_write_and_the_connection_is_kept(name: str) -> None:
    async def test(app: _FastApp, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            writer.write(_post(b"fast now"))
            head, body = await _read_response(reader)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" not in head
            assert body == b'{"fast":true}'
        assert app.asgi == []
        writer.close()

    _fast_run(name, test)


@pytest.mark.parametrize("name", LOOPS)
def test_declined_and_non_post_requests_reach_the_asgi_app_with_their_bodies(name: str) -> None:
    """A declined POST (body included), a GET, a path outside /mcp and a body over the fast
    limit (which arrives in many chunks) all go the ASGI way, in order, on one connection."""
    async def test(app: _FastApp, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        big = b"fast" + b"x" * (MAX_FAST_BODY + 10)
        requests = [_post(b"slow body"), b"GET /mcp/x HTTP/1.1\r\nHost: x\r\n\r\n",
                    _post(b"fast now", b"/other"), _post(big)]
        for request in requests:
            writer.write(request)
            await _read_response(reader)
        assert app.asgi == [("POST", "/mcp/x", b"slow body"), ("GET", "/mcp/x", b""),
                            ("POST", "/other", b"fast now"), ("POST", "/mcp/x", big)]
        writer.close()

    _fast_run(name, test)


@pytest.mark.parametrize("name", LOOPS)
def test_pipelined_requests_wait_for_the_kept_one_and_keep_their_order(name: str) -> None:
    async def test(app: _FastApp, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_post(b"fast later") + _post(b"slow") + _post(b"fast now"))
        await anyio.to_thread.run_sync(lambda: wait_for(lambda: app.kept, 20))
        await asyncio.sleep(0.1)
        assert app.asgi == []  # queued behind the kept request
        app.kept[0].respond(200, _JSON_HEAD, b"first")
        answers = [(await _read_response(reader))[1] for _ in range(3)]
        # what arrives behind a request in progress queues the way uvicorn queues pipelined ones
        assert answers == [b"first", b"asgi:4", b"asgi:8"]
        writer.close()

    _fast_run(name, test)


@pytest.mark.parametrize("name", LOOPS)
def test_a_kept_request_hears_its_client_hang_up(name: str) -> None:
    async def test(app: _FastApp, port: int) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_post(b"fast later"))
        await anyio.to_thread.run_sync(lambda: wait_for(lambda: app.kept, 20))
        writer.close()
        await anyio.to_thread.run_sync(lambda: wait_for(lambda: app.hung_up, 20))
        assert app.hung_up == [b"fast later"]
        assert app.kept[0].disconnected
        app.kept[0].respond(200, _JSON_HEAD, b"too late")  # nothing to write to: does nothing

    _fast_run(name, test)


@pytest.mark.parametrize("name", LOOPS)
def test_an_escalated_request_streams_through_a_real_cycle_and_hears_the_hang_up(name: str) -> None:
    """`escalate` gives uvicorn's own receive and send for the rest of the request: a chunked
    stream reaches the client, the next request on the connection is served after it, and once
    the client goes `receive` says http.disconnect."""
    async def test(app: _FastApp, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_post(b"fast stream"))
        await anyio.to_thread.run_sync(lambda: wait_for(lambda: app.kept, 20))
        receive, send = app.kept[0].escalate()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"data: 2\n\n", "more_body": False})
        app.kept[0].ended()
        head, body = await _read_response(reader)
        assert b"transfer-encoding: chunked" in head and body == b"data: 1\n\ndata: 2\n\n"
        writer.write(_post(b"fast now"))
        assert (await _read_response(reader))[1] == b'{"fast":true}'

        writer.write(_post(b"fast stream again"))
        await anyio.to_thread.run_sync(lambda: wait_for(lambda: len(app.kept) == 2, 20))
        receive, send = app.kept[1].escalate()
        writer.close()
        message = await asyncio.wait_for(receive(), 20)
        assert message["type"] == "http.disconnect"

    _fast_run(name, test)


@pytest.mark.parametrize("name", LOOPS)
def test_an_app_that_raises_on_a_request_costs_that_request_alone(name: str) -> None:
    """The connection's last guard: a 500 that closes the connection; other connections go on."""
    async def test(app: _FastApp, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_post(b"fast boom"))
        head, _ = await _read_response(reader)
        assert head.startswith(b"HTTP/1.1 500 ") and b"connection: close" in head
        assert await asyncio.wait_for(reader.read(), 20) == b""  # closed
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_post(b"fast now"))
        assert (await _read_response(reader))[1] == b'{"fast":true}'
        writer.close()

    _fast_run(name, test)


@pytest.mark.parametrize("name", LOOPS)
def test_a_keep_alive_connection_holds_no_request_it_has_answered(name: str) -> None:
    """Regression (issue 22, the aggregate's rare ~1 s stall): each fast request kept a link to
    the one before it on its connection, so a keep-alive connection held every request it had
    served (and its headers) until it closed, when all of them became cyclic garbage that only
    a generation-2 collection frees: 1.0-1.4 s of CPU at 500 connections. Now 20 answered
    requests leave at most the last one on the connection (where uvicorn's slot keeps it)."""
    def live() -> int:
        return sum(1 for o in gc.get_objects() if type(o) is FastRequest)

    async def test(app: _FastApp, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        gc.collect()
        before = live()
        for _ in range(20):
            writer.write(_post(b"fast now"))
            assert (await _read_response(reader))[1] == b'{"fast":true}'
        assert live() - before <= 1
        writer.write(_post(b"slow after fast"))  # a declined request still goes the ASGI way
        assert (await _read_response(reader))[1] == b"asgi:15"
        writer.close()

    _fast_run(name, test)
