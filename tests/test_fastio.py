"""Contract tests of `supervisor.wire.fastio`: each trick against the real library it leans on.

These fail when an upgrade of anyio, uvicorn or uvloop changes an internal a trick relies on, so
the daemon does not silently fall back to a slow path (or, worse, lose a hang-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from supervisor.wire import fastio

from .conftest import free_port, wait_for

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    not fastio.uvloop_installed(), reason="uvloop is not installed"))]


def test_the_daemon_loop_is_asyncio_unless_uvloop_is_asked_for() -> None:
    assert fastio.loop_name({}) == "asyncio"
    assert fastio.loop_name({fastio.LOOP_ENV: "asyncio"}) == "asyncio"
    expected = "uvloop" if fastio.uvloop_installed() else "asyncio"
    assert fastio.loop_name({fastio.LOOP_ENV: "uvloop"}) == expected


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
def test_a_waiting_request_hears_its_client_hang_up(name: str) -> None:
    """uvicorn's httptools `receive` is a bound method of the request's cycle, the protocol's
    `cycle` is that same request while it waits, and `connection_lost` runs when the client goes:
    a protocol that calls `fastio.hung_up` there reaches the callback of the waiting request."""
    heard: list[str] = []
    watched: list[bool] = []

    class Protocol(HttpToolsProtocol):
        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            fastio.hung_up(self.cycle)

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
                                access_log=False, http=Protocol, ws="none")
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
