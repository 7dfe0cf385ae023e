"""The sinks HTTP requests are answered through, by era.

    Call          one HTTP request (either era): its answer, and what the child streams before it
    HttpSession   a legacy (`Mcp-Session-Id`) session: notifications go to its GET stream while one
                  is open, else it remembers which lists changed (`list_again`)
    _Stateless    routes 2026-07-28 requests of one target; answers go to each request's `Call`
    _Listen       a 2026-07-28 `subscriptions/listen` stream of `list_changed` notifications
"""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import anyio.abc

from supervisor.core.input_required import Ask, InputRequired
from supervisor.core.sessions import Session, Target
from supervisor.telemetry import tracing
from supervisor.wire import protocol
from supervisor.wire.jsonrpc import Message, notification
from supervisor.wire.outbox import Outbox

from .sse import _Stream, sse_event
from .sse_replay import ReplayStream, SessionStreams

if TYPE_CHECKING:
    from supervisor.core.instance import Instance
    from supervisor.core.server import Server

SESSION_IDLE = 3600.0  # a legacy session unused this long is forgotten
SESSION_SWEEP = 30.0
# A session without a GET stream does not queue server notifications; when it opens one it is
# told to list again instead (one notification per kind it missed).
_LIST_AGAIN = {**{changed: changed for changed in protocol.LIST_CHANGED},
               "notifications/resources/updated": "notifications/resources/list_changed"}


class Call:
    """The sink for one HTTP request: its answer, and what the child streams before it.

    The request's task waits on a bare asyncio future (the door only runs on asyncio, under
    uvicorn): an `anyio.Event` per call cost a backend lookup, an `asyncio.Event` and its loop
    check (a getpid syscall on Python 3.11) for every request."""

    __slots__ = ("ask", "book", "client_id", "events", "gone", "owner", "replay", "response", "session",
                 "span", "wake")

    def __init__(self, client_id: Any, session: HttpSession | None, book: InputRequired | None = None,
                 ask: Ask | None = None) -> None:
        self.client_id = client_id
        self.session = session
        self.owner: str | None = None  # a stateless call's client identity (per-client instances)
        self.book = book  # a 2026-07-28 call that may be answered input_required
        self.ask = ask
        self.replay: ReplayStream | None = None  # a legacy session's resumable answer stream
        self.response: Message | None = None
        self.events: list[Message] = []
        self.wake: asyncio.Future[None] | None = None
        self.gone = False  # the client hung up before the answer
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

    def hang_up(self) -> None:
        """The client closed the connection this call waits on (`fastio.watch_hang_up`)."""
        self.gone = True
        self.set()

    def set(self) -> None:
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    @property
    def translates_input(self) -> bool:
        return self.ask is not None

    def forward_server_request(self, instance: Instance, message: Message) -> bool:
        """A legacy child asks the client something (sampling, elicitation) during this call: a
        legacy session gets the request on this call's stream; a 2026-07-28 call is answered
        input_required (`input_required.py`)."""
        if self.session is None:
            if self.book is None or self.ask is None:
                return False
            return self.book.child_asks(self.ask, self, instance, message)
        self.deliver(self.session.server_request_for(instance, message))
        return True

    async def wait(self) -> None:
        book, ask = self.book, self.ask
        if ask is not None and book is not None and await book.gather(self, ask):
            return
        if self.response is None and not self.events:
            wake = self.wake = asyncio.get_running_loop().create_future()
            try:
                await wake
            finally:
                self.wake = None
            if ask is not None and book is not None:
                await book.gather(self, ask)


class HttpSession(Session):
    """A legacy (`Mcp-Session-Id`) client. Answers go to each request's `Call`; server
    notifications go to the session's GET stream while one is open. Without one they are not
    kept (an idle session must not hold a copy of every notification): the session remembers
    which lists changed and says so when a stream opens."""

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
        # The open GET stream's scope, and an event set when it has ended: a resuming GET takes
        # the stream over from one whose client has gone but whose end was not noticed yet.
        self.stream_scope: anyio.CancelScope | None = None
        self.stream_ended = anyio.Event()
        self.replay = SessionStreams()  # resumable SSE streams (`sse_replay.py`)
        self.get_replay, _ = self.replay.open()
        self.token: bytes | None = None  # the client token that opened it (None: no tokens set)
        self.missed: set[str] = set()  # list_changed methods to send when a stream opens
        self.polls = False  # 2025-11-25 or later: a slow call's POST stream may be let go (`sse_polling.py`)

    @property
    def busy(self) -> bool:
        """In use right now: not to be evicted for a newcomer."""
        return self.streaming or bool(self.calls)

    TRANSPORT = "tcp"

    def trace_session_id(self) -> str | None:
        return self.sid

    def deliver(self, message: Message) -> None:
        self.stream.push(self.get_replay.frame(message))

    def resumable(self, call: Call) -> ReplayStream:
        """A numbered, replayable stream for `call`'s answer; calls whose streams had to make
        room are cancelled (their answers could never be collected)."""
        stream, evicted = self.replay.open(call)
        for old in evicted:
            if old.call is not None and old.call.response is None:
                self.server.cancel(old.call, old.call.client_id, "its SSE stream was dropped and "
                                   "not resumed")
                self.calls.pop(old.call.client_id, None)
        return stream

    def server_notification(self, server: Server, message: Message) -> None:
        if self.streaming:
            self.deliver(message)  # numbered in the GET stream's replay buffer
            return
        again = _LIST_AGAIN.get(message.get("method", ""))
        if again is not None:
            self.missed.add(again)

    def list_again(self) -> list[bytes]:
        """The `list_changed` frames for what changed while no stream was open."""
        frames = [self.get_replay.frame(notification(method)) for method in sorted(self.missed)]
        self.missed.clear()
        return frames

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

    def task_notification(self, message: Message) -> None:
        """`notifications/tasks` of a task this stream follows (`tasks.TaskBook.watch`)."""
        self.server_notification(None, message)


def _same_owner(owner: bytes | None, caller: bytes | None) -> bool:
    if owner is None or caller is None:
        return owner is caller
    return hmac.compare_digest(owner, caller)
