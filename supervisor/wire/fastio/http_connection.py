"""uvicorn's httptools connection, with the HTTP door's speed tricks and what it reads of uvicorn.

The door (`supervisor.doors.http.connection`) subclasses `HttpConnection` for its policy (the
connection cap, the 408 / 431 answers, the deadline sweeper); everything that leans on uvicorn's or
asyncio's internals is here, and tests/test_fastio.py checks each against the real libraries on
asyncio and uvloop:

- `CoalescingTransport`: uvicorn writes a response head and its body as two `transport.write`
  calls; held together they are one syscall and one TCP segment.
- `small_reads`: asyncio's transports read 256 KiB at a time, which glibc serves with mmap;
  64 KiB comes from the heap.
- `HttpConnection`: after each chunk of bytes, reads off uvicorn's request cycle (`cycle`, its
  `more_body` and `response_started`) what the connection awaits from its client and by when,
  with no timer, task or clock read per request, and keeps the keep-alive deadline of an idle
  connection in the same place (uvicorn's own arms a `call_later` timer after every response);
  tells a waiting request that its client hung up (`fastio.hung_up`); and counts the server's
  open connections (`connections`).
- `connections_of(server)`: the set of a uvicorn server's open connections (its `server_state`).

Kept apart from `fastio` itself so that a daemon without the HTTP door never imports uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from . import hung_up

READ_SIZE = 65536
_HEAD = b"HTTP/1.1 "


class CoalescingTransport:
    """uvicorn's connection transport with a response head held back until the body follows.

    uvicorn writes the status line and headers, then the body, as two `transport.write` calls:
    two `sendto` syscalls, two TCP segments, and often two wake-ups of the client, per request.
    Our JSON answers send both in the same task step, so holding the head until the next write
    makes them one. A head with nothing after it in this loop pass (an SSE stream's start, a 100
    Continue) is written at the end of the pass; order is always kept."""

    __slots__ = ("_call_soon", "_held", "_transport")

    def __init__(self, transport: Any, call_soon: Callable[..., Any]) -> None:
        self._transport = transport  # asyncio's, or uvloop's (not a subclass)
        self._held: bytes | None = None
        self._call_soon = call_soon  # the serving loop's (asking asyncio for it is a getpid on 3.11)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + bytes(data))
        elif data[:9] == _HEAD:
            self._held = bytes(data)
            self._call_soon(self._flush)
        else:
            self._transport.write(data)

    def writelines(self, lines: Any) -> None:
        self.write(b"".join(lines))

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def small_reads(transport: asyncio.BaseTransport) -> None:
    """Read at most 64 KiB at a time from this transport.

    asyncio's transports `recv(256 KiB)`: a buffer that size is above glibc's mmap threshold, so
    every read was an mmap, an mremap (shrinking it to what came) and an munmap: three syscalls
    per request measured with strace. 64 KiB buffers come from the heap. (uvloop has its own
    buffers and no such attribute.)"""
    with contextlib.suppress(AttributeError):
        transport.max_size = READ_SIZE  # type: ignore[attr-defined]  # asyncio's selector transport's read size, not part of BaseTransport


class HttpConnection(HttpToolsProtocol):
    """uvicorn's httptools protocol, tracking what it awaits from its client and by when.

    A subclass sets the limits (`header_timeout`, `body_timeout`, `keep_alive`, `max_head`), the
    loop that serves it (`event_loop`) and `loop_time`, that loop's clock; decides in
    `connection_made` whether to `accept` the connection; and says in `head_too_big` what to do
    with a head over `max_head` bytes. Per connection:

    - `deadline`: the loop time by which the request head (its rest, once its first byte came; the
      first head, from the connection's opening) or the body must be complete, or by which an idle
      keep-alive connection closes; 0.0 when nothing is awaited from the client. Someone else (the
      door's sweeper) acts on it.
    - `idle()`: the deadline is the keep-alive one (the last answer went out, nothing new came).
    - `reading_head()`: what is late, at the deadline: a head (True) or a body (False).
    - `answering()`: the current request's response has begun (a late body then gets no 408).

    Per request that is a few attribute loads and stores in `data_received`: the parser's own
    callbacks are left alone (each override costs a Python frame per request), and where the
    request stands is read off uvicorn's cycle after each chunk; the keep-alive deadline is one
    clock read per answer, in place of uvicorn's timer handle (made, pushed on the loop's heap and
    cancelled again per request)."""

    header_timeout = 10.0
    body_timeout = 30.0
    keep_alive = 5.0
    max_head = 65536
    loop_time: Callable[[], float] = staticmethod(lambda: 0.0)
    # Handed to uvicorn, which otherwise asks `asyncio.get_event_loop()` for each connection: on
    # Python 3.11 every such ask checks the process id with a getpid syscall. None: it asks.
    event_loop: asyncio.AbstractEventLoop | None = None

    _accepted = False
    # Bytes of the request head being read; -1 while a body is read, 0 between requests.
    _head = 0
    _idle = False
    deadline = 0.0

    def __init__(self, config: uvicorn.Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop or self.event_loop)

    def open_connections(self) -> int:
        """How many connections the server holds open (before this one is accepted)."""
        return len(self.connections)

    def accept(self, transport: asyncio.BaseTransport) -> None:
        """Serve this connection: uvicorn's own `connection_made`, over the speed tricks; its
        first head is awaited from now."""
        self._accepted = True
        self.deadline = self.loop_time() + self.header_timeout
        small_reads(transport)
        super().connection_made(CoalescingTransport(transport, self.loop.call_soon))  # type: ignore[arg-type]  # duck-typed: uvicorn only calls write/close/is_closing/get_extra_info on it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.accept(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._accepted:
            super().connection_lost(exc)
            hung_up(self.cycle)

    def data_received(self, data: bytes) -> None:
        if self._idle:  # the client goes on: the keep-alive deadline is off (uvicorn's timer was)
            self._idle = False
            self.deadline = 0.0
        before = self.cycle
        head = self._head
        super().data_received(data)
        cycle = self.cycle
        if cycle is not before:  # a head was completed in this chunk: a new request
            if cycle.more_body:
                self._head = -1
                self.deadline = self.loop_time() + self.body_timeout
            else:  # all of it is here (the common case): nothing awaited, no clock read
                self._head = 0
                self.deadline = 0.0
        elif head < 0:
            if not cycle.more_body:  # the body is complete
                self._head = 0
                self.deadline = 0.0
        else:  # inside a head (or between requests, if this chunk began one)
            head += len(data)
            self._head = head
            if head > self.max_head:
                self.head_too_big()
            elif not self.deadline:
                self.deadline = self.loop_time() + self.header_timeout

    def on_response_complete(self) -> None:
        """uvicorn's (start the next pipelined request, else wait for the client's next one), with
        the keep-alive wait kept as this connection's deadline rather than a `call_later` timer.
        A connection still reading a head or a body when its answer completes keeps that deadline
        (uvicorn's timer would have been cancelled by the next bytes anyway)."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif not self._head:
            self._idle = True
            self.deadline = self.loop_time() + self.keep_alive

    def head_too_big(self) -> None:
        self.close_with(b"")

    def idle(self) -> bool:
        return self._idle

    def reading_head(self) -> bool:
        return self._head >= 0

    def answering(self) -> bool:
        cycle = self.cycle
        return cycle is not None and cycle.response_started

    def close_with(self, response: bytes) -> None:
        """Write `response` (a whole raw HTTP response, or nothing) and close the connection."""
        self.deadline = 0.0
        self._head = 0
        self._idle = False
        if not self.transport.is_closing():
            if response:
                self.transport.write(response)
            self.transport.close()


def connections_of(server: uvicorn.Server) -> set[HttpConnection]:
    """The open connections of `server` (the set each `HttpConnection` adds itself to)."""
    connections: set[HttpConnection] = server.server_state.connections  # type: ignore[assignment]  # uvicorn types the set by its own protocols
    return connections


__all__ = ["READ_SIZE", "CoalescingTransport", "HttpConnection", "connections_of", "small_reads"]
