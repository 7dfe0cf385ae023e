"""Contract tests of `fast_requests`: the connection that answers whole POSTs itself, against the
real uvicorn protocol on asyncio and uvloop. They fail when an upgrade of uvicorn changes the
parser callbacks, the cycle or the pipelining this leans on."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
import uvicorn

from supervisor.wire import fastio
from supervisor.wire.fast_requests import MAX_FAST_BODY, FastHttpProtocol, FastRequest

from .conftest import wait_for

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    not fastio.uvloop_installed(), reason="uvloop is not installed"))]
JSON = b"content-type: application/json\r\n"


class App:
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
            request.respond(200, JSON, b'{"fast":true}')
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


def protocol_for(app: App) -> type[FastHttpProtocol]:
    class Protocol(FastHttpProtocol):
        def connection_made(self, transport: Any) -> None:
            self.fast_app = app
            self.raw_transport = transport
            super().connection_made(transport)

    return Protocol


@contextlib.asynccontextmanager
async def serving(app: App) -> AsyncIterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None,
                            access_log=False, http=protocol_for(app), ws="none")
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]  # no signal handlers off the main thread
    task = asyncio.ensure_future(server.serve())
    try:
        await anyio.to_thread.run_sync(lambda: wait_for(lambda: server.started, 20))
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


def post(body: bytes, path: bytes = b"/mcp/x") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (path, len(body), body)


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
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


def run(name: str, test: Callable[[App, int], Any]) -> None:
    async def main() -> None:
        app = App()
        async with serving(app) as port:
            await test(app, port)

    fastio.run(main, {fastio.LOOP_ENV: name})


@pytest.mark.parametrize("name", LOOPS)
def test_a_taken_request_is_answered_in_one_write_and_the_connection_is_kept(name: str) -> None:
    async def test(app: App, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            writer.write(post(b"fast now"))
            head, body = await read_response(reader)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" not in head
            assert body == b'{"fast":true}'
        assert app.asgi == []
        writer.close()

    run(name, test)


@pytest.mark.parametrize("name", LOOPS)
def test_declined_and_non_post_requests_reach_the_asgi_app_with_their_bodies(name: str) -> None:
    """A declined POST (body included), a GET, a path outside /mcp and a body over the fast
    limit (which arrives in many chunks) all go the ASGI way, in order, on one connection."""
    async def test(app: App, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        big = b"fast" + b"x" * (MAX_FAST_BODY + 10)
        requests = [post(b"slow body"), b"GET /mcp/x HTTP/1.1\r\nHost: x\r\n\r\n",
                    post(b"fast now", b"/other"), post(big)]
        for request in requests:
            writer.write(request)
            await read_response(reader)
        assert app.asgi == [("POST", "/mcp/x", b"slow body"), ("GET", "/mcp/x", b""),
                            ("POST", "/other", b"fast now"), ("POST", "/mcp/x", big)]
        writer.close()

    run(name, test)


@pytest.mark.parametrize("name", LOOPS)
def test_pipelined_requests_wait_for_the_kept_one_and_keep_their_order(name: str) -> None:
    async def test(app: App, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post(b"fast later") + post(b"slow") + post(b"fast now"))
        await anyio.to_thread.run_sync(lambda: wait_for(lambda: app.kept, 20))
        await asyncio.sleep(0.1)
        assert app.asgi == []  # queued behind the kept request
        app.kept[0].respond(200, JSON, b"first")
        answers = [(await read_response(reader))[1] for _ in range(3)]
        # what arrives behind a request in progress queues the way uvicorn queues pipelined ones
        assert answers == [b"first", b"asgi:4", b"asgi:8"]
        writer.close()

    run(name, test)


@pytest.mark.parametrize("name", LOOPS)
def test_a_kept_request_hears_its_client_hang_up(name: str) -> None:
    async def test(app: App, port: int) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post(b"fast later"))
        await anyio.to_thread.run_sync(lambda: wait_for(lambda: app.kept, 20))
        writer.close()
        await anyio.to_thread.run_sync(lambda: wait_for(lambda: app.hung_up, 20))
        assert app.hung_up == [b"fast later"]
        assert app.kept[0].disconnected
        app.kept[0].respond(200, JSON, b"too late")  # nothing to write to: does nothing

    run(name, test)


@pytest.mark.parametrize("name", LOOPS)
def test_an_escalated_request_streams_through_a_real_cycle_and_hears_the_hang_up(name: str) -> None:
    """`escalate` gives uvicorn's own receive and send for the rest of the request: a chunked
    stream reaches the client, the next request on the connection is served after it, and once
    the client goes `receive` says http.disconnect."""
    async def test(app: App, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post(b"fast stream"))
        await anyio.to_thread.run_sync(lambda: wait_for(lambda: app.kept, 20))
        receive, send = app.kept[0].escalate()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"data: 2\n\n", "more_body": False})
        app.kept[0].ended()
        head, body = await read_response(reader)
        assert b"transfer-encoding: chunked" in head and body == b"data: 1\n\ndata: 2\n\n"
        writer.write(post(b"fast now"))
        assert (await read_response(reader))[1] == b'{"fast":true}'

        writer.write(post(b"fast stream again"))
        await anyio.to_thread.run_sync(lambda: wait_for(lambda: len(app.kept) == 2, 20))
        receive, send = app.kept[1].escalate()
        writer.close()
        message = await asyncio.wait_for(receive(), 20)
        assert message["type"] == "http.disconnect"

    run(name, test)


@pytest.mark.parametrize("name", LOOPS)
def test_an_app_that_raises_on_a_request_costs_that_request_alone(name: str) -> None:
    """The connection's last guard: a 500 that closes the connection; other connections go on."""
    async def test(app: App, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post(b"fast boom"))
        head, _ = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 500 ") and b"connection: close" in head
        assert await asyncio.wait_for(reader.read(), 20) == b""  # closed
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post(b"fast now"))
        assert (await read_response(reader))[1] == b'{"fast":true}'
        writer.close()

    run(name, test)
