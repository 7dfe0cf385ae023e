"""The common POST answered by its connection: no ASGI cycle, no task, no await.

`fastio`'s connection offers the door each POST to /mcp… whose head and body are all in
(`FastPath.fast_request`). When it is the common case — a legacy session's request or
notification, or a 2026-07-28 request, that every check lets through — it is routed here, in the
parser's callback, to the session with a `FastCall` sink, and the answer is written to the
socket from the callback that delivers it (one write: head and JSON body). Anything else is
declined before anything changed, and the ASGI app serves it exactly as before (and so writes
every refusal: a request the door would refuse is always declined here).

The checks are the ASGI path's, in its order, against the same door state: `Host` and
duplicated headers, the token, the server, `Origin`, the client's view; Content-Type, Accept,
the body limit, JSON, the id; the era and its rules (a legacy session of this path and token, the
2026-07-28 envelope and its header agreement). Declined up front, because they need an await, a
timer or a stream: draining, a client with a rate limit (its bucket is taken on the ASGI path),
`initialize`, session resumption, SSE polling, `subscriptions/listen`, input-required retries.

Once routed, the request is its own failure domain as on the ASGI path: an exception is logged
and counted (`domains.domain`), answered 500 with -32603 and `connection: close`, and the call's
slot in the child is given back. The client hanging up cancels the call in the child. A call
that streams (progress, a child's request to its client), whose answer is 64 KiB or more, or
that needs the input-required wait carries on as ASGI (`FastRequest.escalate`) in a task of the
door's, through the same `respond.answer` as every other call.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from supervisor.core.input_required import ASKING_METHODS, Ask
from supervisor.domains import domain
from supervisor.errors import INTERNAL_ERROR
from supervisor.wire import protocol
from supervisor.wire.fastio.fast_requests import FastRequest, Receive, Send
from supervisor.wire.jsonrpc import Message, TooDeep, error_response, is_valid_id, loads

from . import policy as http_policy
from .calls import Call, HttpSession, _same_owner
from .modern import _MODERN_STATUS, _NAME_BEARING
from .replies import _JSON
from .respond import answer, give_back
from .sse_polling import poll_deadline

if TYPE_CHECKING:
    import anyio.abc

    from supervisor.config import HttpSettings
    from supervisor.core.aggregate import Aggregate
    from supervisor.core.fleet import Fleet
    from supervisor.core.input_required import InputRequired
    from supervisor.core.sessions import Target
    from supervisor.policy.ratelimit import ClientLimits

    from .legacy import Legacy
    from .modern import Modern
    from .replies import Scope


class Door(Protocol):
    """What the fast path needs of the door (`streamable.HttpDoor`): its state and its checks."""

    settings: HttpSettings
    draining: bool
    aggregate: Aggregate
    fleet: Fleet
    legacy: Legacy
    modern: Modern
    max_body: int
    input_required: InputRequired
    task_group: anyio.abc.TaskGroup | None
    token_clients: dict[bytes, str | None]
    _tokens: list[bytes]
    _hosts: frozenset[str]
    _limits: ClientLimits | None

    def credential(self, headers: dict[bytes, bytes]) -> bytes | None: ...
    def view_for(self, client: str, target: Target) -> Target | None: ...
    def batch(self) -> contextlib.AbstractContextManager[None]: ...
    def _authorized(self, given: bytes | None) -> bool: ...
    def _origin_ok(self, origin: bytes) -> bool: ...
    async def _request_failed(self, scope: Scope, send: Send, exc: Exception) -> None: ...

__all__ = ["Door", "FastCall", "FastPath"]

_JSON_HEAD = b"content-type: application/json\r\n"
# The largest JSON answer written from the delivering callback; a bigger one is sent by a task
# with the ASGI path's send timeout (a client that does not read must not hold it in memory).
MAX_FAST_ANSWER = 65536
_FAILED = orjson.dumps(error_response(
    None, INTERNAL_ERROR, "Internal error: the daemon failed on this request and ended it alone "
    "(its log says why); other requests are unaffected"))


class FastCall(Call):
    """A `Call` answered from the callback that delivers its answer (see the module docstring)."""

    __slots__ = ("json_ok", "path", "request", "sse_ok", "statuses", "streaming", "target")

    def __init__(self, path: FastPath, request: FastRequest, target: Target, client_id: Any,
                 session: HttpSession | None, json_ok: bool, sse_ok: bool,
                 statuses: dict[int, int] | None, book: Any = None, ask: Ask | None = None) -> None:
        super().__init__(client_id, session, book, ask)
        self.path = path
        self.request = request
        self.target = target
        self.json_ok = json_ok
        self.sse_ok = sse_ok
        self.statuses = statuses
        self.streaming = False  # carried on as ASGI: its task waits on `wake` like any call's

    def set(self) -> None:
        if self.streaming:
            super().set()
        else:
            self.path.woken(self)


class FastPath:
    """What the door's connections offer each whole POST to (`FastApp`).

    `legacy_taken` and `modern_taken` count the requests it took, by era (one int increment
    each; /metrics reads them at scrape time): a request counted here was routed with no ASGI
    cycle, though it may have carried on as ASGI later (a stream, a big answer)."""

    def __init__(self, door: Door) -> None:
        self.door = door
        self.legacy_taken = 0
        self.modern_taken = 0

    def taken(self) -> dict[str, int]:
        """The requests taken so far, by era."""
        return {"legacy": self.legacy_taken, "modern": self.modern_taken}

    # ---- the request -----------------------------------------------------------------------

    def fast_request(self, request: FastRequest) -> bool:
        door = self.door
        url = request.url
        if door.draining or not url.isascii() or b"?" in url or b"%" in url or b"#" in url:
            return False
        headers, refused = http_policy.screen(request.headers, door._hosts)
        if refused is not None:
            return False
        if door._tokens and not door._authorized(headers.get(b"authorization")):
            return False
        path = url.decode("latin-1")
        target: Target | None
        if path == "/mcp" or path == "/mcp/":
            target = door.aggregate
        elif path.startswith("/mcp/"):
            target = door.fleet.servers.get(path[5:].rstrip("/"))
            if target is None:
                return False
        else:
            return False
        origin = headers.get(b"origin")
        if origin is not None and not door._origin_ok(origin):
            return False
        credential = door.credential(headers) if door._tokens else None
        client = door.token_clients.get(credential or b"") if door.token_clients else None
        if client is not None:
            if door._limits is not None and door._limits.active:
                return False  # its bucket is taken (and shared in a cluster) on the ASGI path
            target = door.view_for(client, target)
            if target is None:
                return False
        if not headers.get(b"content-type", b"").startswith(_JSON):
            return False
        accept = headers.get(b"accept", b"*/*")
        json_ok = _JSON in accept or b"*/*" in accept or b"application/*" in accept
        sse_ok = b"text/event-stream" in accept or b"*/*" in accept or b"text/*" in accept
        body = request.body
        if not json_ok or len(body) > door.max_body:
            return False
        try:
            msg = loads(body)
        except (TooDeep, orjson.JSONDecodeError):
            return False
        if msg.__class__ is not dict or ("id" in msg and not is_valid_id(msg["id"])):
            return False
        version = headers.get(b"mcp-protocol-version")
        text = version.decode("latin-1") if version is not None else None
        if text is not None and text in protocol.MODERN_VERSIONS:
            if self._modern(request, target, headers, credential, text, msg, json_ok, sse_ok):
                self.modern_taken += 1
                return True
            return False
        if text is not None and text not in protocol.LEGACY_VERSIONS:
            return False
        if self._legacy(request, path, target, headers, credential, msg, json_ok, sse_ok):
            self.legacy_taken += 1
            return True
        return False

    def _legacy(self, request: FastRequest, path: str, target: Target, headers: dict[bytes, bytes],
                credential: bytes | None, msg: Message, json_ok: bool, sse_ok: bool) -> bool:
        door = self.door
        method = msg.get("method")
        if method == "initialize":
            return False
        raw = headers.get(b"mcp-session-id")
        if raw is None:
            return False
        session = door.legacy.sessions.get(raw.decode("latin-1"))  # not here: maybe resumable (ASGI)
        if (session is None or session.path.rstrip("/") != path.rstrip("/")
                or not _same_owner(session.token, credential)):
            return False
        if sse_ok and poll_deadline(door.settings.sse_poll_after, session) is not None:
            return False  # its POST stream may be let go at a deadline: a timer (ASGI)
        door.legacy.sessions.touch(session, time.monotonic())
        if "id" not in msg or method is None:
            try:
                with door.batch():
                    session.on_message(msg)  # a notification, or the client's answer to a server request
                request.respond(202, b"", b"")
            except Exception as exc:
                self._failed(request, None, exc)
            return True
        call = FastCall(self, request, target, msg["id"], session, json_ok, sse_ok, None)
        # Taken now: routing rewrites msg["id"] in place to the child's id.
        session.calls[call.client_id] = call
        self._route(call, session, msg)
        return True

    def _modern(self, request: FastRequest, target: Target, headers: dict[bytes, bytes],
                credential: bytes | None, version: str, msg: Message, json_ok: bool, sse_ok: bool) -> bool:
        door = self.door
        method = msg.get("method")
        if "id" not in msg or method is None:
            request.respond(202, b"", b"")  # no client-to-server notifications on this wire
            return True
        params = msg.get("params")
        meta = params.get("_meta") if params.__class__ is dict else None
        if (meta.__class__ is not dict or protocol.META_PROTOCOL_VERSION not in meta
                or protocol.META_CLIENT_CAPABILITIES not in meta):
            return False
        assert params is not None and meta is not None
        if (meta[protocol.META_PROTOCOL_VERSION] != version
                or headers.get(b"mcp-method", b"").decode("latin-1").strip(" \t") != method
                or method in protocol.REMOVED_IN_MODERN or method == "subscriptions/listen"):
            return False
        key = _NAME_BEARING.get(method)
        if key is not None and params.get(key) is not None:
            raw = headers.get(b"mcp-name")
            # Only the plain header form: an encoded or mismatching name is the ASGI path's.
            if raw is None or raw.startswith(b"=?") or raw.decode("latin-1").strip(" \t") != params[key]:
                return False
        asking = method in ASKING_METHODS
        if asking and ("inputResponses" in params or "requestState" in params):
            return False  # a retry of an input-required round (`book.retry`)
        book = door.input_required if asking else None
        ask = Ask(method, params, meta.get(protocol.META_CLIENT_CAPABILITIES)) if asking else None
        call = FastCall(self, request, target, msg["id"], None, json_ok, sse_ok, _MODERN_STATUS,
                        book, ask)
        call.owner = door.token_clients.get(credential or b"") or "anonymous:http"
        self._route(call, door.modern.stateless_for(target), msg)
        return True

    def _route(self, call: FastCall, session: Any, msg: Message) -> None:
        call.request.on_hang_up = call.hang_up
        try:
            with self.door.batch():
                session.on_message(msg, call)
        except Exception as exc:
            self._failed(call.request, call, exc)

    # ---- the answer ------------------------------------------------------------------------

    def woken(self, call: FastCall) -> None:
        """The call was answered, streamed something, or its client hung up."""
        try:
            if call.gone:
                self._done(call)
                call.target.cancel(call, call.client_id, "the HTTP client closed the connection")
                return
            response = call.response
            if response is not None and not call.events and call.json_ok:
                status = 200
                statuses = call.statuses
                if statuses is not None and "error" in response:
                    status = statuses.get(response["error"].get("code"), status)
                body = orjson.dumps(response)
                if len(body) < MAX_FAST_ANSWER:
                    self._done(call)
                    call.request.respond(status, _JSON_HEAD, body)
                    return
            # It streams, is big, or waits for input: on as ASGI, in a task of the door's.
            call.streaming = True
            receive, send = call.request.escalate()
            tg = self.door.task_group
            assert tg is not None
            tg.start_soon(self._carry_on, call, receive, send)
        except Exception as exc:
            self._failed(call.request, call, exc)

    async def _carry_on(self, call: FastCall, receive: Receive, send: Send) -> None:
        door = self.door
        try:
            await answer(call, call.target, None, call.json_ok, call.sse_ok, call.statuses, receive,
                         send, door.settings.sse_poll_after, lambda: self._settle(call))
        except Exception as exc:
            await door._request_failed({"method": "POST", "path": call.request.url.decode("latin-1")},
                                       send, exc)
        finally:
            call.request.ended()

    def _settle(self, call: FastCall) -> None:
        # A dropped, unfinished resumable stream keeps its call for the reconnect.
        if call.replay is None or call.replay.finished:
            self._done(call)

    def _done(self, call: FastCall) -> None:
        session = call.session
        if session is not None and session.calls.get(call.client_id) is call:
            del session.calls[call.client_id]
        self._detach(call)

    @staticmethod
    def _detach(call: FastCall) -> None:
        if call.book is not None and call.ask is not None:
            call.book.detach(call, call.ask)

    def _failed(self, request: FastRequest, call: FastCall | None, exc: Exception) -> None:
        """The request's failure domain ends: the exception is logged and counted, the call's
        slot is given back, and the client gets 500 (-32603) and a closed connection."""
        with domain("http-request", f"POST {request.url[:200].decode('latin-1')}"):
            raise exc
        if call is not None:
            with contextlib.suppress(Exception):
                give_back(call.target, call)
                self._done(call)
        if not request.response_started:
            request.keep_alive = False
            request.respond(500, _JSON_HEAD, _FAILED)
