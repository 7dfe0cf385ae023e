"""The Streamable HTTP front door: a raw ASGI app served by uvicorn inside the daemon's task group.

    POST   /mcp/NAME   one server          POST /mcp   the aggregate (tools named SERVER__tool)
    GET    /mcp[/NAME] legacy: the session's stream of server notifications (SSE)
    DELETE /mcp[/NAME] legacy: end the session
    GET    /healthz    200 {"status": "ok", "ready": n, "total": m}
    GET    /metrics    Prometheus exposition (bearer token when one is set)
    GET    /           a short JSON index of these doors (no server names: those need the token)

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
extra task and no timer per request: the connection itself tells a waiting call that its client
went away (`fastio.watch_hang_up`), which cancels the call in the child with
`notifications/cancelled`. Only a call that streams (SSE) gets a second task watching for that.

Security: a foreign `Host` or `Origin` is 403 (DNS rebinding) and a duplicated `Authorization`,
`Origin`, `Host` or `Mcp-Session-Id` is 400, on every path (`supervisor.doors.http.policy`); a legacy
session answers only to the token that opened it (404 to any other); a bearer token (`[http] token`, or a
`[clients.NAME] token`) is required whenever one is configured, and the config refuses a
non-loopback `listen` without one; bodies over `max_body` are 413; slow clients meet timeouts
(body upload, each SSE write, keep-alive) so none can hold the door.
Containment: every HTTP request is its own failure domain, and no client can hold the door.
- Deadlines, enforced by the connection itself and one sweeper task (`connection.py`): the head
  (request line and headers) must arrive within `header_timeout` of its first byte (of the
  connection's opening, for the first request), the whole body, first byte included, within
  `body_timeout` after it; else 408 and the connection closes. Heads over `max_header_bytes` are
  431. Each SSE write has `SEND_TIMEOUT`; idle keep-alive connections close after `KEEP_ALIVE`.
- Connections are capped (`max_connections`, and below the open-file limit, whose soft value the
  daemon raises to the hard one at start): beyond the cap a new connection gets a 503 and is
  closed at once, without being parsed; the ones already open keep working.
- Legacy sessions are capped overall and per token and evicted idle-first (`SessionTable`).
  Server notifications go only to sessions with a GET stream open; a session without one is told
  "list again" (`list_changed`) when it opens one, instead of keeping a backlog.
- A request that fails in the door after it was routed (an exception, a cancelled task) gives its
  slot in the child back at once (`drop_sink`: a cancellation, never a breaker failure).

The door's parts (this module is `HttpDoor` itself: routing, auth, both eras' handlers):

    connection.py    the connections: the cap, head/body deadlines and their sweeper (over
                     `wire/fastio/http_connection.py`, which holds what leans on uvicorn's internals)
    calls.py         the sinks: `Call` (one request), `HttpSession` (legacy), `_Stateless` and
                     `_Listen` (2026-07-28)
    sse.py           SSE framing and the bounded frame queue of long-lived streams
    replies.py       the ASGI callable types and JSON / empty replies
    sse_replay.py    resumable legacy SSE streams (`Last-Event-ID`)
    session_ids.py   signed legacy session ids (any node of a cluster resumes them)
    session_table.py the bounded legacy session table
    policy.py        who may talk to the door (Host, Origin, duplicated headers, tokens)
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import logging
import math
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import orjson
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE

from supervisor.config import is_loopback_host
from supervisor.core import tasks
from supervisor.core.input_required import ASKING_METHODS, Ask, InputRequired, book
from supervisor.core.sessions import Target
from supervisor.core.views import NotInView, check_server, view_target
from supervisor.domains import domain
from supervisor.doors.fdlimit import connection_budget
from supervisor.errors import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MESSAGE_TOO_LARGE,
    METHOD_NOT_FOUND,
    MISSING_CLIENT_CAPABILITY,
    PARSE_ERROR,
    RATE_LIMITED,
    UNKNOWN_SERVER,
    UNSUPPORTED_PROTOCOL_VERSION,
    SupervisorError,
    rate_limited,
)
from supervisor.policy.states import SERVING
from supervisor.wire import fastio, protocol
from supervisor.wire.jsonrpc import Message, TooDeep, is_valid_id, loads
from supervisor.wire.outbox import Outbox, batch

from . import policy as http_policy
from .calls import SESSION_IDLE, SESSION_SWEEP, Call, HttpSession, _Listen, _same_owner, _Stateless
from .connection import Connections
from .replies import _JSON, Receive, Scope, Send, _closing, _send_empty, _send_error, _send_json
from .session_ids import SessionIds, owner_of
from .session_table import SessionTable
from .sse import _SSE_HEADERS, PING_INTERVAL, _Stream, sse_event
from .sse_polling import RETRY_FRAME, poll_deadline, session_polls
from .sse_replay import ReplayStream, parse_event_id

if TYPE_CHECKING:
    from supervisor.config import HttpSettings
    from supervisor.core.aggregate import Aggregate
    from supervisor.core.cluster_limits import ClusterLimiter
    from supervisor.core.fleet import Fleet
    from supervisor.policy.ratelimit import ClientLimits

log = logging.getLogger("mcp_supervisor.http")


# How long a resuming GET waits for the stream it replaces to end before it is refused with 409.
TAKEOVER_TIMEOUT = 2.0
SEND_TIMEOUT = 30.0  # one SSE write to a client that stopped reading
# An idle keep-alive connection is closed after this long. uvicorn's 5 s default races clients
# that reuse a connection a little later (the close and their next POST cross, and a POST is not
# retried): under load that showed as ReadErrors in the 500-client test. Idle connections are
# cheap; limit_concurrency still bounds how many there are.
KEEP_ALIVE = 60

_SSE = b"text/event-stream"
_NAME_BEARING = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri",
                 # SEP-2663: Mcp-Name carries the task id, so a balancer can route by it
                 "tasks/get": "taskId", "tasks/update": "taskId", "tasks/cancel": "taskId"}
# JSON-RPC error code -> HTTP status for 2026-07-28 answers (what the official SDK server does).
_MODERN_STATUS = {PARSE_ERROR: 400, INVALID_REQUEST: 400, INVALID_PARAMS: 400, HEADER_MISMATCH: 400,
                  UNSUPPORTED_PROTOCOL_VERSION: 400, MISSING_CLIENT_CAPABILITY: 400,
                  METHOD_NOT_FOUND: 404}


# What `GET /` answers: where the doors are, for a person or a client pointed at the bare address.
INDEX = {
    "name": "mcp-supervisor",
    "doors": {
        "/mcp": "Streamable HTTP MCP: the aggregate of every ready server (tools named SERVER__tool)",
        "/mcp/{server}": "Streamable HTTP MCP: one server",
        "/healthz": "liveness and how many servers are ready",
        "/metrics": "Prometheus metrics",
    },
}


class DoorError(SupervisorError):
    """The HTTP door cannot start (address in use, unsafe settings)."""


def _decode_header_value(raw: str) -> str | None:
    """`Mcp-Name` values that are not plain ASCII travel as `=?base64?...?=`."""
    if raw.startswith("=?base64?") and raw.endswith("?="):
        try:
            return base64.b64decode(raw[9:-2], validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
    return raw


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
            token.encode(): name for token, name in (client_tokens or {}).items()}
        if settings.token:
            self._token_clients[settings.token.encode()] = None
        self._tokens = list(self._token_clients)
        self._views: dict[tuple[str, str], Target] = {}
        self._hosts = http_policy.allowed_hosts(settings)
        if (warning := http_policy.wildcard_warning(settings)) is not None:
            log.warning("%s", warning)
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
        self.sessions: SessionTable[HttpSession] = SessionTable(settings.max_sessions,
                                                                settings.max_sessions_per_token)
        self.connections = Connections(settings)
        self._stateless: dict[int, _Stateless] = {}
        self.input_required: InputRequired = book()
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
            raise DoorError(f"cannot listen on {self.settings.listen} ([http] listen): "
                            f"{exc.strerror or exc}; set [http] listen to a free address, or "
                            "listen = \"\" to turn the HTTP door off") from exc
        sock.listen(2048)
        sock.setblocking(False)
        self.sock = sock
        self.port = sock.getsockname()[1]
        return sock

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        sock = self.sock or self.bind()
        _route_uvicorn_logs()
        budget = connection_budget()
        connections = self.connections
        if budget < connections.max_connections:
            log.warning("http: at most %d connections (http.max_connections = %d, but the open-file "
                        "limit leaves room for %d)", budget, connections.max_connections, budget)
            connections.max_connections = budget
        config = uvicorn.Config(
            self, lifespan="off", log_config=None, access_log=False, ws="none",
            http=connections.protocol(),
            proxy_headers=False,  # X-Forwarded-* are not ours to trust, and the middleware costs
            timeout_keep_alive=KEEP_ALIVE,
            # Connections are capped by our protocol (refused before any parsing); this bounds
            # request tasks that outlive their connection.
            limit_concurrency=2 * connections.max_connections,
            # Requests in progress when the listener closes finish within the daemon's drain.
            timeout_graceful_shutdown=max(1, math.ceil(self.drain_timeout)),
            server_header=False, date_header=False)
        self._server = _Server(config)
        connections.serve(self._server)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._sweep_sessions)
            tg.start_soon(connections.sweep)
            log.info("Streamable HTTP on http://%s/mcp (aggregate) and /mcp/NAME", self.settings.listen)
            task_status.started()
            try:
                await self._server.serve(sockets=[sock])
            finally:
                for session in self.sessions:
                    self.sessions.pop(session.sid)
                    session.close()
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
        for session in self.sessions:
            session.stream.push(b"")
        for listener in self._listeners:
            listener.stream.push(b"")
        if self._server is not None:
            self._server.should_exit = True

    async def _sweep_sessions(self) -> None:
        """Forgets legacy sessions idle for `SESSION_IDLE`, every `SESSION_SWEEP`."""
        while True:
            await anyio.sleep(SESSION_SWEEP)
            for session in self.sessions.idle_since(time.monotonic() - SESSION_IDLE):
                log.info("forgetting idle HTTP session %s…", session.sid[-8:])
                self.sessions.pop(session.sid)
                session.close()

    # ---- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        # Each request is its own failure domain: an unexpected exception in here is logged
        # once and answered 500 (-32603), its slot in the child is given back (`_give_back`),
        # and nothing else notices. The boundary costs nothing until something raises.
        try:
            if self.draining:
                send = _closing(send)
            headers, bad_headers = http_policy.screen(scope["headers"], self._hosts)
            if bad_headers is not None:  # before every path: /healthz and /metrics too
                await _send_error(send, bad_headers.status, INVALID_REQUEST, bad_headers.message)
                return
            path: str = scope["path"]
            if path == "/" and scope["method"] in ("GET", "HEAD"):
                await _send_json(send, 200, INDEX)  # the doors, not the servers: no token needed
                return
            if path == "/healthz":
                await self._healthz(send)
                return
            # Who is asking comes before what is asked for: nothing about the fleet (which servers
            # exist) is said to a client without the token.
            if self._tokens and not self._authorized(headers.get(b"authorization")):
                if path == "/metrics":
                    await _send_empty(send, 401, [(b"www-authenticate", b'Bearer realm="mcp-supervisor"')])
                    return
                await _send_error(send, 401, INVALID_REQUEST,
                                  "Unauthorized: send 'Authorization: Bearer <token>'",
                                  extra=[(b"www-authenticate", b'Bearer realm="mcp-supervisor"')])
                return
            if path == "/metrics":
                await self._metrics(scope, send)
                return
            if path == "/mcp" or path == "/mcp/":
                target: Target = self.aggregate
            elif path.startswith("/mcp/"):
                server = self.fleet.servers.get(path[5:].rstrip("/"))
                if server is None:
                    known = ", ".join(self.fleet.servers)
                    await _send_error(send, 404, UNKNOWN_SERVER,
                                      f"no server named '{path[5:]}' (known: {known})")
                    return
                target = server
            else:
                await _send_empty(send, 404)
                return
            origin = headers.get(b"origin")
            if origin is not None and not self._origin_ok(origin):
                shown = origin.decode(errors="replace")
                await _send_error(send, 403, INVALID_REQUEST,
                                  f"Forbidden: origin {shown} is not allowed (http.allowed_origins)")
                return
            client = (self._token_clients.get(self._credential(headers) or b"")
                      if self._token_clients else None)
            if self._limits is not None and self._limits.active:
                wait = await self._client_wait(client) if client else 0.0
                if wait:
                    refusal = rate_limited(None, f"client '{client}' is over its rate limit", wait)
                    seconds = str(max(1, math.ceil(wait))).encode()
                    await _send_error(send, 429, RATE_LIMITED, refusal["error"]["message"],
                                      data=refusal["error"]["data"], extra=[(b"retry-after", seconds)])
                    return
            if client is not None:
                viewed = self._view_for(client, target)
                if viewed is None:
                    await _send_error(send, 403, INVALID_PARAMS, f"Forbidden: client '{client}' may "
                                      f"not use server '{target.name}' (clients.{client}.servers)")
                    return
                target = viewed
            method = scope["method"]
            if method == "POST":
                await self._post(path, target, headers, receive, send)
            elif method == "GET":
                await self._get(path, headers, receive, send)
            elif method == "DELETE":
                await self._delete(path, headers, send)
            else:
                await _send_empty(send, 405, [(b"allow", b"GET, POST, DELETE")])
        except Exception as exc:
            await self._request_failed(scope, send, exc)

    async def _request_failed(self, scope: Scope, send: Send, exc: Exception) -> None:
        where = f"{scope.get('method')} {str(scope.get('path'))[:200]}"
        with domain("http-request", where):
            raise exc
        with contextlib.suppress(Exception):  # a response already under way cannot be replaced
            await _send_error(send, 500, INTERNAL_ERROR, "Internal error: the daemon failed on this "
                              "request and ended it alone (its log says why); other requests are "
                              "unaffected", extra=[(b"connection", b"close")])

    def _view_for(self, client: str, target: Target) -> Target | None:
        """The client's view of `target` (one object per client and target, so its sessions are
        stable); None when its `[clients.NAME] servers` leaves the server out."""
        if target is not self.aggregate:
            try:
                check_server(self.aggregate, client, target.name)
            except NotInView:
                return None
        key = (client, target.name)
        cached = self._views.get(key)
        if cached is None or getattr(cached, "inner", cached) is not target:
            if len(self._views) > 4096:  # servers replaced by reloads leave old keys behind
                self._views.clear()
            cached = self._views[key] = view_target(self.aggregate, target, client)
        return cached

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
        return self._match_token(http_policy.bearer_token(given)) is not None

    def _match_token(self, given: bytes | None) -> bytes | None:
        """The configured token `given` is (compared in constant time), or None."""
        found = None
        for token in self._tokens:
            if given is not None and hmac.compare_digest(given, token):
                found = token
        return found

    def _credential(self, headers: dict[bytes, bytes]) -> bytes | None:
        """The configured token this request bears, or None (also when no token is configured)."""
        return self._match_token(http_policy.bearer_token(headers.get(b"authorization")))

    async def _metrics(self, scope: Scope, send: Send) -> None:
        """Prometheus exposition; behind the bearer token (checked by the caller) like everything
        but /healthz."""
        if scope["method"] != "GET":
            await _send_empty(send, 405, [(b"allow", b"GET")])
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
        # No timeout here: the connection enforces `body_timeout` (a late body is answered 408
        # and the connection closed, which ends these waits with http.disconnect).
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body: bytes = message.get("body", b"")
        if not message.get("more_body"):
            return body
        chunks = [body]
        size = len(body)
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
            msg = loads(body)
        except TooDeep as exc:  # parsed, but deeper than we could ever write back
            await _send_error(send, 400, INVALID_REQUEST, f"Invalid Request: {exc}", exc.msg_id)
            return
        except orjson.JSONDecodeError as exc:
            await _send_error(send, 400, PARSE_ERROR, f"Parse error: {exc}")
            return
        if msg.__class__ is not dict:
            await _send_error(send, 400, INVALID_REQUEST, "Invalid Request: expected one JSON-RPC object "
                              "(batches are not part of MCP since 2025-06-18)")
            return
        # Both eras key calls by id and echo it in every error: an id that is not a string or an
        # integer (a list is unhashable, a deep one cannot be encoded again) is refused here, once.
        # null stays allowed on a client's answer (no method), as JSON-RPC has it for errors.
        if "id" in msg and not is_valid_id(msg["id"]) and not (msg["id"] is None and "method" not in msg):
            await _send_error(send, 400, INVALID_REQUEST,
                              "Invalid Request: id must be a string or an integer")
            return
        version = headers.get(b"mcp-protocol-version")
        if version is not None:
            text = version.decode("latin-1")
            if text in protocol.MODERN_VERSIONS:
                await self._modern(target, headers, text, msg, json_ok, sse_ok, receive, send)
                return
            if text not in protocol.LEGACY_VERSIONS:
                # A request in the 2026-07-28 shape (the envelope in _meta) is told the versions
                # server/discover lists; a legacy one every version we speak.
                params = msg.get("params")
                meta = params.get("_meta") if params.__class__ is dict else None
                modern = meta.__class__ is dict and protocol.META_PROTOCOL_VERSION in meta
                supported = protocol.MODERN_VERSIONS if modern else protocol.KNOWN_VERSIONS
                await _send_error(send, 400, UNSUPPORTED_PROTOCOL_VERSION,
                                  f"Bad Request: unsupported MCP-Protocol-Version {text!r}",
                                  msg.get("id"), {"supported": list(supported), "requested": text})
                return
        await self._legacy(path, target, headers, msg, json_ok, sse_ok, receive, send)

    async def _legacy(self, path: str, target: Target, headers: dict[bytes, bytes], msg: Message,
                      json_ok: bool, sse_ok: bool, receive: Receive, send: Send) -> None:
        method = msg.get("method")
        if method == "initialize" and "id" in msg:
            await self._open_session(path, target, headers, msg, send)
            return
        session = await self._session(path, headers, send, msg.get("id"))
        if session is None:
            return
        if "id" not in msg or method is None:
            with self._batch():
                session.on_message(msg)  # a notification, or the client's answer to a server request
            await _send_empty(send, 202)
            return
        # Taken now: routing rewrites msg["id"] in place to the child's id (no copy per call).
        client_id = msg["id"]
        call = Call(client_id, session)
        session.calls[client_id] = call
        try:
            with self._batch():
                session.on_message(msg, call)
            await self._respond(call, target, json_ok, sse_ok, 200, None, receive, send)
        except BaseException:
            _give_back(target, call)
            raise
        finally:
            # A dropped, unfinished resumable stream keeps its call for the reconnect.
            if session.calls.get(client_id) is call and (call.replay is None or call.replay.finished):
                del session.calls[client_id]

    async def _open_session(self, path: str, target: Target, headers: dict[bytes, bytes],
                            msg: Message, send: Send) -> None:
        if self.draining:  # a balancer retries this on another node (see contrib/haproxy)
            await _send_error(send, 503, INVALID_REQUEST, "Service Unavailable: this daemon is "
                              "draining; open the session on another node", msg["id"],
                              extra=[(b"retry-after", b"1")])
            return
        owner = owner_of(self._credential(headers))
        evicted = self.sessions.evicted
        if not self.sessions.make_room(owner):
            await _send_error(send, 503, INVALID_REQUEST, "Service Unavailable: every legacy session "
                              "this client may hold is in use (http.max_sessions_per_token, "
                              "http.max_sessions)", msg["id"])
            return
        if self.sessions.evicted != evicted and self.sessions.evicted % 1000 == 1:
            log.info("http: ended the least recently used idle session for a new one (%d so far; "
                     "http.max_sessions_per_token = %d, http.max_sessions = %d)", self.sessions.evicted,
                     self.sessions.max_per_owner, self.sessions.max_total)
        sid = self._new_session_id(path, headers, msg)
        opened = HttpSession(sid, path, target, max_message=self.max_message, task_group=self._tg)
        opened.owner = (self._token_clients.get(self._credential(headers) or b"")
                        or f"anonymous:http-{sid}")
        opened.token = self._credential(headers)
        params = msg.get("params")
        opened.polls = session_polls(params.get("protocolVersion") if params.__class__ is dict else None)
        call = Call(msg["id"], opened)
        try:
            with self._batch():
                opened.on_message(msg, call)
            await call.wait()
        except BaseException:
            opened.close()
            raise
        ok = call.response is not None and "result" in call.response
        if ok and self.sessions.make_room(owner):  # others may have opened sessions meanwhile
            self.sessions.add(opened, owner)
        else:
            ok = False
            opened.close()
        await self._send_answer(call, [(b"mcp-session-id", sid.encode())] if ok else None, send)

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
        # A session belongs to the token that opened it: to any other it does not exist.
        if (found is None or found.path.rstrip("/") != path.rstrip("/")
                or not _same_owner(found.token, self._credential(headers))):
            await _send_error(send, 404, INVALID_REQUEST, "Not Found: unknown or expired session", msg_id)
            return None
        self.sessions.touch(found, time.monotonic())
        return found

    def _new_session_id(self, path: str, headers: dict[bytes, bytes], msg: Message) -> str:
        if self.session_ids is None:
            return secrets.token_urlsafe(24)
        params = msg.get("params")
        params = params if params.__class__ is dict else {}
        capabilities, info = params.get("capabilities"), params.get("clientInfo")
        return self.session_ids.issue(
            path=path.rstrip("/"), owner=owner_of(self._credential(headers)),
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
        if not hmac.compare_digest(claims["o"], owner_of(self._credential(headers))):
            return None  # another credential's session: as unknown to it as a forged one
        target = self._target(path)
        if target is None or not self.sessions.make_room(claims["o"]):
            return None
        client = self._token_clients.get(self._credential(headers) or b"")
        if client is not None:  # the client's view, as for a session opened here
            target = self._view_for(client, target)
            if target is None:
                return None
        session = HttpSession(sid, path, target, max_message=self.max_message, task_group=self._tg)
        session.owner = client or f"anonymous:http-{sid}"
        session.client_capabilities = claims["c"]
        session.client_info = claims["i"]
        session.polls = session_polls(claims.get("v"))
        session.initialized = True
        session.token = self._credential(headers)
        self.sessions.add(session, claims["o"])
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
        elif headers.get(b"mcp-method", b"").decode("latin-1").strip(" \t") != method:
            mismatch = "Mcp-Method header does not match the request body's method"
        elif method in _NAME_BEARING:
            key = _NAME_BEARING[method]
            raw = headers.get(b"mcp-name")
            # HTTP allows optional whitespace around a field value (RFC 9110 §5.5).
            value = _decode_header_value(raw.decode("latin-1").strip(" \t")) if raw is not None else None
            if params.get(key) is not None and value != params.get(key):
                mismatch = f"Mcp-Name header does not match the request body's {key!r} parameter"
        if mismatch is not None:
            await _send_error(send, 400, HEADER_MISMATCH, mismatch, mid)
            return
        if method in protocol.REMOVED_IN_MODERN:
            await _send_error(send, 404, METHOD_NOT_FOUND, f"Method not found: {method} is not part of "
                              f"MCP {version}", mid)
            return
        if method == "subscriptions/listen":
            if not sse_ok:
                await _send_error(send, 406, INVALID_REQUEST, "subscriptions/listen needs Accept: "
                                  "text/event-stream", mid)
                return
            await self._listen(target, msg, params, receive, send, headers)
            return
        # Only the methods whose legacy child may ask the client something take part in the
        # input-required book; every other call is routed as it is.
        asking = method in ASKING_METHODS
        book = self.input_required if asking else None
        ask = Ask(method, params, meta.get(protocol.META_CLIENT_CAPABILITIES)) if asking else None
        call = Call(mid, None, book, ask)
        call.owner = self._token_clients.get(self._credential(headers) or b"") or "anonymous:http"
        try:
            retried = (book is not None and ask is not None
                       and ("inputResponses" in params or "requestState" in params)
                       and book.retry(msg, params, ask, call))
            if not retried:
                with self._batch():
                    self._stateless_for(target).on_message(msg, call)
            await self._respond(call, target, json_ok, sse_ok, 200, _MODERN_STATUS, receive, send)
        except BaseException:
            _give_back(target, call)
            raise
        finally:
            if book is not None and ask is not None:
                book.detach(call, ask)

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
        # Waiting for the answer costs nothing per call but a future: the connection says when
        # its client hangs up. (Where it cannot, the watcher task of the slow path below does.)
        # SSE polling: a 2025-11-25 session's call still unanswered at `poll_at` is let go.
        poll_at = (poll_deadline(self.settings.sse_poll_after, call.session)
                   if sse_ok and call.session is not None else None)
        if call.response is None and not call.events and fastio.watch_hang_up(receive, call.hang_up):
            try:
                if poll_at is None:
                    await call.wait()
                else:
                    with anyio.move_on_after(poll_at - time.monotonic()):
                        await call.wait()
            finally:
                fastio.unwatch_hang_up(receive)
            if call.gone and call.response is None:
                target.cancel(call, call.client_id, "the HTTP client closed the connection")
                return
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
            await self._respond_slow(call, json_ok, sse_ok, status, statuses, send, poll_at)
            tg.cancel_scope.cancel()
        if call.replay is not None and not call.replay.finished:
            return  # a legacy session's stream: the client may resume it (Last-Event-ID)
        if call.response is None:
            call.gone = True
            target.cancel(call, call.client_id, "the HTTP client closed the response stream")

    async def _respond_slow(self, call: Call, json_ok: bool, sse_ok: bool, status: int,
                            statuses: dict[int, int] | None, send: Send,
                            poll_at: float | None = None) -> None:
        while call.response is None and not (call.events and sse_ok):
            if not sse_ok:
                # A JSON-only client: what the child streams before the answer cannot reach it
                # (and a kept event would make `wait` return at once, spinning the loop).
                call.events.clear()
            if poll_at is None:
                await call.wait()
                continue
            with anyio.move_on_after(poll_at - time.monotonic()):
                await call.wait()
            if time.monotonic() >= poll_at:
                break  # SSE polling: prime the stream, then let the connection go
        if call.response is not None and (not call.events or not sse_ok) and json_ok:
            response = call.response
            if statuses is not None and "error" in response:
                status = statuses.get(response["error"].get("code"), status)
            with anyio.move_on_after(SEND_TIMEOUT):
                await _send_json(send, status, response)
            return
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        first: list[bytes] = []
        if call.session is not None:
            call.replay = call.session.resumable(call)
            first.append(call.replay.prime())
        await self._pump_call(call, send, first, poll_at if call.replay is not None else None)

    async def _pump_call(self, call: Call, send: Send, first: list[bytes],
                         poll_at: float | None = None) -> None:
        """Write a call's events and then its answer to an open SSE response (numbered and kept
        for a reconnect when the call has a replay stream). At `poll_at`, an unfinished stream
        is closed with a `retry` hint for the client to resume it (`sse_polling.py`)."""
        replay = call.replay
        render = replay.frame if replay is not None else sse_event
        frames = first
        while True:
            frames += [render(m) for m in call.events]
            call.events.clear()
            final = call.response
            if final is not None:
                frames.append(render(final))
                if replay is not None:
                    replay.finished = True
            if frames:
                with anyio.move_on_after(SEND_TIMEOUT) as timed:
                    await send({"type": "http.response.body", "body": b"".join(frames),
                                "more_body": final is None})
                if timed.cancelled_caught:
                    return
            if final is not None:
                return
            frames = []
            if poll_at is not None and time.monotonic() >= poll_at:
                with anyio.move_on_after(SEND_TIMEOUT):
                    await send({"type": "http.response.body", "body": RETRY_FRAME, "more_body": False})
                return
            wait = PING_INTERVAL if poll_at is None else min(PING_INTERVAL, poll_at - time.monotonic())
            with anyio.move_on_after(wait) as quiet:
                await call.wait()
            if quiet.cancelled_caught and (poll_at is None or time.monotonic() < poll_at):
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
                      extra: list[tuple[bytes, bytes]] | None = None,
                      session: HttpSession | None = None) -> None:
        """`session`: the GET stream's session, which gets the scope that ends this stream cleanly
        (a resuming GET takes the stream over through it)."""
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
            if session is not None:
                session.stream_scope = tg.cancel_scope
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
        resume = parse_event_id(headers.get(b"last-event-id"))
        stream = session.replay.get(resume[0]) if resume is not None else None
        if stream is not None and resume is not None and stream.call is not None:
            await self._resume_call(session, stream, resume[1], receive, send)
            return
        if session.streaming and stream is not None and session.stream_scope is not None:
            # Last-Event-ID of this session's GET stream: the client lost that stream, even if
            # the daemon has not seen the disconnect yet (it shows only on the next write).
            session.stream_scope.cancel()
            with anyio.move_on_after(TAKEOVER_TIMEOUT):
                await session.stream_ended.wait()
        if session.streaming:
            await _send_error(send, 409, INVALID_REQUEST, "Conflict: this session already has a GET stream")
            return
        first = None
        if stream is not None and resume is not None:  # the GET stream itself, resumed
            replayed = stream.after(resume[1])
            if replayed is not None:
                session.stream.take()  # the replay holds these and everything sent since
                first = replayed
        session.streaming = True
        session.stream_ended = anyio.Event()
        try:
            await self._stream(session.stream, receive, send, first=(first or []) + session.list_again(),
                               session=session)
        finally:
            session.streaming = False
            session.stream_scope = None
            session.stream_ended.set()
            if self.sessions.get(session.sid) is session:
                self.sessions.touch(session, time.monotonic())

    async def _resume_call(self, session: HttpSession, stream: ReplayStream, seq: int,
                           receive: Receive, send: Send) -> None:
        """GET + Last-Event-ID of a POST stream: what it sent after `seq`, then the rest of the
        call, then the end of the stream."""
        call: Call = stream.call
        if stream.taken:
            await _send_error(send, 409, INVALID_REQUEST, "Conflict: that stream is being read already")
            return
        frames = stream.after(seq) or []
        stream.taken = True
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            if stream.finished:
                with anyio.move_on_after(SEND_TIMEOUT):
                    await send({"type": "http.response.body", "body": b"".join(frames)})
            else:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._watch_disconnect, receive, call, tg.cancel_scope)
                    await self._pump_call(call, send, frames)
                    tg.cancel_scope.cancel()
        finally:
            stream.taken = False
            if stream.finished and session.calls.get(call.client_id) is call:
                del session.calls[call.client_id]

    async def _delete(self, path: str, headers: dict[bytes, bytes], send: Send) -> None:
        session = await self._session(path, headers, send)
        if session is None:
            return
        self.sessions.pop(session.sid)
        session.close()
        await _send_empty(send, 200)

    async def _listen(self, target: Target, msg: Message, params: dict[str, Any], receive: Receive,
                      send: Send, headers: dict[bytes, bytes]) -> None:
        wanted = params.get("notifications")
        wanted = wanted if isinstance(wanted, dict) else {}
        handshake = target.handshake
        capabilities = (handshake.capabilities if handshake is not None else None) or {}
        honoured: dict[str, Any] = {}
        kinds = set()
        for key, method in _Listen.KINDS.items():
            capability = key.removesuffix("ListChanged")
            if wanted.get(key) and capability in capabilities:
                honoured[key] = True
                kinds.add(method)
        book = tasks.book()
        watched = wanted.get("taskIds")
        listener = _Listen(msg["id"], kinds)
        if watched is not None and book is not None:
            if not tasks.declares_tasks(params.get("_meta")):
                await _send_json(send, 400, tasks.missing_capability(
                    msg["id"], "task notifications need the tasks extension declared"))
                return
            if not isinstance(watched, list):
                await _send_error(send, 400, INVALID_PARAMS, "Invalid params: taskIds must be a list",
                                  msg["id"])
                return
            honoured["taskIds"] = book.watch(listener, watched, self._token_clients.get(
                self._credential(headers) or b""))
            kinds.add("notifications/tasks")
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
            if book is not None:
                book.unwatch(listener)


def _give_back(target: Target, call: Call) -> None:
    """The request's domain ended before its answer (an exception in the door, a cancelled task):
    whatever it holds in the server (a queue place, an in-flight slot) is released now, as a
    cancellation (which the breaker does not count), not at the request's timeout."""
    if call.response is None:
        call.gone = True
        target.drop_sink(call)


def _route_uvicorn_logs() -> None:
    """uvicorn's own loggers write through ours (same handler, redaction and format)."""
    ours = logging.getLogger("mcp_supervisor")
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = list(ours.handlers)
        logger.setLevel(max(ours.level, logging.WARNING))
        logger.propagate = False
