"""A client's MCP session with one server, over whichever front door it came in by.

The child did its handshake once, with the daemon; every client that attaches gets `initialize`
(legacy) or `server/discover` (2026-07-28) answered from that result, negotiated to the client's
own version, and then shares the child. Everything else is routed by `Server.submit`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from supervisor.domains import MessageFailed
from supervisor.errors import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    UNSUPPORTED_PROTOCOL_VERSION,
    rate_limited,
    unavailable,
)
from supervisor.policy.states import SERVING
from supervisor.telemetry import tracing
from supervisor.wire import protocol
from supervisor.wire.jsonrpc import (
    LineSplitter,
    Message,
    Oversized,
    TooDeep,
    encode,
    error_response,
    is_valid_id,
    loads,
    parse_error,
    too_deep,
    too_large,
)
from supervisor.wire.outbox import Outbox

from . import tasks
from .clock import SYSTEM_CLOCK, Clock
from .input_required import ASKING_METHODS, session_request

if TYPE_CHECKING:
    from supervisor.policy.ratelimit import ClientLimits
    from supervisor.policy.states import State
    from supervisor.wire.jsonrpc import Sink

    from .instance import Instance
    from .server import Attached, Server

log = logging.getLogger("mcp_supervisor.session")


class _Timeouts(Protocol):
    @property
    def init_timeout(self) -> float: ...


class Target(Protocol):
    """What a session talks to: one `Server`, or the fleet's `Aggregate` (same routing surface)."""

    sessions: set[Attached]

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> State: ...
    @property
    def reason(self) -> str: ...
    @property
    def config(self) -> _Timeouts: ...
    @property
    def handshake(self) -> Any: ...
    @property
    def transitional(self) -> bool: ...
    def submit(self, sink: Sink, message: Message, client_modern: bool) -> None: ...
    def cancel(self, sink: Sink, client_id: Any, reason: str = ...) -> bool: ...
    def drop_sink(self, sink: Sink) -> int: ...
    async def wait_settled(self, timeout: float) -> None: ...


class Session:
    """One attached client. Lines in via `feed`/`on_line`; everything out through `outbox`.

    Answers go to `reply` when one is given (an HTTP request's own response stream), else to the
    session itself (a byte stream that carries everything, like the control socket).
    """

    def __init__(self, server: Target, outbox: Outbox, *, max_message: int,
                 task_group: anyio.abc.TaskGroup | None = None, client: str | None = None,
                 limits: ClientLimits | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.server = server
        self.limits = limits  # per-client rate limits, keyed by `client`
        self._monotonic = clock.monotonic  # what the rate limits are checked at (bound once)
        self.outbox = outbox
        self.client = client
        self.owner = client  # whose instance of a `sharing = "per-client"` server it uses
        self.max_message = max_message
        self.modern = False
        self.initialized = False
        self.client_info: dict[str, Any] = {}
        self.client_capabilities: dict[str, Any] = {}
        self.closed = False
        self._splitter = LineSplitter(max_message)
        self._tg = task_group
        self._server_requests: dict[str, tuple[Instance, Any]] = {}
        self._open: set[Any] = set()  # ids of requests routed for this session, not yet answered
        self._idle: anyio.Event | None = None
        self._next_server_request = 1
        self.requests: set[Any] = set()  # 2026-07-28 calls that may be answered input_required
        self._spans: dict[Any, Any] = {}  # request spans of requests answered through `deliver`
        server.sessions.add(self)

    # ---- out ------------------------------------------------------------------------------------

    def deliver(self, message: Message) -> None:
        if self._spans and "method" not in message:
            span = self._spans.pop(message.get("id"), None)
            if span is not None and tracing.active is not None:
                tracing.active.end(span, message)
        if self._open and "method" not in message:
            self._open.discard(message.get("id"))
            if not self._open and self._idle is not None:
                self._idle.set()
        self.outbox.push(encode(message))

    def deliver_answer_line(self, msg_id: Any, line: bytes, result: dict[str, Any]) -> None:
        """A successful answer to `msg_id` as its line, ready to write (a memory cache hit: the
        stored result's bytes with the id spliced in, nothing encoded again); `result` is the same
        answer as a value."""
        if self._spans and msg_id in self._spans:  # a traced request ends its span with the answer
            self.deliver({"jsonrpc": "2.0", "id": msg_id, "result": result})
            return
        if self._open:
            self._open.discard(msg_id)
            if not self._open and self._idle is not None:
                self._idle.set()
        self.outbox.push(line)

    async def drain(self, timeout: float) -> None:
        """Wait (at most `timeout`) until every request routed for this session is answered: a
        client that closed its input but still reads gets what it asked for."""
        if self._open:
            self._idle = anyio.Event()
            with anyio.move_on_after(timeout):
                await self._idle.wait()

    def server_notification(self, server: Server, message: Message) -> None:
        self.deliver(message)

    def forward_server_request(self, instance: Instance, message: Message) -> bool:
        """A child's sampling/elicitation request that this session's call caused."""
        self.deliver(self.server_request_for(instance, message))
        return True

    def server_request_for(self, instance: Instance, message: Message) -> Message:
        """The child's request under a session-unique id, remembered so the answer finds its way."""
        sid = f"mcps-{self._next_server_request}"
        self._next_server_request += 1
        self._server_requests[sid] = (instance, message["id"])
        return {**message, "id": sid}

    # ---- in -------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        for line in self._splitter.feed(data):
            self.on_line(line)

    def on_line(self, line: bytes | Oversized) -> None:
        if isinstance(line, Oversized):
            self.deliver(too_large(line.size, self.max_message))
            return
        try:
            msg = loads(line)
        except TooDeep as exc:
            self.deliver(too_deep(exc))
            return
        except ValueError as exc:
            self.deliver(parse_error(str(exc)))
            return
        if msg.__class__ is not dict:
            self.deliver(error_response(None, INVALID_REQUEST,
                                        "Invalid Request: expected a JSON object "
                                        "(batches are not part of MCP since 2025-06-18)"))
            return
        try:
            self.on_message(msg)
        except Exception as exc:  # a bug routing it: the connection's domain answers this id and ends
            raise MessageFailed(msg.get("id") if is_valid_id(msg.get("id")) else None) from exc

    def on_message(self, msg: Message, reply: Sink | None = None) -> None:
        out: Sink = self if reply is None else reply
        method = msg.get("method")
        if method.__class__ is not str:
            if method is None and ("result" in msg or "error" in msg):
                self._client_response(msg)
            else:
                out.deliver(error_response(msg.get("id") if is_valid_id(msg.get("id")) else None,
                                            INVALID_REQUEST, "Invalid Request: no method"))
            return
        if "id" not in msg:
            self._notification(method, msg)
            return
        mid = msg["id"]
        kind = mid.__class__  # an int or a str as parsed: no call for the common ids
        if kind is not int and kind is not str and not is_valid_id(mid):
            out.deliver(error_response(None, INVALID_REQUEST,
                                        "Invalid Request: id must be a string or an integer"))
            return
        params = msg.get("params")
        if params is not None and params.__class__ is not dict:
            out.deliver(error_response(mid, INVALID_PARAMS, "Invalid params: must be an object"))
            return
        if params is not None:
            meta = params.get("_meta")
            if meta.__class__ is dict:
                if protocol.META_PROTOCOL_VERSION in meta:
                    version = meta[protocol.META_PROTOCOL_VERSION]
                    if version not in protocol.MODERN_VERSIONS:
                        self._unsupported_version(out, mid, version)
                        return
                    self.modern = True
            elif meta is not None:
                out.deliver(error_response(mid, INVALID_PARAMS, "Invalid params: _meta must be an object"))
                return
        local = _LOCAL.get(method)
        if local is not None:
            local(self, msg, out)
            return
        limits = self.limits
        if limits is not None and limits.active and self.client is not None:
            wait = limits.check(self.client, self._monotonic())
            if wait:
                out.deliver(rate_limited(mid, f"client '{self.client}' is over its rate limit", wait))
                return
        if method in _SUBSCRIPTION_METHODS and not self.modern and self._subscription(method, msg, out):
            return
        if self.modern and params is not None and (method == "tools/call" or method.startswith("tasks/")):
            book = tasks.book()
            if book is not None and book.intercept(self.server, msg, params, out, _task_owner(out)):
                return  # the tasks extension took it (tasks.py)
        if out is self:
            self._open.add(mid)
            if self.modern and method in ASKING_METHODS and params is not None:
                # Answered input_required when the child asks its client something (SEP-2322).
                envelope = params.get("_meta")
                request, route = session_request(
                    self, msg, params, envelope if envelope.__class__ is dict else {}, self._tg)
                if request.response is None:
                    self.requests.add(request)
                if not route:
                    return
                out = request
        if tracing.active is not None:
            self._trace(tracing.active, msg, out)
        self.server.submit(out, msg, self.modern)

    subscribes = True  # a client session: resources/updated reaches it only for its subscriptions

    def _subscription(self, method: str, msg: Message, out: Sink) -> bool:
        """resources/subscribe|unsubscribe: remembered per session (`subscriptions.py`). True when
        answered here (a refusal, or an unsubscribe others still need at the child)."""
        table = getattr(self.server, "subscriptions", None)
        params = msg.get("params") or {}
        uri = params.get("uri")
        if table is None:
            return False
        if not isinstance(uri, str):
            out.deliver(error_response(msg["id"], INVALID_PARAMS, "Invalid params: uri must be a string"))
            return True
        if method == "resources/subscribe":
            refused = table.subscribe(self, uri)
            if refused is not None:
                out.deliver(error_response(msg["id"], INVALID_PARAMS, f"Invalid params: {refused}"))
                return True
            return False
        if table.unsubscribe(self, uri):
            return False
        out.deliver({"jsonrpc": "2.0", "id": msg["id"], "result": {}})
        return True

    # How this session's client reaches us, for traces: `mcpctl connect` and the control socket
    # speak JSON-RPC over a pipe or a socket pair; the HTTP door's sessions say "tcp".
    TRANSPORT = "pipe"

    def trace_session_id(self) -> str | None:
        return None

    def _trace(self, traced: tracing.Tracing, msg: Message, out: Sink) -> None:
        """Start the request's span and carry its context to the child in `params._meta`."""
        span = traced.request_span(msg, self.trace_session_id(), self.TRANSPORT)
        params = msg.get("params")
        params = dict(params) if params.__class__ is dict else {}
        meta = params.get("_meta")
        params["_meta"] = meta = dict(meta) if meta.__class__ is dict else {}
        traced.inject(span, meta)
        msg["params"] = params
        if out is self:
            self._spans[msg["id"]] = span
            return
        keep = getattr(out, "keep_span", None)  # an HTTP request's sink ends it with its answer
        if keep is not None:
            keep(span)
        else:
            traced.end(span, None)

    def _notification(self, method: str, msg: Message) -> None:
        if method == "notifications/cancelled":
            params = msg.get("params")
            if isinstance(params, dict) and is_valid_id(params.get("requestId")):
                self.cancel_request(params["requestId"],
                                    str(params.get("reason") or "cancelled by the client"))
        elif method == "notifications/initialized":
            self.initialized = True
        # Other client notifications (roots/list_changed, progress for server requests) concern
        # the daemon, which answers roots itself; the shared child must not see per-client noise.

    def cancel_request(self, request_id: Any, reason: str) -> None:
        for request in list(self.requests):  # a 2026-07-28 call with its own sink
            if request.client_id == request_id:
                self.requests.discard(request)
                parked = request.ask.parked
                if parked is None:
                    self.server.cancel(request, request_id, reason)
                else:
                    self.server.drop_sink(parked)
                return
        self.server.cancel(self, request_id, reason)

    def _client_response(self, msg: Message) -> None:
        mid = msg.get("id")
        if mid.__class__ is not str:  # we only ever send string ids ("mcps-N"): anything else is not ours
            return
        target = self._server_requests.pop(mid, None)
        if target is None:
            return
        instance, child_id = target
        instance.send({**msg, "id": child_id})

    def _unsupported_version(self, out: Sink, mid: Any, version: Any, *, modern: bool = True) -> None:
        """-32022; `data.supported` lists what the request's era can use: for a 2026-07-28-shaped
        request the versions `server/discover` lists, for `initialize` the legacy ones."""
        supported = protocol.MODERN_VERSIONS if modern else protocol.LEGACY_VERSIONS
        out.deliver(error_response(
            mid, UNSUPPORTED_PROTOCOL_VERSION, f"Unsupported protocol version: {version}",
            {"supported": list(supported), "requested": version}))

    # ---- requests the daemon answers itself -------------------------------------------------------

    def _ping(self, msg: Message, out: Sink) -> None:
        out.deliver({"jsonrpc": "2.0", "id": msg["id"], "result": {}})

    def _initialize(self, msg: Message, out: Sink) -> None:
        params = msg.get("params") or {}
        info = params.get("clientInfo") or {}
        capabilities = params.get("capabilities") or {}
        if info.__class__ is not dict or capabilities.__class__ is not dict:
            out.deliver(error_response(msg["id"], INVALID_PARAMS,
                                       "Invalid params: clientInfo and capabilities must be objects"))
            return
        self.client_info = info
        self.client_capabilities = capabilities
        requested = params.get("protocolVersion")
        if requested in protocol.MODERN_VERSIONS:
            # A modern version in initialize is a client bug; answer as the spec's -32022 asks.
            self._unsupported_version(out, msg["id"], requested, modern=False)
            return
        self._when_handshake_known(out, msg, lambda child: {
            "protocolVersion": protocol.negotiate_legacy(requested),
            "capabilities": child.capabilities,
            "serverInfo": child.server_info or {"name": self.server.name, "version": "unknown"},
            **({"instructions": instr} if (instr := _instructions(child)) else {}),
        })

    def _discover(self, msg: Message, out: Sink) -> None:
        params = msg.get("params") or {}
        meta = params.get("_meta") or {}  # an object: on_message refused anything else
        requested = meta.get(protocol.META_PROTOCOL_VERSION)
        if requested is not None and requested not in protocol.MODERN_VERSIONS:
            self._unsupported_version(out, msg["id"], requested)
            return
        capabilities = meta.get(protocol.META_CLIENT_CAPABILITIES) or {}
        info = meta.get(protocol.META_CLIENT_INFO) or {}
        if capabilities.__class__ is not dict or info.__class__ is not dict:
            out.deliver(error_response(msg["id"], INVALID_PARAMS, "Invalid params: the client "
                                       "capabilities and client info in _meta must be objects"))
            return
        self.client_capabilities = capabilities
        self.client_info = info

        def answer(child: Instance) -> dict[str, Any]:
            if child.discover_result is not None:
                return child.discover_result
            result: dict[str, Any] = {
                "supportedVersions": list(protocol.MODERN_VERSIONS),
                "capabilities": child.capabilities,
                "resultType": "complete",
                "ttlMs": 0,  # required by the 2026-07-28 schema; nothing better is known
                "cacheScope": "private",
                "_meta": {protocol.META_SERVER_INFO: child.server_info
                          or {"name": self.server.name, "version": "unknown"}},
            }
            if instr := _instructions(child):
                result["instructions"] = instr
            return result

        self._when_handshake_known(out, msg, answer if tasks.book() is None
                                   else lambda child: tasks.advertise(answer(child)))

    def _when_handshake_known(self, out: Sink, msg: Message, build: Any) -> None:
        """Answer from the child's handshake; if no child has finished one yet, wait for it."""
        child = self.server.handshake
        if child is not None:
            out.deliver({"jsonrpc": "2.0", "id": msg["id"], "result": build(child)})
            return
        if self._tg is None or not self.server.transitional:
            self._unavailable(out, msg)
            return
        self._tg.start_soon(self._answer_when_ready, out, msg, build)

    async def _answer_when_ready(self, out: Sink, msg: Message, build: Any) -> None:
        await self.server.wait_settled(self.server.config.init_timeout + 5)
        child = self.server.handshake
        if child is not None and self.server.state in SERVING:
            out.deliver({"jsonrpc": "2.0", "id": msg["id"], "result": build(child)})
        else:
            self._unavailable(out, msg)

    def _unavailable(self, out: Sink, msg: Message) -> None:
        server = self.server
        out.deliver(unavailable(
            msg["id"], server.name, f"server '{server.name}' is {server.state}: {server.reason}",
            state=str(server.state), reason=server.reason))

    # ---- end --------------------------------------------------------------------------------------

    def close(self) -> None:
        """The client went away: nothing it asked for may keep a slot in the child."""
        if self.closed:
            return
        self.closed = True
        self.server.sessions.discard(self)
        table = getattr(self.server, "subscriptions", None)
        if table is not None:
            table.forget(self)
        dropped = self.server.drop_sink(self)
        for request in list(self.requests):
            parked = request.ask.parked
            dropped += self.server.drop_sink(parked if parked is not None else request)
        if dropped:
            log.info("%s: client left with %d requests outstanding; cancelled them",
                     self.server.name, dropped)


def _task_owner(out: Any) -> str | None:
    """Whose task it is: an HTTP client known by its token; anyone else holds it by its id."""
    owner = getattr(out, "owner", None)
    return owner if isinstance(owner, str) and not owner.startswith("anonymous") else None


def _instructions(child: Instance) -> str | None:
    source = child.discover_result if child.modern else child.init_result
    value = (source or {}).get("instructions")
    return value if isinstance(value, str) else None


_SUBSCRIPTION_METHODS = frozenset({"resources/subscribe", "resources/unsubscribe"})

_LOCAL = {
    "initialize": Session._initialize,
    "ping": Session._ping,
    "server/discover": Session._discover,
}
