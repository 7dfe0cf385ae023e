"""The Streamable HTTP front door: a raw ASGI app served by uvicorn inside the daemon's task group.

    POST   /mcp/NAME   one server          POST /mcp   the aggregate (tools named SERVER__tool)
    GET    /mcp[/NAME] legacy: the session's stream of server notifications (SSE)
    DELETE /mcp[/NAME] legacy: end the session
    GET    /healthz    200 {"status": "ok", "ready": n, "total": m}
    GET    /metrics    Prometheus exposition (bearer token when one is set)

Both protocol eras on every endpoint. The `MCP-Protocol-Version` header picks the era:
2026-07-28 requests are stateless (the envelope rides in `params._meta`, `Mcp-Method` / `Mcp-Name`
must agree with the body, else 400 with -32020; closing the response stream cancels the call);
anything else is the legacy, session-based transport (`initialize` answered by the daemon from the
child's cached handshake, then `Mcp-Session-Id` on every request; an unknown session is 404, a
missing one 400). An unknown version is 400 with -32022 and the versions we speak.

A response is JSON unless the call streams (progress, or a server-to-client request on a legacy
session) or the client accepts only SSE; then it becomes an SSE stream ending with the answer.

Hot path: one POST is one ASGI call on uvicorn's own task: read the body, hand the message to the
session (which routes it to a child without awaiting), wait on one event, write one JSON body. No
extra task per request: a single ticker task notices calls that take longer than `GRACE`, and only
those get a second task that watches for the client going away (which cancels the call in the
child with `notifications/cancelled`).

Security: a foreign `Origin` is 403 (DNS rebinding); a bearer token (`[http] token`, or a
`[clients.NAME] token`) is required whenever one is configured, and the config refuses a
non-loopback `listen` without one; bodies over `max_body` are 413; slow clients meet timeouts
(body upload, each SSE write, keep-alive) so none can hold the door.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
import math
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import anyio
import anyio.abc
import orjson
import uvicorn

from . import protocol, tracing
from .config import is_loopback_host
from .errors import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MESSAGE_TOO_LARGE,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RATE_LIMITED,
    UNKNOWN_SERVER,
    UNSUPPORTED_PROTOCOL_VERSION,
    SupervisorError,
)
from .jsonrpc import Message, error_response
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .outbox import Outbox, batch
from .server import rate_limited
from .session_ids import SessionIds, owner_of
from .sessions import Session, Target
from .states import SERVING

if TYPE_CHECKING:
    from .aggregate import Aggregate
    from .cluster_limits import ClusterLimiter
    from .config import HttpSettings
    from .fleet import Fleet
    from .instance import Instance
    from .ratelimit import ClientLimits
    from .server import Server

log = logging.getLogger("mcp_supervisor.http")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

GRACE = 0.1  # a call unanswered this long gets a watcher for client disconnects
TICK = 0.05
BODY_TIMEOUT = 30.0  # the whole request body must arrive within this
SEND_TIMEOUT = 30.0  # one SSE write to a client that stopped reading
# An idle keep-alive connection is closed after this long. uvicorn's 5 s default races clients
# that reuse a connection a little later (the close and their next POST cross, and a POST is not
# retried): under load that showed as ReadErrors in the 500-client test. Idle connections are
# cheap; limit_concurrency still bounds how many there are.
KEEP_ALIVE = 60
PING_INTERVAL = 15.0  # SSE comment lines keep proxies from closing quiet streams
SESSION_IDLE = 3600.0  # a legacy session unused this long is forgotten
SESSION_SWEEP = 30.0
MAX_SESSIONS = 10000
STREAM_BACKLOG = 1000  # notifications held for a session's GET stream before it is dropped

_JSON = b"application/json"
_SSE = b"text/event-stream"
_ROUTING = (b"mcp-protocol-version", b"mcp-method", b"mcp-name")
_NAME_BEARING = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
# JSON-RPC error code -> HTTP status for 2026-07-28 answers (what the official SDK server does).
_MODERN_STATUS = {PARSE_ERROR: 400, INVALID_REQUEST: 400, INVALID_PARAMS: 400, HEADER_MISMATCH: 400,
                  UNSUPPORTED_PROTOCOL_VERSION: 400, METHOD_NOT_FOUND: 404}
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no")]


class DoorError(SupervisorError):
    """The HTTP door cannot start (address in use, unsafe settings)."""


def sse_event(message: Message) -> bytes:
    return b"event: message\ndata: " + orjson.dumps(message) + b"\n\n"


def _decode_header_value(raw: str) -> str | None:
    """`Mcp-Name` values that are not plain ASCII travel as `=?base64?...?=`."""
    if raw.startswith("=?base64?") and raw.endswith("?="):
        try:
            return base64.b64decode(raw[9:-2], validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
    return raw


class Call:
    """The sink for one HTTP request: its answer, and what the child streams before it.

    The request's task waits on a bare asyncio future (the door only runs on asyncio, under
    uvicorn): an `anyio.Event` per call cost a backend lookup, an `asyncio.Event` and its loop
    check (a getpid syscall on Python 3.11) for every request."""

    __slots__ = ("client_id", "events", "gone", "response", "session", "slow", "span", "started", "wake")

    def __init__(self, client_id: Any, session: HttpSession | None) -> None:
        self.client_id = client_id
        self.session = session
        self.response: Message | None = None
        self.events: list[Message] = []
        self.wake: asyncio.Future[None] | None = None
        self.slow = False
        self.gone = False
        self.started = 0.0
        self.span: Any = None  # the request's trace span, with [tracing] on

    def deliver(self, message: Message) -> None:
        if "method" in message:
            self.events.append(message)
        elif self.response is None:
            self.response = message
            if self.span is not None and tracing.active is not None:
                tracing.active.end(self.span, message)
                self.span = None
        else:
            return
        self.set()

    def keep_span(self, span: Any) -> None:
        """Hold the request's trace span until the answer arrives (`deliver` ends it)."""
        self.span = span

    def set(self) -> None:
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def forward_server_request(self, instance: Instance, message: Message) -> bool:
        """A legacy child asks the client something (sampling, elicitation) during this call."""
        if self.session is None:
            return False
        self.deliver(self.session.server_request_for(instance, message))
        return True

    async def wait(self) -> None:
        if self.response is None and not self.events:
            wake = self.wake = asyncio.get_running_loop().create_future()
            try:
                await wake
            finally:
                self.wake = None


class _Stream:
    """SSE frames waiting for a long-lived stream (a legacy GET stream, a listen stream)."""

    __slots__ = ("frames", "overflowed", "wake")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.wake = anyio.Event()
        self.overflowed = False

    def push(self, frame: bytes) -> None:
        if len(self.frames) >= STREAM_BACKLOG:
            self.overflowed = True
        else:
            self.frames.append(frame)
        self.wake.set()

    def take(self) -> list[bytes]:
        frames, self.frames = self.frames, []
        self.wake = anyio.Event()
        return frames


class HttpSession(Session):
    """A legacy (`Mcp-Session-Id`) client. Answers go to each request's `Call`; what is left
    (server notifications) goes to the session's GET stream, or waits a little for one to open."""

    def __init__(self, sid: str, path: str, target: Target, *, max_message: int,
                 task_group: anyio.abc.TaskGroup | None) -> None:
        # The id's tail: random in a local id, the signature in a signed one (whose head is the
        # same for every session).
        super().__init__(target, Outbox(), max_message=max_message, task_group=task_group,
                         client=f"http:{sid[-8:]}")
        self.sid = sid
        self.path = path
        self.last_used = time.monotonic()
        self.calls: dict[Any, Call] = {}
        self.stream = _Stream()
        self.streaming = False  # a GET stream is open

    TRANSPORT = "tcp"

    def trace_session_id(self) -> str | None:
        return self.sid

    def deliver(self, message: Message) -> None:
        self.stream.push(sse_event(message))

    def cancel_request(self, request_id: Any, reason: str) -> None:
        call = self.calls.get(request_id)
        if call is not None:
            self.server.cancel(call, request_id, reason)

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        for call in list(self.calls.values()):
            self.server.drop_sink(call)
        self.stream.push(b"")  # wake the GET stream so it ends


class _Stateless(Session):
    """Routes 2026-07-28 requests for one target; their answers all go to per-request `Call`s."""

    TRANSPORT = "tcp"

    def deliver(self, message: Message) -> None:
        pass  # nothing is session-wide on the stateless wire; notifications go to listen streams

    def server_notification(self, server: Server, message: Message) -> None:
        pass


class _Listen:
    """A 2026-07-28 `subscriptions/listen` stream served by the daemon from a target's notifications
    (`list_changed` of the kinds the client opted in to), tagged with the listen request's id."""

    __slots__ = ("kinds", "listen_id", "stream")

    KINDS: ClassVar[dict[str, str]] = {
             "toolsListChanged": "notifications/tools/list_changed",
             "promptsListChanged": "notifications/prompts/list_changed",
             "resourcesListChanged": "notifications/resources/list_changed"}

    def __init__(self, listen_id: Any, kinds: set[str]) -> None:
        self.listen_id = listen_id
        self.kinds = kinds
        self.stream = _Stream()

    def server_notification(self, server: Server | None, message: Message) -> None:
        if message.get("method") in self.kinds:
            params = dict(message.get("params") or {})
            params["_meta"] = {**(params.get("_meta") or {}),
                               protocol.META_SUBSCRIPTION_ID: self.listen_id}
            self.stream.push(sse_event({"jsonrpc": "2.0", "method": message["method"], "params": params}))

    def forward_server_request(self, instance: Instance, message: Message) -> bool:
        return False


def _json_headers(body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", _JSON), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    return headers


async def _send_json(send: Send, status: int, payload: Any,
                     extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = orjson.dumps(payload)
    await send({"type": "http.response.start", "status": status, "headers": _json_headers(body, extra)})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, status: int, code: int, message: str, msg_id: Any = None,
                      data: Any = None, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await _send_json(send, status, error_response(msg_id, code, message, data), extra)


async def _send_empty(send: Send, status: int, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-length", b"0")]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _closing(send: Send) -> Send:
    """While draining, every answer says `Connection: close`: a balancer then holds no idle
    keep-alive connection to this node when its listener closes, so none races a reuse."""
    async def closing_send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), (b"connection", b"close")]
        await send(message)
    return closing_send


class _CoalescingTransport:
    """uvicorn's connection transport with a response head held back until the body follows.

    uvicorn writes the status line and headers, then the body, as two `transport.write` calls:
    two `sendto` syscalls, two TCP segments, and often two wake-ups of the client, per request.
    Our JSON answers send both in the same task step, so holding the head until the next write
    makes them one. A head with nothing after it in this loop pass (an SSE stream's start, a 100
    Continue) is written at the end of the pass; order is always kept."""

    __slots__ = ("_call_soon", "_held", "_transport")

    def __init__(self, transport: Any) -> None:  # asyncio's, or uvloop's (not a subclass)
        self._transport = transport
        self._held: bytes | None = None
        self._call_soon = asyncio.get_running_loop().call_soon

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + bytes(data))
        elif data[:9] == b"HTTP/1.1 ":
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


READ_SIZE = 65536


def _small_reads(transport: asyncio.BaseTransport) -> None:
    """Read at most 64 KiB at a time from this transport.

    asyncio's transports `recv(256 KiB)`: a buffer that size is above glibc's mmap threshold, so
    every read was an mmap, an mremap (shrinking it to what came) and an munmap: three syscalls
    per request measured with strace. 64 KiB buffers come from the heap. (uvloop has its own
    buffers and no such attribute.)"""
    with contextlib.suppress(AttributeError):
        transport.max_size = READ_SIZE  # type: ignore[attr-defined]


def _http_protocol() -> Any:
    """uvicorn's httptools protocol, writing through `_CoalescingTransport`; "auto" without it."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools missing: uvicorn's choice (h11)
        return "auto"

    class Protocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            _small_reads(transport)
            super().connection_made(_CoalescingTransport(transport))  # type: ignore[arg-type]

    return Protocol


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the daemon owns signals."""

    def capture_signals(self) -> Any:
        return contextlib.nullcontext()


class HttpDoor:
    """The ASGI app plus the uvicorn server that runs it."""

    def __init__(self, settings: HttpSettings, fleet: Fleet, aggregate: Aggregate, *,
                 client_tokens: Mapping[str, str] | None = None, limits: ClientLimits | None = None,
                 max_message: int = 16 * 1024 * 1024, drain_timeout: float = 1.0,
                 session_ids: SessionIds | None = None) -> None:
        """`client_tokens` maps each `[clients.NAME] token` to NAME: the identity whose
        `rate_limit` applies to requests bearing it."""
        self.settings = settings
        self.fleet = fleet
        self.aggregate = aggregate
        self._token_clients: dict[bytes, str | None] = {
            f"Bearer {token}".encode(): name for token, name in (client_tokens or {}).items()}
        if settings.token:
            self._token_clients[f"Bearer {settings.token}".encode()] = None
        self._tokens = list(self._token_clients)
        self._limits = limits
        self.metrics: Callable[[], bytes] | None = None  # set by the daemon: GET /metrics
        # Set by the daemon: GET /healthz's status and body (503 while starting or draining).
        self.health: Callable[[], tuple[int, dict[str, Any]]] | None = None
        self.draining = False  # set by the daemon's drain: no new sessions
        self.drain_timeout = drain_timeout
        self._listeners: set[_Listen] = set()
        self.session_ids = session_ids  # with [cluster] secret: ids any node can resume
        self.cluster_limits: ClusterLimiter | None = None  # set by the daemon with [cluster]
        if not settings.is_loopback() and not self._tokens:
            raise DoorError(f"http.listen = {settings.listen!r} is not a loopback address: "
                            "set http.token (clients then send 'Authorization: Bearer <token>')")
        self._origins = {o.rstrip("/").lower() for o in settings.allowed_origins}
        self.max_body = settings.max_body
        self.max_message = max_message
        self.sessions: dict[str, HttpSession] = {}
        self._stateless: dict[int, _Stateless] = {}
        self._waiting: set[Call] = set()
        self._ticker_idle = True
        self._tick = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._server: _Server | None = None
        self._flushing: contextlib.AbstractContextManager[None] | None = None
        self.sock: socket.socket | None = None
        self.port = 0

    # ---- running ----------------------------------------------------------------------------

    def bind(self) -> socket.socket:
        """Bind the listening socket now, so a taken port is a clear error before anything starts."""
        host, port = self.settings.host_port()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
        # without it every keep-alive answer (headers, then body) stalls 40 ms on a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise DoorError(f"cannot listen on {self.settings.listen}: {exc.strerror or exc}") from exc
        sock.listen(2048)
        sock.setblocking(False)
        self.sock = sock
        self.port = sock.getsockname()[1]
        return sock

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        sock = self.sock or self.bind()
        _route_uvicorn_logs()
        config = uvicorn.Config(
            self, lifespan="off", log_config=None, access_log=False, ws="none", http=_http_protocol(),
            proxy_headers=False,  # X-Forwarded-* are not ours to trust, and the middleware costs
            timeout_keep_alive=KEEP_ALIVE, limit_concurrency=8192,
            # Requests in progress when the listener closes finish within the daemon's drain.
            timeout_graceful_shutdown=max(1, math.ceil(self.drain_timeout)),
            server_header=False, date_header=False)
        self._server = _Server(config)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._ticker)
            log.info("Streamable HTTP on http://%s/mcp (aggregate) and /mcp/NAME", self.settings.listen)
            task_status.started()
            try:
                await self._server.serve(sockets=[sock])
            finally:
                for session in list(self.sessions.values()):
                    session.close()
                self.sessions.clear()
                tg.cancel_scope.cancel()

    def _batch(self) -> contextlib.AbstractContextManager[None]:
        """Routing a request is an outbox batch: with nothing else queued in this loop pass, the
        child gets the request before the task suspends, not one pass later."""
        flushing = self._flushing
        if flushing is None:
            flushing = self._flushing = batch()
        return flushing

    def request_stop(self) -> None:
        """Close the listener; uvicorn lets requests in progress finish (up to the drain timeout).

        Long-lived streams are ended first: they would hold the shutdown for the whole timeout,
        and their clients reconnect (through a balancer, to another node) to go on listening."""
        for session in self.sessions.values():
            session.stream.push(b"")
        for listener in self._listeners:
            listener.stream.push(b"")
        if self._server is not None:
            self._server.should_exit = True

    async def _ticker(self) -> None:
        """Marks calls unanswered for `GRACE` as slow (they then watch for disconnects), and
        forgets idle legacy sessions. Sleeps while nothing waits."""
        last_sweep = time.monotonic()
        while True:
            if not self._waiting:
                self._ticker_idle = True
                self._tick = anyio.Event()
                with anyio.move_on_after(SESSION_SWEEP):
                    await self._tick.wait()
            else:
                await anyio.sleep(TICK)
            now = time.monotonic()
            if self._waiting:
                cutoff = now - GRACE
                for call in [c for c in self._waiting if c.started <= cutoff]:
                    self._waiting.discard(call)
                    call.slow = True
                    call.set()
            if now - last_sweep >= SESSION_SWEEP:
                last_sweep = now
                for sid, session in list(self.sessions.items()):
                    if now - session.last_used > SESSION_IDLE and not session.streaming:
                        log.info("forgetting idle HTTP session %s…", sid[-8:])
                        del self.sessions[sid]
                        session.close()

    # ---- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if self.draining:
            send = _closing(send)
        path: str = scope["path"]
        if path == "/healthz":
            await self._healthz(send)
            return
        if path == "/metrics":
            await self._metrics(scope, send)
            return
        if path == "/mcp" or path == "/mcp/":
            target: Target = self.aggregate
        elif path.startswith("/mcp/"):
            server = self.fleet.servers.get(path[5:].rstrip("/"))
            if server is None:
                await _send_error(send, 404, UNKNOWN_SERVER,
                                  f"no server named '{path[5:]}' (known: {', '.join(self.fleet.servers)})")
                return
            target = server
        else:
            await _send_empty(send, 404)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin")
        if origin is not None and not self._origin_ok(origin):
            shown = origin.decode(errors="replace")
            await _send_error(send, 403, INVALID_REQUEST,
                              f"Forbidden: origin {shown} is not allowed (http.allowed_origins)")
            return
        if self._tokens and not self._authorized(headers.get(b"authorization")):
            await _send_error(send, 401, INVALID_REQUEST,
                              "Unauthorized: send 'Authorization: Bearer <token>'",
                              extra=[(b"www-authenticate", b'Bearer realm="mcp-supervisor"')])
            return
        if self._limits is not None and self._limits.active:
            client = self._token_clients.get(headers.get(b"authorization", b""))
            wait = await self._client_wait(client) if client else 0.0
            if wait:
                refusal = rate_limited(None, f"client '{client}' is over its rate limit", wait)
                seconds = str(max(1, math.ceil(wait))).encode()
                await _send_error(send, 429, RATE_LIMITED, refusal["error"]["message"],
                                  data=refusal["error"]["data"], extra=[(b"retry-after", seconds)])
                return
        method = scope["method"]
        if method == "POST":
            await self._post(path, target, headers, receive, send)
        elif method == "GET":
            await self._get(path, headers, receive, send)
        elif method == "DELETE":
            await self._delete(path, headers, send)
        else:
            await _send_empty(send, 405, [(b"allow", b"GET, POST, DELETE")])

    async def _client_wait(self, client: str) -> float:
        """0.0 when the client may go on, else seconds to wait: from the cluster's shared bucket
        when there is one, else this node's own."""
        assert self._limits is not None
        now = time.monotonic()
        shared = self.cluster_limits
        if shared is None:
            return self._limits.check(client, now)
        found = self._limits.bucket(client, now)
        if found is None:
            return 0.0
        limit, bucket = found
        return await shared.take(f"client:{client}:{limit.text}", limit, bucket)

    def _origin_ok(self, origin: bytes) -> bool:
        text = origin.decode("latin-1").rstrip("/").lower()
        if text in self._origins:
            return True
        try:
            host = urlsplit(text).hostname
        except ValueError:
            return False
        return host is not None and is_loopback_host(host)

    def _authorized(self, given: bytes | None) -> bool:
        if given is None:
            return False
        ok = False
        for token in self._tokens:
            ok |= hmac.compare_digest(given, token)
        return ok

    async def _metrics(self, scope: Scope, send: Send) -> None:
        """Prometheus exposition; behind the bearer token like everything but /healthz."""
        if scope["method"] != "GET":
            await _send_empty(send, 405, [(b"allow", b"GET")])
            return
        headers = dict(scope["headers"])
        if self._tokens and not self._authorized(headers.get(b"authorization")):
            await _send_empty(send, 401, [(b"www-authenticate", b'Bearer realm="mcp-supervisor"')])
            return
        if self.metrics is None:
            await _send_empty(send, 404)
            return
        body = self.metrics()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", METRICS_CONTENT_TYPE.encode()), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _healthz(self, send: Send) -> None:
        if self.health is not None:
            status, payload = self.health()
            await _send_json(send, status, payload)
            return
        servers = self.fleet.servers.values()
        ready = sum(1 for s in servers if s.state in SERVING)
        await _send_json(send, 200, {"status": "ok", "ready": ready, "total": len(self.fleet.servers)})

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive, send: Send) -> bytes | None:
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await self._too_large(send, int(length))
            return None
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body"):
            return body
        chunks = [body]
        size = len(body)
        with anyio.move_on_after(BODY_TIMEOUT):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    await self._too_large(send, size)
                    return None
                chunks.append(chunk)
                if not message.get("more_body"):
                    return b"".join(chunks)
        await _send_error(send, 408, INVALID_REQUEST, f"request body not received within {BODY_TIMEOUT:g}s")
        return None

    async def _too_large(self, send: Send, size: int) -> None:
        await _send_error(send, 413, MESSAGE_TOO_LARGE,
                          f"request body of {size} bytes exceeds the {self.max_body}-byte limit "
                          "(http.max_body)",
                          data={"size": size, "limit": self.max_body},
                          extra=[(b"connection", b"close")])

    # ---- POST ---------------------------------------------------------------------------------

    async def _post(self, path: str, target: Target, headers: dict[bytes, bytes], receive: Receive,
                    send: Send) -> None:
        ctype = headers.get(b"content-type", b"")
        if not ctype.startswith(_JSON) and ctype.split(b";", 1)[0].strip().lower() != _JSON:
            await _send_error(send, 415, INVALID_REQUEST,
                              "Unsupported Media Type: Content-Type must be application/json")
            return
        accept = headers.get(b"accept", b"*/*")
        json_ok = _JSON in accept or b"*/*" in accept or b"application/*" in accept
        sse_ok = _SSE in accept or b"*/*" in accept or b"text/*" in accept
        if not json_ok and not sse_ok:
            await _send_error(send, 406, INVALID_REQUEST,
                              "Not Acceptable: accept application/json and text/event-stream")
            return
        body = await self._read_body(headers, receive, send)
        if body is None:
            return
        try:
            msg = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            await _send_error(send, 400, PARSE_ERROR, f"Parse error: {exc}")
            return
        if msg.__class__ is not dict:
            await _send_error(send, 400, INVALID_REQUEST, "Invalid Request: expected one JSON-RPC object "
                              "(batches are not part of MCP since 2025-06-18)")
            return
        version = headers.get(b"mcp-protocol-version")
        if version is not None:
            text = version.decode("latin-1")
            if text in protocol.MODERN_VERSIONS:
                await self._modern(target, headers, text, msg, json_ok, sse_ok, receive, send)
                return
            if text not in protocol.LEGACY_VERSIONS:
                await _send_error(send, 400, UNSUPPORTED_PROTOCOL_VERSION,
                                  f"Bad Request: unsupported MCP-Protocol-Version {text!r}",
                                  msg.get("id"), {"supported": list(protocol.KNOWN_VERSIONS),
                                                  "requested": text})
                return
        await self._legacy(path, target, headers, msg, json_ok, sse_ok, receive, send)

    async def _legacy(self, path: str, target: Target, headers: dict[bytes, bytes], msg: Message,
                      json_ok: bool, sse_ok: bool, receive: Receive, send: Send) -> None:
        method = msg.get("method")
        if method == "initialize" and "id" in msg:
            if self.draining:  # a balancer retries this on another node (see contrib/haproxy)
                await _send_error(send, 503, INVALID_REQUEST, "Service Unavailable: this daemon is "
                                  "draining; open the session on another node", msg["id"],
                                  extra=[(b"retry-after", b"1")])
                return
            if len(self.sessions) >= MAX_SESSIONS:
                await _send_error(send, 503, INVALID_REQUEST, "Too many open sessions", msg["id"])
                return
            sid = self._new_session_id(path, headers, msg)
            opened = HttpSession(sid, path, target, max_message=self.max_message, task_group=self._tg)
            call = Call(msg["id"], opened)
            with self._batch():
                opened.on_message(msg, call)
            await call.wait()
            ok = call.response is not None and "result" in call.response
            if ok:
                self.sessions[sid] = opened
            else:
                opened.close()
            await self._send_answer(call, [(b"mcp-session-id", sid.encode())] if ok else None, send)
            return
        session = await self._session(path, headers, send, msg.get("id"))
        if session is None:
            return
        if "id" not in msg or method is None:
            with self._batch():
                session.on_message(msg)  # a notification, or the client's answer to a server request
            await _send_empty(send, 202)
            return
        call = Call(msg["id"], session)
        session.calls[msg["id"]] = call
        try:
            with self._batch():
                session.on_message(msg, call)
            await self._respond(call, target, json_ok, sse_ok, 200, None, receive, send)
        finally:
            if session.calls.get(msg["id"]) is call:
                del session.calls[msg["id"]]

    async def _session(self, path: str, headers: dict[bytes, bytes], send: Send,
                       msg_id: Any = None) -> HttpSession | None:
        raw = headers.get(b"mcp-session-id")
        if raw is None:
            await _send_error(send, 400, INVALID_REQUEST, "Bad Request: missing Mcp-Session-Id header "
                              "(send initialize first, or MCP-Protocol-Version: 2026-07-28 for stateless "
                              "requests)", msg_id)
            return None
        sid = raw.decode("latin-1")
        found = self.sessions.get(sid)
        if found is None and self.session_ids is not None:
            found = self._resume(sid, path, headers)
        if found is None or found.path.rstrip("/") != path.rstrip("/"):
            await _send_error(send, 404, INVALID_REQUEST, "Not Found: unknown or expired session", msg_id)
            return None
        found.last_used = time.monotonic()
        return found

    def _new_session_id(self, path: str, headers: dict[bytes, bytes], msg: Message) -> str:
        if self.session_ids is None:
            return secrets.token_urlsafe(24)
        params = msg.get("params")
        params = params if params.__class__ is dict else {}
        capabilities, info = params.get("capabilities"), params.get("clientInfo")
        return self.session_ids.issue(
            path=path.rstrip("/"), owner=owner_of(headers.get(b"authorization")),
            version=params.get("protocolVersion"),
            capabilities=capabilities if capabilities.__class__ is dict else {},
            client_info=info if info.__class__ is dict else {}, now=time.time())

    def _resume(self, sid: str, path: str, headers: dict[bytes, bytes]) -> HttpSession | None:
        """A session another node (or this one, before a restart) opened: take it up here.

        What the client negotiated comes from the signed id; what lived in the other node's
        memory is gone (requests in flight there, a GET stream's backlog), and so is state inside
        that node's child, which is why stateful servers want sticky routing."""
        assert self.session_ids is not None
        claims = self.session_ids.verify(sid, time.time())
        if claims is None or claims["p"] != path.rstrip("/"):
            return None
        if not hmac.compare_digest(claims["o"], owner_of(headers.get(b"authorization"))):
            return None  # another credential's session: as unknown to it as a forged one
        target = self._target(path)
        if target is None or len(self.sessions) >= MAX_SESSIONS:
            return None
        session = HttpSession(sid, path, target, max_message=self.max_message, task_group=self._tg)
        session.client_capabilities = claims["c"]
        session.client_info = claims["i"]
        session.initialized = True
        self.sessions[sid] = session
        log.info("resumed HTTP session %s… opened on node %s", sid[-8:], claims.get("n"))
        return session

    def _target(self, path: str) -> Target | None:
        if path.rstrip("/") == "/mcp":
            return self.aggregate
        return self.fleet.servers.get(path[5:].rstrip("/")) if path.startswith("/mcp/") else None

    async def _modern(self, target: Target, headers: dict[bytes, bytes], version: str, msg: Message,
                      json_ok: bool, sse_ok: bool, receive: Receive, send: Send) -> None:
        method = msg.get("method")
        if "id" not in msg or method is None:
            # No client-to-server notifications on this wire: cancelling is closing the stream.
            await _send_empty(send, 202)
            return
        mid = msg["id"]
        params = msg.get("params")
        meta = params.get("_meta") if params.__class__ is dict else None
        if meta.__class__ is not dict or protocol.META_PROTOCOL_VERSION not in meta \
                or protocol.META_CLIENT_CAPABILITIES not in meta:
            await _send_error(send, 400, INVALID_PARAMS, "params._meta must carry the "
                              f"{protocol.META_PROTOCOL_VERSION!r} and "
                              f"{protocol.META_CLIENT_CAPABILITIES!r} envelope keys", mid)
            return
        assert params is not None and meta is not None
        mismatch = None
        if meta[protocol.META_PROTOCOL_VERSION] != version:
            mismatch = "MCP-Protocol-Version header does not match params._meta's protocol version"
        elif headers.get(b"mcp-method", b"").decode("latin-1") != method:
            mismatch = "Mcp-Method header does not match the request body's method"
        elif method in _NAME_BEARING:
            key = _NAME_BEARING[method]
            raw = headers.get(b"mcp-name")
            value = _decode_header_value(raw.decode("latin-1")) if raw is not None else None
            if params.get(key) is not None and value != params.get(key):
                mismatch = f"Mcp-Name header does not match the request body's {key!r} parameter"
        if mismatch is not None:
            await _send_error(send, 400, HEADER_MISMATCH, mismatch, mid)
            return
        if method == "subscriptions/listen":
            if not sse_ok:
                await _send_error(send, 406, INVALID_REQUEST, "subscriptions/listen needs Accept: "
                                  "text/event-stream", mid)
                return
            await self._listen(target, msg, params, receive, send)
            return
        call = Call(mid, None)
        with self._batch():
            self._stateless_for(target).on_message(msg, call)
        await self._respond(call, target, json_ok, sse_ok, 200, _MODERN_STATUS, receive, send)

    def _stateless_for(self, target: Target) -> _Stateless:
        session = self._stateless.get(id(target))
        if session is None or session.closed or session.server is not target:
            session = _Stateless(target, Outbox(), max_message=self.max_message, task_group=self._tg,
                                 client="http-stateless")
            session.modern = True
            self._stateless[id(target)] = session
        return session

    # ---- answering a call ---------------------------------------------------------------------

    async def _respond(self, call: Call, target: Target, json_ok: bool, sse_ok: bool, status: int,
                       statuses: dict[int, int] | None, receive: Receive, send: Send) -> None:
        if call.response is None and not call.events:
            call.started = time.monotonic()
            self._waiting.add(call)
            if self._ticker_idle:
                self._ticker_idle = False
                self._tick.set()
            await call.wait()
            self._waiting.discard(call)
        if call.response is not None and not call.events and json_ok:
            response = call.response
            if statuses is not None and "error" in response:
                status = statuses.get(response["error"].get("code"), status)
            body = orjson.dumps(response)
            if len(body) < 65536:
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", _JSON),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        # Slow, streaming or big: watch for the client leaving while we wait and write.
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_disconnect, receive, call, tg.cancel_scope)
            await self._respond_slow(call, json_ok, sse_ok, status, statuses, send)
            tg.cancel_scope.cancel()
        if call.response is None:
            call.gone = True
            target.cancel(call, call.client_id, "the HTTP client closed the response stream")

    async def _respond_slow(self, call: Call, json_ok: bool, sse_ok: bool, status: int,
                            statuses: dict[int, int] | None, send: Send) -> None:
        while call.response is None and not (call.events and sse_ok):
            await call.wait()
        if call.response is not None and (not call.events or not sse_ok) and json_ok:
            response = call.response
            if statuses is not None and "error" in response:
                status = statuses.get(response["error"].get("code"), status)
            with anyio.move_on_after(SEND_TIMEOUT):
                await _send_json(send, status, response)
            return
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        while True:
            frames = [sse_event(m) for m in call.events]
            call.events.clear()
            final = call.response
            if final is not None:
                frames.append(sse_event(final))
            if frames:
                with anyio.move_on_after(SEND_TIMEOUT) as timed:
                    await send({"type": "http.response.body", "body": b"".join(frames),
                                "more_body": final is None})
                if timed.cancelled_caught:
                    return
            if final is not None:
                return
            with anyio.move_on_after(PING_INTERVAL) as quiet:
                await call.wait()
            if quiet.cancelled_caught:
                await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})

    async def _watch_disconnect(self, receive: Receive, call: Call, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
        scope.cancel()

    async def _send_answer(self, call: Call, extra: list[tuple[bytes, bytes]] | None, send: Send) -> None:
        assert call.response is not None
        await _send_json(send, 200, call.response, extra)

    # ---- long-lived streams -----------------------------------------------------------------

    async def _stream(self, stream: _Stream, receive: Receive, send: Send,
                      first: list[bytes] | None = None,
                      extra: list[tuple[bytes, bytes]] | None = None) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS + (extra or [])})

        async def pump(scope: anyio.CancelScope) -> None:
            frames = first or []
            while True:
                frames += stream.take()
                if stream.overflowed or b"" in frames:
                    break
                if frames:
                    with anyio.move_on_after(SEND_TIMEOUT) as timed:
                        await send({"type": "http.response.body", "body": b"".join(frames),
                                    "more_body": True})
                    if timed.cancelled_caught:
                        break
                frames = []
                with anyio.move_on_after(PING_INTERVAL) as quiet:
                    await stream.wake.wait()
                if quiet.cancelled_caught:
                    frames = [b": ping\n\n"]
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump, tg.cancel_scope)
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()
        with anyio.move_on_after(1):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _get(self, path: str, headers: dict[bytes, bytes], receive: Receive, send: Send) -> None:
        version = headers.get(b"mcp-protocol-version")
        if version is not None and version.decode("latin-1") in protocol.MODERN_VERSIONS:
            await _send_empty(send, 405, [(b"allow", b"POST")])
            return
        if _SSE not in headers.get(b"accept", b"") and b"*/*" not in headers.get(b"accept", b""):
            await _send_error(send, 406, INVALID_REQUEST,
                              "Not Acceptable: the GET stream is text/event-stream")
            return
        session = await self._session(path, headers, send)
        if session is None:
            return
        if session.streaming:
            await _send_error(send, 409, INVALID_REQUEST, "Conflict: this session already has a GET stream")
            return
        session.streaming = True
        try:
            await self._stream(session.stream, receive, send)
        finally:
            session.streaming = False
            session.last_used = time.monotonic()

    async def _delete(self, path: str, headers: dict[bytes, bytes], send: Send) -> None:
        session = await self._session(path, headers, send)
        if session is None:
            return
        self.sessions.pop(session.sid, None)
        session.close()
        await _send_empty(send, 200)

    async def _listen(self, target: Target, msg: Message, params: dict[str, Any], receive: Receive,
                      send: Send) -> None:
        wanted = params.get("notifications")
        wanted = wanted if isinstance(wanted, dict) else {}
        handshake = target.handshake
        capabilities = (handshake.capabilities if handshake is not None else None) or {}
        honoured = {}
        kinds = set()
        for key, method in _Listen.KINDS.items():
            capability = key.removesuffix("ListChanged")
            if wanted.get(key) and capability in capabilities:
                honoured[key] = True
                kinds.add(method)
        listener = _Listen(msg["id"], kinds)
        ack = sse_event({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
                         "params": {"notifications": honoured,
                                    "_meta": {protocol.META_SUBSCRIPTION_ID: msg["id"]}}})
        target.sessions.add(listener)
        self._listeners.add(listener)
        try:
            await self._stream(listener.stream, receive, send, first=[ack])
        finally:
            target.sessions.discard(listener)
            self._listeners.discard(listener)


def _route_uvicorn_logs() -> None:
    """uvicorn's own loggers write through ours (same handler, redaction and format)."""
    ours = logging.getLogger("mcp_supervisor")
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = list(ours.handlers)
        logger.setLevel(max(ours.level, logging.WARNING))
        logger.propagate = False
