"""The Streamable HTTP front door: a raw ASGI app served by uvicorn inside the daemon's task group.

    POST   /mcp/NAME   one server          POST /mcp   the aggregate (tools named SERVER__tool)
    GET    /mcp[/NAME] legacy: the session's stream of server notifications (SSE)
    DELETE /mcp[/NAME] legacy: end the session
    GET    /healthz    200 {"status": "ok", "ready": n, "total": m}
    GET    /metrics    Prometheus exposition (bearer token when one is set)
    GET    /           a short JSON index of these doors (no server names: those need the token)

Both protocol eras on every endpoint. The `MCP-Protocol-Version` header picks the era:
2026-07-28 requests are stateless (`modern.py`: the envelope rides in `params._meta`, `Mcp-Method`
/ `Mcp-Name` must agree with the body, else 400 with -32020; closing the response stream cancels
the call); anything else is the legacy, session-based transport (`legacy.py`: `initialize`
answered by the daemon from the child's cached handshake, then `Mcp-Session-Id` on every request;
an unknown session is 404, a missing one 400). An unknown version is 400 with -32022 and the
versions we speak.

A response is JSON unless the call streams (progress, or a server-to-client request on a legacy
session) or the client accepts only SSE; then it becomes an SSE stream ending with the answer
(`respond.py`).

Hot path (`fast.py`): the common POST (a legacy session's request or notification, or a
2026-07-28 request, whole, that every check lets through) is served by its connection with no
ASGI cycle and no task: routed to the session from the parser's callback, answered with one write
from the callback that delivers the answer, cancelled in the child when the client hangs up.
Everything else is declined before anything changed and comes here as ASGI, on uvicorn's task:
read the body, route, wait on one future (the connection says when its client went away,
`fastio.watch_hang_up`), write the answer. A call that streams (SSE) gets a second task watching
for the hang-up; a fast call that starts streaming carries on as ASGI (`FastRequest.escalate`).

Security: a foreign `Host` or `Origin` is 403 (DNS rebinding) and a duplicated `Authorization`,
`Origin`, `Host` or `Mcp-Session-Id` is 400, on every path (`supervisor.doors.http.policy`); a legacy
session answers only to the token that opened it (404 to any other); a bearer token (`[http] token`, or a
`[clients.NAME] token`) is required whenever one is configured, and the config refuses a
non-loopback `listen` without one; bodies over `max_body` are 413; slow clients meet timeouts
(body upload, each SSE write, keep-alive) so none can hold the door.
Containment: every HTTP request is its own failure domain, and no client can hold the door.
- Deadlines, enforced by the connection itself and one sweeper task (`connection.py`): the head
  must arrive within `header_timeout`, the body within `body_timeout`, else 408; heads over
  `max_header_bytes` are 431; idle keep-alive connections close after `keep_alive` (the same
  sweeper: no timer per request). Each SSE write has `SEND_TIMEOUT`.
- Connections are capped (`max_connections`, and below the open-file limit): beyond the cap a new
  connection gets a 503 and is closed at once, without being parsed.
- Legacy sessions are capped overall and per token and evicted idle-first (`SessionTable`).
- A request that fails in the door after it was routed (an exception, a cancelled task) gives its
  slot in the child back at once (`drop_sink`: a cancellation, never a breaker failure).

The door's parts (this module is `HttpDoor` itself: construction, serving and stopping, the ASGI
routing and the who-is-asking checks: Host, Origin, token, rate limit, the client's view):

    fast.py          the common POST served by its connection (`wire/fastio/fast_requests.py`)
    connection.py    the connections: the cap, head/body deadlines and their sweeper (over
                     `wire/fastio/http_connection.py`, which holds what leans on uvicorn's internals)
    body.py          one POST's body: size limit, JSON, one object with a usable id
    legacy.py        the session era: initialize, POST in a session, resume, GET stream, DELETE
    modern.py        the 2026-07-28 era: stateless calls, `subscriptions/listen`
    respond.py       one call's answer, JSON or SSE, and the long-lived SSE streams
    meta.py          `GET /`, `/healthz`, `/metrics`
    calls.py         the sinks: `Call` (one request), `HttpSession` (legacy), `_Stateless` and
                     `_Listen` (2026-07-28)
    sse.py           SSE framing and the bounded frame queue of long-lived streams
    replies.py       the ASGI callable types and JSON / empty replies
    sse_replay.py    resumable legacy SSE streams (`Last-Event-ID`)
    sse_polling.py   letting go of a slow call's POST connection (2025-11-25 SSE polling)
    session_ids.py   signed legacy session ids (any node of a cluster resumes them)
    session_table.py the bounded legacy session table
    policy.py        who may talk to the door (Host, Origin, duplicated headers, tokens)
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import math
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import uvicorn

from supervisor.config import is_loopback_host
from supervisor.core.input_required import InputRequired, book
from supervisor.core.sessions import Target
from supervisor.core.views import NotInView, check_server, view_target
from supervisor.domains import domain
from supervisor.doors.fdlimit import connection_budget
from supervisor.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    RATE_LIMITED,
    UNKNOWN_SERVER,
    UNSUPPORTED_PROTOCOL_VERSION,
    SupervisorError,
    rate_limited,
)
from supervisor.wire import protocol
from supervisor.wire.outbox import batch as outbox_batch

from . import meta
from . import policy as http_policy
from .body import read_message
from .connection import Connections
from .fast import FastPath
from .legacy import Legacy
from .modern import Modern
from .replies import _JSON, Receive, Scope, Send, _closing, _send_empty, _send_error
from .session_ids import SessionIds

if TYPE_CHECKING:
    from supervisor.config import HttpSettings
    from supervisor.core.aggregate import Aggregate
    from supervisor.core.cluster_limits import ClusterLimiter
    from supervisor.core.fleet import Fleet
    from supervisor.policy.ratelimit import ClientLimits

log = logging.getLogger("mcp_supervisor.http")

_SSE = b"text/event-stream"


class DoorError(SupervisorError):
    """The HTTP door cannot start (address in use, unsafe settings)."""


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
        self.token_clients: dict[bytes, str | None] = {
            token.encode(): name for token, name in (client_tokens or {}).items()}
        if settings.token:
            self.token_clients[settings.token.encode()] = None
        self._tokens = list(self.token_clients)
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
        self.session_ids = session_ids  # with [cluster] secret: ids any node can resume
        self.cluster_limits: ClusterLimiter | None = None  # set by the daemon with [cluster]
        if not settings.is_loopback() and not self._tokens:
            raise DoorError(f"http.listen = {settings.listen!r} is not a loopback address: "
                            "set http.token (clients then send 'Authorization: Bearer <token>')")
        self._origins = {o.rstrip("/").lower() for o in settings.allowed_origins}
        self.max_body = settings.max_body
        self.max_message = max_message
        self.input_required: InputRequired = book()
        self.task_group: anyio.abc.TaskGroup | None = None  # the sessions' tasks, once serving
        self._server: _Server | None = None
        self._flushing: contextlib.AbstractContextManager[None] | None = None
        self.sock: socket.socket | None = None
        self.port = 0
        self.connections = Connections(settings)
        self.legacy = Legacy(self)
        self.modern = Modern(self)
        self.fast = FastPath(self)
        self.connections.fast_app = self.fast  # the common POST, served by its connection

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
            # Our connections keep the keep-alive deadline themselves (`Connections.sweep`); this is
            # for anything of uvicorn's that still reads its own setting.
            timeout_keep_alive=max(1, math.ceil(self.settings.keep_alive)),
            # Connections are capped by our protocol (refused before any parsing); this bounds
            # request tasks that outlive their connection.
            limit_concurrency=2 * connections.max_connections,
            # Requests in progress when the listener closes finish within the daemon's drain.
            timeout_graceful_shutdown=max(1, math.ceil(self.drain_timeout)),
            server_header=False, date_header=False)
        self._server = _Server(config)
        connections.serve(self._server)
        async with anyio.create_task_group() as tg:
            self.task_group = tg
            tg.start_soon(self.legacy.sweep)
            tg.start_soon(connections.sweep)
            log.info("Streamable HTTP on http://%s/mcp (aggregate) and /mcp/NAME", self.settings.listen)
            task_status.started()
            try:
                await self._server.serve(sockets=[sock])
            finally:
                self.legacy.close_all()
                tg.cancel_scope.cancel()

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Routing a request is an outbox batch: with nothing else queued in this loop pass, the
        child gets the request before the task suspends, not one pass later."""
        flushing = self._flushing
        if flushing is None:
            flushing = self._flushing = outbox_batch()
        return flushing

    def request_stop(self) -> None:
        """Close the listener; uvicorn lets requests in progress finish (up to the drain timeout).

        Long-lived streams are ended first: they would hold the shutdown for the whole timeout,
        and their clients reconnect (through a balancer, to another node) to go on listening."""
        self.legacy.end_streams()
        self.modern.end_streams()
        if self._server is not None:
            self._server.should_exit = True

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
                await meta.index(send)
                return
            if path == "/healthz":
                await meta.healthz(send, self.health, self.fleet)
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
                await meta.metrics(scope, send, self.metrics)
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
            client = (self.token_clients.get(self.credential(headers) or b"")
                      if self.token_clients else None)
            if self._limits is not None and self._limits.active:
                wait = await self._client_wait(client) if client else 0.0
                if wait:
                    refusal = rate_limited(None, f"client '{client}' is over its rate limit", wait)
                    seconds = str(max(1, math.ceil(wait))).encode()
                    await _send_error(send, 429, RATE_LIMITED, refusal["error"]["message"],
                                      data=refusal["error"]["data"], extra=[(b"retry-after", seconds)])
                    return
            if client is not None:
                viewed = self.view_for(client, target)
                if viewed is None:
                    await _send_error(send, 403, INVALID_PARAMS, f"Forbidden: client '{client}' may "
                                      f"not use server '{target.name}' (clients.{client}.servers)")
                    return
                target = viewed
            method = scope["method"]
            if method == "POST":
                await self._post(path, target, headers, receive, send)
            elif method == "GET":
                await self.legacy.get(path, headers, receive, send)
            elif method == "DELETE":
                await self.legacy.delete(path, headers, send)
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

    def view_for(self, client: str, target: Target) -> Target | None:
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

    def credential(self, headers: dict[bytes, bytes]) -> bytes | None:
        """The configured token this request bears, or None (also when no token is configured)."""
        return self._match_token(http_policy.bearer_token(headers.get(b"authorization")))

    def target_of(self, path: str) -> Target | None:
        """The target of an MCP path: the aggregate, one server, or None."""
        if path.rstrip("/") == "/mcp":
            return self.aggregate
        return self.fleet.servers.get(path[5:].rstrip("/")) if path.startswith("/mcp/") else None

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
        msg = await read_message(headers, receive, send, self.max_body)
        if msg is None:
            return
        version = headers.get(b"mcp-protocol-version")
        if version is not None:
            text = version.decode("latin-1")
            if text in protocol.MODERN_VERSIONS:
                await self.modern.post(target, headers, text, msg, json_ok, sse_ok, receive, send)
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
        await self.legacy.post(path, target, headers, msg, json_ok, sse_ok, receive, send)


def _route_uvicorn_logs() -> None:
    """uvicorn's own loggers write through ours (same handler, redaction and format)."""
    ours = logging.getLogger("mcp_supervisor")
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = list(ours.handlers)
        logger.setLevel(max(ours.level, logging.WARNING))
        logger.propagate = False
