"""The legacy (session-based) era of the door: `initialize`, then `Mcp-Session-Id` on every request.

    POST   initialize answered by the daemon from the child's cached handshake: a new session
    POST   any other request, notification or answer, within its session
    GET    the session's stream of server notifications (SSE); with `Last-Event-ID`, a stream resumed
    DELETE the end of the session

An unknown session is 404, a missing one 400; a session answers only to the token that opened it
(404 to any other). Sessions are capped overall and per token and evicted idle-first
(`SessionTable`), and forgotten after `SESSION_IDLE` unused. Server notifications go only to
sessions with a GET stream open; a session without one is told "list again" (`list_changed`)
when it opens one, instead of keeping a backlog. With `[cluster] secret`, session ids are signed
and any node resumes them (`session_ids.py`).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc

from supervisor.errors import INVALID_REQUEST
from supervisor.wire import protocol

from . import respond
from .calls import SESSION_IDLE, SESSION_SWEEP, Call, HttpSession, _same_owner
from .replies import Receive, Send, _send_empty, _send_error
from .session_ids import SessionIds, owner_of
from .session_table import SessionTable
from .sse import _SSE_HEADERS
from .sse_polling import session_polls
from .sse_replay import ReplayStream, parse_event_id

if TYPE_CHECKING:
    from supervisor.config import HttpSettings
    from supervisor.core.sessions import Target
    from supervisor.wire.jsonrpc import Message

log = logging.getLogger("mcp_supervisor.http")

# How long a resuming GET waits for the stream it replaces to end before it is refused with 409.
TAKEOVER_TIMEOUT = 2.0
_SSE = b"text/event-stream"


class Door(Protocol):
    """What the legacy era needs of the door."""

    settings: HttpSettings
    draining: bool
    max_message: int
    session_ids: SessionIds | None
    task_group: anyio.abc.TaskGroup | None
    token_clients: dict[bytes, str | None]

    def credential(self, headers: dict[bytes, bytes]) -> bytes | None: ...
    def view_for(self, client: str, target: Target) -> Target | None: ...
    def target_of(self, path: str) -> Target | None: ...
    def batch(self) -> contextlib.AbstractContextManager[None]: ...


class Legacy:
    """The legacy era's requests and its table of sessions."""

    def __init__(self, door: Door) -> None:
        self.door = door
        settings = door.settings
        self.sessions: SessionTable[HttpSession] = SessionTable(settings.max_sessions,
                                                                settings.max_sessions_per_token)

    # ---- the sessions ---------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Forgets legacy sessions idle for `SESSION_IDLE`, every `SESSION_SWEEP`."""
        while True:
            await anyio.sleep(SESSION_SWEEP)
            for session in self.sessions.idle_since(time.monotonic() - SESSION_IDLE):
                log.info("forgetting idle HTTP session %s…", session.sid[-8:])
                self.sessions.pop(session.sid)
                session.close()

    def end_streams(self) -> None:
        """End every GET stream (the door is stopping; their clients reconnect elsewhere)."""
        for session in self.sessions:
            session.stream.push(b"")

    def close_all(self) -> None:
        for session in self.sessions:
            self.sessions.pop(session.sid)
            session.close()

    # ---- POST -----------------------------------------------------------------------------------

    async def post(self, path: str, target: Target, headers: dict[bytes, bytes], msg: Message,
                   json_ok: bool, sse_ok: bool, receive: Receive, send: Send) -> None:
        method = msg.get("method")
        if method == "initialize" and "id" in msg:
            await self._open_session(path, target, headers, msg, send)
            return
        session = await self._session(path, headers, send, msg.get("id"))
        if session is None:
            return
        door = self.door
        if "id" not in msg or method is None:
            with door.batch():
                session.on_message(msg)  # a notification, or the client's answer to a server request
            await _send_empty(send, 202)
            return
        # Taken now: routing rewrites msg["id"] in place to the child's id (no copy per call).
        client_id = msg["id"]
        call = Call(client_id, session)
        session.calls[client_id] = call

        def route() -> None:
            with door.batch():
                session.on_message(msg, call)

        def settle() -> None:
            # A dropped, unfinished resumable stream keeps its call for the reconnect.
            if session.calls.get(client_id) is call and (call.replay is None or call.replay.finished):
                del session.calls[client_id]

        await respond.answer(call, target, route, json_ok, sse_ok, None, receive, send,
                             door.settings.sse_poll_after, settle)

    async def _open_session(self, path: str, target: Target, headers: dict[bytes, bytes],
                            msg: Message, send: Send) -> None:
        door = self.door
        if door.draining:  # a balancer retries this on another node (see contrib/haproxy)
            await _send_error(send, 503, INVALID_REQUEST, "Service Unavailable: this daemon is "
                              "draining; open the session on another node", msg["id"],
                              extra=[(b"retry-after", b"1")])
            return
        owner = owner_of(door.credential(headers))
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
        opened = HttpSession(sid, path, target, max_message=door.max_message, task_group=door.task_group)
        opened.owner = (door.token_clients.get(door.credential(headers) or b"")
                        or f"anonymous:http-{sid}")
        opened.token = door.credential(headers)
        params = msg.get("params")
        opened.polls = session_polls(params.get("protocolVersion") if params.__class__ is dict else None)
        call = Call(msg["id"], opened)
        try:
            with door.batch():
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
        await respond.send_answer(call, [(b"mcp-session-id", sid.encode())] if ok else None, send)

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
        if found is None and self.door.session_ids is not None:
            found = self._resume(sid, path, headers)
        # A session belongs to the token that opened it: to any other it does not exist.
        if (found is None or found.path.rstrip("/") != path.rstrip("/")
                or not _same_owner(found.token, self.door.credential(headers))):
            await _send_error(send, 404, INVALID_REQUEST, "Not Found: unknown or expired session", msg_id)
            return None
        self.sessions.touch(found, time.monotonic())
        return found

    def _new_session_id(self, path: str, headers: dict[bytes, bytes], msg: Message) -> str:
        session_ids = self.door.session_ids
        if session_ids is None:
            return secrets.token_urlsafe(24)
        params = msg.get("params")
        params = params if params.__class__ is dict else {}
        capabilities, info = params.get("capabilities"), params.get("clientInfo")
        return session_ids.issue(
            path=path.rstrip("/"), owner=owner_of(self.door.credential(headers)),
            version=params.get("protocolVersion"),
            capabilities=capabilities if capabilities.__class__ is dict else {},
            client_info=info if info.__class__ is dict else {}, now=time.time())

    def _resume(self, sid: str, path: str, headers: dict[bytes, bytes]) -> HttpSession | None:
        """A session another node (or this one, before a restart) opened: take it up here.

        What the client negotiated comes from the signed id; what lived in the other node's
        memory is gone (requests in flight there, a GET stream's backlog), and so is state inside
        that node's child, which is why stateful servers want sticky routing."""
        door = self.door
        assert door.session_ids is not None
        claims = door.session_ids.verify(sid, time.time())
        if claims is None or claims["p"] != path.rstrip("/"):
            return None
        if not hmac.compare_digest(claims["o"], owner_of(door.credential(headers))):
            return None  # another credential's session: as unknown to it as a forged one
        target = door.target_of(path)
        if target is None or not self.sessions.make_room(claims["o"]):
            return None
        client = door.token_clients.get(door.credential(headers) or b"")
        if client is not None:  # the client's view, as for a session opened here
            target = door.view_for(client, target)
            if target is None:
                return None
        session = HttpSession(sid, path, target, max_message=door.max_message, task_group=door.task_group)
        session.owner = client or f"anonymous:http-{sid}"
        session.client_capabilities = claims["c"]
        session.client_info = claims["i"]
        session.polls = session_polls(claims.get("v"))
        session.initialized = True
        session.token = door.credential(headers)
        self.sessions.add(session, claims["o"])
        log.info("resumed HTTP session %s… opened on node %s", sid[-8:], claims.get("n"))
        return session

    # ---- GET: the session's stream, or a POST's stream resumed ----------------------------------

    async def get(self, path: str, headers: dict[bytes, bytes], receive: Receive, send: Send) -> None:
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
            await resume_call(session, stream, resume[1], receive, send)
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
            await respond.stream(session.stream, receive, send, first=(first or []) + session.list_again(),
                                 session=session)
        finally:
            session.streaming = False
            session.stream_scope = None
            session.stream_ended.set()
            if self.sessions.get(session.sid) is session:
                self.sessions.touch(session, time.monotonic())

    # ---- DELETE ---------------------------------------------------------------------------------

    async def delete(self, path: str, headers: dict[bytes, bytes], send: Send) -> None:
        session = await self._session(path, headers, send)
        if session is None:
            return
        self.sessions.pop(session.sid)
        session.close()
        await _send_empty(send, 200)


async def resume_call(session: HttpSession, stream: ReplayStream, seq: int,
                      receive: Receive, send: Send) -> None:
    """GET + Last-Event-ID of a POST stream: what it sent after `seq`, then the rest of the
    call, then the end of the stream.

    Only a call still running has one reader at a time (two would split its events). A finished
    stream is a fixed replay that any number may read: the reader that collected the answer can
    still be unwinding its response when its client, which already has the whole body, asks for
    the same id again on the same keep-alive connection."""
    call: Call = stream.call
    frames = stream.after(seq) or []
    if stream.finished:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            with anyio.move_on_after(respond.SEND_TIMEOUT):
                await send({"type": "http.response.body", "body": b"".join(frames)})
        finally:  # a client gone mid-replay still leaves the call collected, as before
            _forget_collected(session, stream, call)
        return
    if stream.taken:
        await _send_error(send, 409, INVALID_REQUEST, "Conflict: that stream is being read already")
        return
    stream.taken = True
    try:
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        async with anyio.create_task_group() as tg:
            tg.start_soon(respond.watch_disconnect, receive, tg.cancel_scope)
            await respond.pump_call(call, send, frames)
            tg.cancel_scope.cancel()
    finally:
        stream.taken = False
        _forget_collected(session, stream, call)


def _forget_collected(session: HttpSession, stream: ReplayStream, call: Call) -> None:
    """A finished call leaves the session's table of calls (its stream stays for a replay)."""
    if stream.finished and session.calls.get(call.client_id) is call:
        del session.calls[call.client_id]
