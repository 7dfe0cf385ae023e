"""The door's connections: the cap, the head and body deadlines, and the sweeper that keeps them.

- Connections are capped (`max_connections`, and below the open-file limit, whose soft value the
  daemon raises to the hard one at start): beyond the cap a new connection gets a 503 and is
  closed at once, without being parsed; the ones already open keep working.
- The head (request line and headers) must arrive within `header_timeout` of its first byte (of
  the connection's opening, for the first request), the whole body, first byte included, within
  `body_timeout` after it; else 408 and the connection closes. Heads over `max_header_bytes` are
  431.
- A connection idle for `keep_alive` after its last answer (no new request begun) is closed, as
  uvicorn's keep-alive timeout would, but with no timer handle made per request.

Each connection keeps its own deadline as it reads (`fastio.http_connection.HttpConnection`: no
timer handle, no task, and no clock read when a request arrives whole); one sweeper task
(`Connections.sweep`) closes the ones past it, to within its interval (a quarter of the shortest
of the three, at most a second).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import anyio
import orjson

from supervisor.errors import INVALID_REQUEST
from supervisor.wire.fastio.fast_requests import FastApp, FastHttpConnection
from supervisor.wire.fastio.http_connection import connections_of
from supervisor.wire.jsonrpc import error_response

if TYPE_CHECKING:
    import uvicorn

    from supervisor.config import HttpSettings


def raw_response(status: bytes, body: bytes = b"", extra: bytes = b"") -> bytes:
    """A whole response written by the connection itself (no ASGI cycle): it always closes."""
    head = b"HTTP/1.1 " + status + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n"
    if body:
        head += b"content-type: application/json\r\n"
    return head + extra + b"connection: close\r\n\r\n" + body


def raw_error(status: bytes, code: int, text: str) -> bytes:
    return raw_response(status, orjson.dumps(error_response(None, code, text)))


class Connections:
    """The door's open connections: how many may be open, and the deadlines they are held to."""

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self.max_connections = settings.max_connections  # lowered to the fd budget by the door
        self.refused = 0
        # What each whole POST is offered to first (the door's `FastPath`); None: all go ASGI.
        self.fast_app: FastApp | None = None
        self._open: set[Connection] = set()  # uvicorn's set of open connections, once serving
        self._sweeper_idle = False
        self._opened = anyio.Event()

    def serve(self, server: uvicorn.Server) -> None:
        """`server` (built with `protocol()`) holds the connections from now on."""
        # Every connection of `server` is one of ours: `protocol()` built its class.
        self._open = cast("set[Connection]", connections_of(server))

    def opened(self) -> None:
        """A connection was accepted: the deadline sweeper wakes if it slept for want of any."""
        if self._sweeper_idle:
            self._sweeper_idle = False
            self._opened.set()

    async def sweep(self) -> None:
        """Close connections whose request head or body is late, or that idled past `keep_alive`.

        One pass over the open connections every `interval`: a deadline is kept to within that,
        at no cost per request. Sleeps while there is no connection at all."""
        settings = self.settings
        interval = min(1.0, settings.header_timeout / 4, settings.body_timeout / 4, settings.keep_alive / 4)
        loop_time = asyncio.get_running_loop().time
        while True:
            if not self._open:
                self._sweeper_idle = True
                self._opened = anyio.Event()
                await self._opened.wait()
            await anyio.sleep(interval)
            now = loop_time()
            for conn in [c for c in self._open if 0.0 < c.deadline <= now]:
                conn.deadline_passed()

    def protocol(self) -> type[Connection]:
        """uvicorn's httptools protocol with these limits (call on the loop that serves it)."""
        return _protocol(self)


class Connection(FastHttpConnection):
    """One connection of the door (the class `Connections.protocol` builds sets the limits)."""

    connections_: Connections
    full = b""
    too_big = b""
    head_late = b""
    body_late = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        door = self.connections_
        if self.open_connections() >= door.max_connections:
            # Cheap: no parser work, no ASGI cycle; the fd is given back at once.
            door.refused += 1
            transport.write(self.full)  # type: ignore[attr-defined]  # a socket transport: BaseTransport has no write
            transport.close()
            return
        self.accept(transport)
        door.opened()

    def head_too_big(self) -> None:
        self.close_with(self.too_big)

    def deadline_passed(self) -> None:
        if self.idle():  # the keep-alive wait is over: closed without a word, as uvicorn does
            self.close_with(b"")
        elif self.reading_head():
            self.close_with(self.head_late)
        else:
            self.close_with(b"" if self.answering() else self.body_late)


def _protocol(connections: Connections) -> type[Connection]:
    settings = connections.settings
    head_limit = settings.max_header_bytes

    class Bound(Connection):
        connections_ = connections
        fast_app = connections.fast_app
        event_loop = asyncio.get_running_loop()
        loop_time = staticmethod(event_loop.time)
        header_timeout = settings.header_timeout
        body_timeout = settings.body_timeout
        keep_alive = settings.keep_alive
        max_head = head_limit
        full = raw_response(b"503 Service Unavailable", extra=b"retry-after: 1\r\n")
        too_big = raw_error(b"431 Request Header Fields Too Large", INVALID_REQUEST,
                            f"request head exceeds the {head_limit}-byte limit (http.max_header_bytes)")
        head_late = raw_error(b"408 Request Timeout", INVALID_REQUEST,
                              f"request headers not received within {settings.header_timeout:g}s")
        body_late = raw_error(b"408 Request Timeout", INVALID_REQUEST,
                              f"request body not received within {settings.body_timeout:g}s")

    return Bound
