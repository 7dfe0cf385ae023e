"""The common HTTP request answered by its connection, with no ASGI cycle and no task.

uvicorn gives every request a `RequestResponseCycle`, an `asyncio.Event`, a scope dict, a task,
and two ASGI messages whose headers it checks with regular expressions: at 100 connections that
was most of the daemon's CPU per call, for a request that is one POST with its whole body, routed
to a child without awaiting and answered with one JSON body. `FastHttpConnection` lets the app see
such a request whole, in the parser's last callback (`FastApp.fast_request`); the app either
declines (then the request goes to the ASGI app exactly as uvicorn would have sent it, body
included) or takes it, and later answers with `FastRequest.respond` (one write of head and body)
or carries on as ASGI with `FastRequest.escalate` (a real cycle, for a stream or a big body).

A `FastRequest` stands where uvicorn keeps its cycle (`protocol.cycle`) while it is in progress,
with the attributes uvicorn's own code reads there (`response_complete`, `keep_alive`,
`disconnected`, `more_body`, `body`, `message_event`): pipelined requests queue behind it,
`shutdown` lets it finish and then closes, and `connection_lost` marks it disconnected, as for a
cycle of uvicorn's.

What this leans on in uvicorn's `HttpToolsProtocol` (pinned below 0.55; the fast_requests tests
in tests/test_fastio.py fail when one of these changes): the parser callbacks' names and
`self.url` / `self.headers` / `self.cycle` / `self.pipeline` / `self.flow`, that
`on_message_begin` builds `self.scope` and `on_headers_complete` makes the cycle and starts (or
queues) its task, the `RequestResponseCycle` constructor, and `on_response_complete` as what
starts the next pipelined request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from . import hung_up
from .http_connection import HttpConnection

__all__ = ["MAX_FAST_BODY", "FastApp", "FastHttpConnection", "FastRequest"]

log = logging.getLogger("mcp_supervisor.http")

# A request body longer than this goes the ASGI way (uvicorn pauses reading past 64 KiB of body
# and resumes when its app receives: a fast request has no receive to do that).
MAX_FAST_BODY = 65536

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class FastApp(Protocol):
    def fast_request(self, request: FastRequest) -> bool:
        """Take `request` (head and whole body read) and answer it later, or return False,
        having changed nothing, to have the ASGI app serve it."""
        ...


class _NoEvent:
    """What uvicorn's code sets on a cycle's `message_event`; nothing waits on a fast request's."""

    __slots__ = ()

    def set(self) -> None:
        pass


_NO_EVENT = _NoEvent()


class FastRequest:
    """One POST the connection serves itself (see the module docstring)."""

    __slots__ = ("_protocol", "body", "disconnected", "escalated", "headers", "keep_alive",
                 "more_body", "on_hang_up", "response_complete", "response_started", "url")

    message_event = _NO_EVENT

    # No link to the request before it on the connection: with one, a keep-alive connection held
    # every request it ever served until it closed, and then all of them at once became cyclic
    # garbage for a generation-2 collection (1.0-1.4 s at 500 connections, BENCHMARKS.md).
    def __init__(self, protocol: FastHttpConnection, url: bytes, headers: list[tuple[bytes, bytes]],
                 keep_alive: bool) -> None:
        self._protocol = protocol
        self.url = url
        self.headers = headers
        self.keep_alive = keep_alive
        self.body = b""  # most bodies come in one piece: kept as it is, not copied
        self.more_body = True
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.escalated: RequestResponseCycle | None = None
        # Called once, from the loop, when the client closes the connection before the answer.
        self.on_hang_up: Callable[[], None] | None = None

    def respond(self, status: int, headers: bytes, body: bytes) -> None:
        """Answer with `body` in one write. `headers`: extra header lines, each ending in CRLF
        (content-length and, when the connection is to close, connection are added here)."""
        if self.response_complete:
            return
        self.response_started = self.response_complete = True
        self.on_hang_up = None
        protocol = self._protocol
        if protocol.fast is self:
            protocol.fast = None
        if self.disconnected or protocol.transport.is_closing():
            return
        close = b"" if self.keep_alive else b"connection: close\r\n"
        protocol.raw_transport.write(b"%b%bcontent-length: %d\r\n%b\r\n%b" % (
            STATUS_LINE[status], headers, len(body), close, body))
        if not self.keep_alive:
            protocol.transport.close()
        protocol.on_response_complete()

    def escalate(self) -> tuple[Receive, Send]:
        """The rest of this request as ASGI: a real uvicorn cycle whose `receive` says
        `http.disconnect` when the client goes and whose `send` writes the response (any kind,
        with uvicorn's flow control). The caller runs its own task to use them."""
        assert self.escalated is None and not self.response_started
        protocol = self._protocol
        path = self.url.partition(b"?")[0]
        scope: Any = {
            "type": "http", "asgi": {"version": protocol.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1", "server": protocol.server, "client": protocol.client,
            "scheme": protocol.scheme, "root_path": protocol.root_path, "headers": self.headers,
            "state": protocol.app_state.copy(), "method": "POST", "path": path.decode("latin-1"),
            "raw_path": path, "query_string": b""}

        def finished() -> None:
            if protocol.fast is self:
                protocol.fast = None
            protocol.on_response_complete()

        cycle = RequestResponseCycle(
            scope=scope, transport=protocol.transport, flow=protocol.flow, logger=protocol.logger,
            access_logger=protocol.access_logger, access_log=protocol.access_log,
            default_headers=protocol.server_state.default_headers, message_event=asyncio.Event(),
            expect_100_continue=False, keep_alive=self.keep_alive, on_response=finished)
        cycle.more_body = False
        self.escalated = cycle
        self.response_started = True
        self.on_hang_up = None
        current: Any = protocol.cycle  # uvicorn's slot for the request in progress
        if current is self:
            protocol.cycle = cycle
        return cycle.receive, cycle.send  # type: ignore[return-value]  # uvicorn's ASGI TypedDicts are these mappings

    def ended(self) -> None:
        """The app is done with the escalated cycle: a response it left unfinished closes the
        connection (what uvicorn does when an ASGI app returns early)."""
        cycle = self.escalated
        if cycle is not None and not cycle.response_complete and not cycle.disconnected:
            self._protocol.transport.close()

    def hang_up(self) -> None:
        """The connection is gone (from `connection_lost`)."""
        self.disconnected = True
        cycle = self.escalated
        if cycle is not None:
            if not cycle.response_complete:
                cycle.disconnected = True
            cycle.message_event.set()
            hung_up(cycle)
            return
        callback, self.on_hang_up = self.on_hang_up, None
        if callback is not None and not self.response_complete:
            callback()


class FastHttpConnection(HttpConnection):
    """The door's uvicorn connection (`HttpConnection`) offering each whole POST to `fast_app`
    first (a subclass sets it; None: every request goes the ASGI way)."""

    fast_app: FastApp | None = None
    raw_transport: Any = None  # the loop's own transport, for the one write of a fast answer
    fast: FastRequest | None = None  # the fast request in progress on this connection

    def accept(self, transport: asyncio.BaseTransport) -> None:
        self.raw_transport = transport
        super().accept(transport)

    # uvicorn builds the scope in `on_message_begin`; here it is built only for a request that
    # goes the ASGI way (`_to_asgi`).
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.expect_100_continue = False

    def on_headers_complete(self) -> None:
        parser = self.parser
        cycle = self.cycle
        if (self.url.startswith(b"/mcp") and self.fast is None and self.fast_app is not None
                and (cycle is None or cycle.response_complete) and not self.expect_100_continue
                and not self.flow.write_paused and parser.get_method() == b"POST"
                and parser.get_http_version() == "1.1" and not parser.should_upgrade()):
            self.fast = FastRequest(self, self.url, self.headers, parser.should_keep_alive())
            # It stands where uvicorn keeps its cycle (typed as uvicorn's own class).
            self.cycle = self.fast  # type: ignore[assignment]
            return
        self._to_asgi(None)

    def _to_asgi(self, fast: FastRequest | None) -> None:
        """Go on with this request as uvicorn would have from its head (with what came of its
        body so far)."""
        url, headers, expect = self.url, self.headers, self.expect_100_continue
        if fast is not None:
            # The fast request stood where uvicorn found no cycle or a finished one, which it
            # treats alike (`cycle is None or cycle.response_complete`): give it back none.
            self.cycle = None  # type: ignore[assignment]  # uvicorn types the slot as its cycle but starts it at None
            self.fast = None
            url, headers = fast.url, fast.headers
        HttpToolsProtocol.on_message_begin(self)  # the scope; it also starts url and headers anew
        self.url, self.headers, self.expect_100_continue = url, headers, expect
        self.scope["headers"] = headers
        HttpToolsProtocol.on_headers_complete(self)
        if fast is not None:
            self.cycle.body += fast.body
            self.cycle.more_body = fast.more_body
            self.cycle.message_event.set()

    def on_body(self, body: bytes) -> None:
        fast = self.fast
        if fast is None or fast is not self.cycle:  # type: ignore[comparison-overlap]  # cycle is typed as uvicorn's own class, but a FastRequest stands there (on_headers_complete)
            super().on_body(body)
            return
        fast.body = fast.body + body if fast.body else body
        if len(fast.body) > MAX_FAST_BODY:
            self._to_asgi(fast)

    def on_message_complete(self) -> None:
        fast = self.fast
        if fast is None or fast is not self.cycle or not fast.more_body:  # type: ignore[comparison-overlap]  # cycle is typed as uvicorn's own class, but a FastRequest stands there (on_headers_complete)
            super().on_message_complete()
            return
        fast.more_body = False
        app = self.fast_app
        assert app is not None
        try:
            taken = app.fast_request(fast)
        except Exception:  # the app answers its own failures; this is the connection's last guard
            log.exception("http: the fast path failed on a request")
            if not fast.response_started:
                with contextlib.suppress(Exception):
                    fast.keep_alive = False
                    fast.respond(500, b"", b"")
            return
        if not taken:
            self._to_asgi(fast)

    def connection_lost(self, exc: Exception | None) -> None:
        fast = self.fast
        super().connection_lost(exc)
        if fast is not None:
            self.fast = None
            fast.hang_up()
