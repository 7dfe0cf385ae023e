"""The 2026-07-28 (stateless) era of the door: each POST is one call, with nothing kept between them.

The envelope rides in `params._meta` (protocol version, client capabilities); the `Mcp-Method`
and `Mcp-Name` headers must agree with the body, else 400 with -32020; closing the response
stream cancels the call (there are no client-to-server notifications on this wire). A call whose
legacy child asks the client something is answered `input_required` and retried
(`core/input_required.py`). `subscriptions/listen` is a long-lived SSE stream of `list_changed`
(and, with the tasks extension, task) notifications.
"""

from __future__ import annotations

import base64
import contextlib
from typing import TYPE_CHECKING, Any, Protocol

import anyio.abc

from supervisor.core import tasks
from supervisor.core.input_required import ASKING_METHODS, Ask, InputRequired
from supervisor.errors import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MISSING_CLIENT_CAPABILITY,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
)
from supervisor.wire import protocol
from supervisor.wire.outbox import Outbox

from . import respond
from .calls import Call, _Listen, _Stateless
from .replies import Receive, Send, _send_empty, _send_error, _send_json
from .sse import sse_event

if TYPE_CHECKING:
    from supervisor.config import HttpSettings
    from supervisor.core.sessions import Target
    from supervisor.wire.jsonrpc import Message

_NAME_BEARING = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri",
                 # SEP-2663: Mcp-Name carries the task id, so a balancer can route by it
                 "tasks/get": "taskId", "tasks/update": "taskId", "tasks/cancel": "taskId"}
# JSON-RPC error code -> HTTP status for 2026-07-28 answers (what the official SDK server does).
_MODERN_STATUS = {PARSE_ERROR: 400, INVALID_REQUEST: 400, INVALID_PARAMS: 400, HEADER_MISMATCH: 400,
                  UNSUPPORTED_PROTOCOL_VERSION: 400, MISSING_CLIENT_CAPABILITY: 400,
                  METHOD_NOT_FOUND: 404}


def _decode_header_value(raw: str) -> str | None:
    """`Mcp-Name` values that are not plain ASCII travel as `=?base64?...?=`."""
    if raw.startswith("=?base64?") and raw.endswith("?="):
        try:
            return base64.b64decode(raw[9:-2], validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
    return raw


class Door(Protocol):
    """What the 2026-07-28 era needs of the door."""

    settings: HttpSettings
    max_message: int
    input_required: InputRequired
    task_group: anyio.abc.TaskGroup | None
    token_clients: dict[bytes, str | None]

    def credential(self, headers: dict[bytes, bytes]) -> bytes | None: ...
    def batch(self) -> contextlib.AbstractContextManager[None]: ...


class Modern:
    """The 2026-07-28 era's calls and `subscriptions/listen` streams."""

    def __init__(self, door: Door) -> None:
        self.door = door
        self._stateless: dict[int, _Stateless] = {}
        self._listeners: set[_Listen] = set()

    def end_streams(self) -> None:
        """End every listen stream (the door is stopping; their clients reconnect elsewhere)."""
        for listener in self._listeners:
            listener.stream.push(b"")

    async def post(self, target: Target, headers: dict[bytes, bytes], version: str, msg: Message,
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
        door = self.door
        # Only the methods whose legacy child may ask the client something take part in the
        # input-required book; every other call is routed as it is.
        asking = method in ASKING_METHODS
        book = door.input_required if asking else None
        ask = Ask(method, params, meta.get(protocol.META_CLIENT_CAPABILITIES)) if asking else None
        call = Call(mid, None, book, ask)
        call.owner = door.token_clients.get(door.credential(headers) or b"") or "anonymous:http"

        def route() -> None:
            retried = (book is not None and ask is not None
                       and ("inputResponses" in params or "requestState" in params)
                       and book.retry(msg, params, ask, call))
            if not retried:
                with door.batch():
                    self.stateless_for(target).on_message(msg, call)

        def settle() -> None:
            if book is not None and ask is not None:
                book.detach(call, ask)

        await respond.answer(call, target, route, json_ok, sse_ok, _MODERN_STATUS, receive, send,
                             door.settings.sse_poll_after, settle)

    def stateless_for(self, target: Target) -> _Stateless:
        session = self._stateless.get(id(target))
        if session is None or session.closed or session.server is not target:
            session = _Stateless(target, Outbox(), max_message=self.door.max_message,
                                 task_group=self.door.task_group, client="http-stateless")
            session.modern = True
            self._stateless[id(target)] = session
        return session

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
            door = self.door
            honoured["taskIds"] = book.watch(listener, watched, door.token_clients.get(
                door.credential(headers) or b""))
            kinds.add("notifications/tasks")
        ack = sse_event({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
                         "params": {"notifications": honoured,
                                    "_meta": {protocol.META_SUBSCRIPTION_ID: msg["id"]}}})
        target.sessions.add(listener)
        self._listeners.add(listener)
        try:
            await respond.stream(listener.stream, receive, send, first=[ack])
        finally:
            target.sessions.discard(listener)
            self._listeners.discard(listener)
            if book is not None:
                book.unwatch(listener)
