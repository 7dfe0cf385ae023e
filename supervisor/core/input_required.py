"""Input-required translation (SEP-2322): legacy children asking, 2026-07-28 clients answering.

A legacy child that needs something from its client in the middle of a call sends a
server-to-client request (`elicitation/create`, `sampling/createMessage`, `roots/list`) and waits.
A 2026-07-28 client cannot receive requests: its server answers the call with an
`InputRequiredResult` instead, and the client retries the same call with `inputResponses` and the
`requestState` it was given. The daemon stands between the two:

    client ── tools/call ──────────────► daemon ── tools/call ─────────────► child
    client ◄─ input_required {inputRequests, requestState} ── daemon ◄─ elicitation/create (id k)
    client ── tools/call {inputResponses: {k: ...}, requestState} ──► daemon ── result (id k) ─► child
    client ◄───────────────────────────── result ─────────────────── daemon ◄─── result ──── child

The child's call stays open (it holds its slot, and its deadline still runs: a retry that never
comes frees it at `request_timeout`); a `Parked` record takes the place of the client's sink on the
child's pending request. The key of each input request is the child's own request id, so a child
names its questions (the id up to a `#`, so `user_name#7` is asked as `user_name`). Requests a
child sends together (within `GATHER`) are asked together; the next round is a new
`InputRequiredResult` with a new state.

`requestState` is `base64url(json).base64url(hmac-sha256)` under a key only this daemon knows; it
names the parked call, its round, the method and tool it belongs to, and when it expires. A state
that fails verification, has expired or belongs to another call or round is refused with -32602.
What the client may be asked is decided by the capabilities it declared on the call (-32021 with
`data.requiredCapabilities` otherwise).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import orjson

from supervisor.errors import INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND, MISSING_CLIENT_CAPABILITY
from supervisor.wire import protocol
from supervisor.wire.jsonrpc import Message, error_response

from .clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from .instance import Instance

# server-to-client request -> the client capability it needs
INPUT_METHODS = {"elicitation/create": "elicitation", "sampling/createMessage": "sampling",
                 "roots/list": "roots"}
# The requests whose answer may be an InputRequiredResult (the spec's list, less tasks/result).
ASKING_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})
GATHER = 0.03  # seconds: a child's requests this close together are one round
MAX_PARKED = 4096  # calls waiting for a retry, daemon-wide; beyond it the child's request fails
MAX_KEY = 64  # an input request key longer than this (a child's odd id) is replaced by ours


class Waiting(Protocol):
    """The door's per-request sink (the HTTP door's `Call`)."""

    client_id: Any
    response: Message | None

    def deliver(self, message: Message) -> None: ...
    def set(self) -> None: ...


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def input_key(child_id: Any, taken: dict[str, Any]) -> str:
    """The key a child's request is asked under: its id, up to a `#` (a child names its question
    `user_name#7`, so the id stays unique while the key reads as the child meant), else ours."""
    if isinstance(child_id, str):
        key = child_id.split("#", 1)[0]
        if 0 < len(key) <= MAX_KEY and key not in taken:
            return key
        if 0 < len(child_id) <= MAX_KEY and child_id not in taken:
            return child_id
    return f"input-{child_id}"


class StateSigner:
    """Seals and opens `requestState` values (HMAC-SHA256, a random key per daemon run)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def seal(self, payload: dict[str, Any]) -> str:
        body = _b64(orjson.dumps(payload))
        return body + "." + _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def open(self, token: str) -> dict[str, Any] | None:
        """The payload, or None when the token was not sealed by us (or was altered)."""
        body, dot, mac = token.partition(".")
        if not dot or len(token) > 4096:
            return None
        want = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(_unb64(mac), want):
                return None
            payload = orjson.loads(_unb64(body))
        except (ValueError, binascii.Error):
            return None
        return payload if isinstance(payload, dict) else None


class Ask:
    """What a 2026-07-28 call brings that the translation needs: who may be asked what."""

    __slots__ = ("capabilities", "method", "name", "parked", "supplied")

    def __init__(self, method: str, params: dict[str, Any], capabilities: Any) -> None:
        self.method = method
        self.name = params.get("name") if method != "resources/read" else params.get("uri")
        self.capabilities: dict[str, Any] = capabilities if isinstance(capabilities, dict) else {}
        self.supplied: dict[str, Any] = {}  # inputResponses sent up front, without a state
        self.parked: Parked | None = None


class Parked:
    """A child's call held open across its client's retries; the sink of the child's pending
    request while it lives. `asked` holds the questions not answered yet.

    Between rounds the child waits on the client, who may never come back (a stateless client
    does not say it gave up): the call then holds no slot of the child's `max_in_flight`
    (`Instance.parked` counts it), so abandoned rounds cannot starve other clients (except on a
    child with `max_in_flight = 1`: one call at a time stays one call, parked or not); their number
    is bounded by `MAX_PARKED` and their life by `request_timeout`. A retry takes the slot back
    even when others filled the child meanwhile: the child holds the call already, it cannot
    queue."""

    translates_input = True

    def __init__(self, book: InputRequired, instance: Instance, ask: Ask, expires: float) -> None:
        self.book = book
        self.id = secrets.token_urlsafe(12)
        self.instance = instance
        self.ask = ask
        self.expires = expires  # wall clock: a state past it is refused
        self.asked: dict[str, tuple[Any, dict[str, Any]]] = {}  # key -> (child id, request)
        self.call: Waiting | None = None  # the client's request waiting on us now
        self.round = 0
        self.final: Message | None = None
        self.ended = False  # forgotten: the child's call is over
        self.holding = False  # counted in `instance.parked`

    def sync(self) -> None:
        """Keep `instance.parked` in step with whether this call now waits on its client."""
        waiting = self.awaiting_client and not self.ended
        if waiting is self.holding:
            return
        self.holding = waiting
        instance = self.instance
        instance.parked += 1 if waiting else -1
        if waiting:
            slot_freed = getattr(instance.owner, "slot_freed", None)
            if slot_freed is not None:
                slot_freed()

    @property
    def awaiting_client(self) -> bool:
        """Between rounds the child waits for the client: it cannot be the one asking now."""
        return self.call is None and bool(self.asked)

    # ---- as the child's pending request's sink ------------------------------------------------

    def deliver(self, message: Message) -> None:
        call = self.call
        if "method" in message:
            if call is not None:
                call.deliver(message)
            return
        self.book.forget(self)
        if call is not None:
            self.call = None
            call.deliver({**message, "id": call.client_id})
        else:
            self.final = message

    def forward_server_request(self, instance: Instance, message: Message) -> bool:
        return self.book.child_asks(self.ask, self.call, instance, message)

    # ---- rounds ---------------------------------------------------------------------------------

    def input_required(self, call: Waiting) -> None:
        """Answer `call` with the questions still open and a state for the next retry."""
        self.round += 1
        state = self.book.signer.seal({"p": self.id, "r": self.round, "m": self.ask.method,
                                       "n": self.ask.name, "x": round(self.expires, 3)})
        self.call = None
        call.response = {"jsonrpc": "2.0", "id": call.client_id, "result": {
            "resultType": "input_required",
            "inputRequests": {key: request for key, (_, request) in self.asked.items()},
            "requestState": state}}
        self.sync()


class InputRequired:
    """The daemon's table of parked calls and the rules of the translation."""

    def __init__(self, signer: StateSigner | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.signer = signer or StateSigner()
        self.clock = clock  # wall time: when a state expires
        self.parked: dict[str, Parked] = {}

    def forget(self, parked: Parked) -> None:
        self.parked.pop(parked.id, None)
        parked.ended = True
        parked.sync()

    # ---- the child asks -------------------------------------------------------------------------

    def child_asks(self, ask: Ask, call: Waiting | None, instance: Instance, message: Message) -> bool:
        """A legacy child's request during a 2026-07-28 call. True when handled here."""
        method = message["method"]
        capability = INPUT_METHODS.get(method)
        child_id = message["id"]
        if capability is None:
            instance.send(error_response(child_id, METHOD_NOT_FOUND,
                                         f"mcp-supervisor cannot pass {method} to a 2026-07-28 client"))
            return True
        # The refusals below are the client's or its protocol's, not the child's trouble: they
        # are -32601 (the client offers no such method), so the child's call, which may fail on
        # them, does not count against the child's circuit breaker as an internal error would.
        if ask.method not in ASKING_METHODS:
            instance.send(error_response(
                child_id, METHOD_NOT_FOUND, f"{method} during {ask.method}: a 2026-07-28 client can only "
                "be asked for input during tools/call, prompts/get or resources/read"))
            return True
        if capability not in ask.capabilities:
            if capability == "roots":  # nothing to ask: the daemon's answer (no roots) stands
                instance.send({"jsonrpc": "2.0", "id": child_id, "result": {"roots": []}})
                return True
            instance.send(error_response(child_id, METHOD_NOT_FOUND,
                                         f"the client did not declare the '{capability}' capability"))
            if call is not None and call.response is None:
                self._refuse_missing(ask, call, instance, capability)
            return True
        parked = ask.parked
        if parked is None:
            if call is None:
                return False
            if len(self.parked) >= MAX_PARKED:
                instance.send(error_response(child_id, INTERNAL_ERROR,
                                             "mcp-supervisor: too many calls waiting for client input"))
                return True
            found = next((p for p in instance.pending.values() if p.sink is call), None)
            if found is None:
                return False
            # The state lives as long as the child's call: its deadline, on the instance's clock.
            left = max(0.0, found.deadline - instance.clock.monotonic())
            parked = Parked(self, instance, ask, self.clock.time() + left)
            found.sink = parked
            ask.parked = parked
            parked.call = call
            self.parked[parked.id] = parked
        key = input_key(child_id, parked.asked)
        if key in ask.supplied:
            instance.send({"jsonrpc": "2.0", "id": child_id, "result": ask.supplied.pop(key)})
            return True
        request: dict[str, Any] = {"method": method}
        if "params" in message:
            request["params"] = message["params"]
        parked.asked[key] = (child_id, request)
        if parked.call is not None:
            parked.call.set()
        return True

    def _refuse_missing(self, ask: Ask, call: Waiting, instance: Instance, capability: str) -> None:
        call.deliver(error_response(
            call.client_id, MISSING_CLIENT_CAPABILITY,
            f"Missing required client capability: this call needs '{capability}', which the "
            "request's clientCapabilities do not declare",
            {"requiredCapabilities": {capability: {}}}))
        parked = ask.parked
        if parked is not None:  # a later round: end the held call in the child
            self.forget(parked)
            parked.call = None
        owner = instance.owner
        cancel = getattr(owner, "cancel", None)
        sink = parked if parked is not None else call
        if cancel is not None:
            for pending in list(instance.pending.values()):
                if pending.sink is sink:
                    cancel(sink, pending.client_id, "the client lacks a required capability")
                    break

    async def gather(self, call: Waiting, ask: Ask) -> bool:
        """Called by the waiting request when woken: True once `call` has its answer set."""
        parked = ask.parked
        if parked is None or parked.call is not call or not parked.asked or call.response is not None:
            return False
        await anyio.sleep(GATHER)  # siblings the child sends at once belong to the same round
        if call.response is None and parked.call is call:
            parked.input_required(call)
        return call.response is not None

    # ---- the client retries -----------------------------------------------------------------------

    def retry(self, msg: Message, params: dict[str, Any], ask: Ask, call: Waiting) -> bool:
        """A call that carries `inputResponses` / `requestState`. Returns True when it is answered
        or resumed here; False when it should be routed as a new call (its up-front responses kept
        in `ask.supplied`)."""
        responses = params.pop("inputResponses", None)
        state = params.pop("requestState", None)
        if responses is not None and (not isinstance(responses, dict)
                                      or not all(isinstance(v, dict) for v in responses.values())):
            call.deliver(error_response(call.client_id, INVALID_PARAMS,
                                        "Invalid params: inputResponses must map each input request "
                                        "key to its result object"))
            return True
        responses = responses or {}
        if state is None:
            ask.supplied = dict(responses)
            return False
        problem = self._check_state(state, ask)
        if isinstance(problem, str):
            call.deliver(error_response(call.client_id, INVALID_PARAMS, f"Invalid params: {problem}"))
            return True
        parked = problem
        parked.call = call
        parked.sync()  # the child works for a client again: the call takes a slot back
        ask.parked = parked
        parked.ask.capabilities = ask.capabilities  # this retry's declaration applies from now on
        ask.supplied = parked.ask.supplied
        parked.ask = ask
        for key in [k for k in parked.asked if k in responses]:
            child_id, _ = parked.asked.pop(key)
            parked.instance.send({"jsonrpc": "2.0", "id": child_id, "result": responses[key]})
        if parked.final is not None:
            final, parked.final = parked.final, None
            parked.call = None
            call.deliver({**final, "id": call.client_id})
        elif parked.asked:
            call.set()
        return True

    def _check_state(self, state: Any, ask: Ask) -> Parked | str:
        if not isinstance(state, str):
            return "requestState must be the string the server sent"
        payload = self.signer.open(state)
        if payload is None:
            return ("requestState failed its integrity check (it was not issued by this server, "
                    "or was altered)")
        if not isinstance(payload.get("x"), int | float) or payload["x"] < self.clock.time():
            return "requestState has expired; send the request again without it"
        if payload.get("m") != ask.method or payload.get("n") != ask.name:
            return "requestState belongs to a different request"
        parked = self.parked.get(str(payload.get("p")))
        if parked is None or payload.get("r") != parked.round:
            return "requestState refers to a round that is over (the call ended or was retried)"
        if parked.call is not None:
            return "requestState is already being retried by another request"
        return parked

    def detach(self, call: Waiting, ask: Ask) -> None:
        """The client's request ended (answered or gone): a parked call no longer waits on it."""
        parked = ask.parked
        if parked is not None and parked.call is call:
            parked.call = None
            parked.sync()


class SessionRequest:
    """One 2026-07-28 request of a byte-stream session (the bridge, the control socket): the
    answer goes out on the session; when the child asks for input, the answer is an
    InputRequiredResult, sent `GATHER` after the first question by a task of the session's."""

    translates_input = True

    def __init__(self, book: InputRequired, session: Any, client_id: Any, ask: Ask,
                 task_group: anyio.abc.TaskGroup | None) -> None:
        self.book = book
        self.session = session
        self.client_id = client_id
        self.ask = ask
        self.response: Message | None = None
        self._tg = task_group
        self._gathering = False

    def deliver(self, message: Message) -> None:
        if "method" in message:
            self.session.deliver(message)
        elif self.response is None:
            self.response = message
            self.session.requests.discard(self)
            self.session.deliver(message)

    def set(self) -> None:
        """The child asked something (`child_asks`): answer input_required once its siblings
        are in."""
        if self._gathering or self.response is not None:
            return
        if self._tg is None:
            self._finish()
            return
        self._gathering = True
        self._tg.start_soon(self._gather)

    async def _gather(self) -> None:
        await anyio.sleep(GATHER)
        self._finish()

    def _finish(self) -> None:
        parked = self.ask.parked
        if self.response is None and parked is not None and parked.call is self and parked.asked:
            parked.input_required(self)
            assert self.response is not None
            self.session.requests.discard(self)
            self.session.deliver(self.response)

    def forward_server_request(self, instance: Instance, message: Message) -> bool:
        return self.book.child_asks(self.ask, self, instance, message)


_BOOK: InputRequired | None = None


def book() -> InputRequired:
    """The daemon's one table of parked calls, shared by every door, so a retry may come back by
    any of them (the signing key lives as long as the process)."""
    global _BOOK
    if _BOOK is None:
        _BOOK = InputRequired()
    return _BOOK


def session_request(session: Any, msg: Message, params: dict[str, Any], meta: dict[str, Any],
                    task_group: anyio.abc.TaskGroup | None) -> tuple[SessionRequest, bool]:
    """The sink for a 2026-07-28 request of a byte-stream session, and whether the request goes
    on to the child (False: a retry, answered here or resuming a parked call)."""
    table = book()
    ask = Ask(msg["method"], params, meta.get(protocol.META_CLIENT_CAPABILITIES))
    sink = SessionRequest(table, session, msg["id"], ask, task_group)
    if ("inputResponses" in params or "requestState" in params) and table.retry(msg, params, ask, sink):
        return sink, False
    return sink, True
