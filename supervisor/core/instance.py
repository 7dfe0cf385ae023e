"""One running child process: the handshake, the pipes, and the table that remaps request ids.

The hot path lives here. A request from any client is rewritten in place (our id, our progress
token, the 2026-07-28 envelope when the child needs it), remembered in `pending` and pushed onto the
child's stdin outbox; the reader task routes each reply straight to the waiting client's sink. No
task or future per request: routing is a dict lookup and a push.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from supervisor.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MESSAGE_TOO_LARGE,
    SpawnError,
    SupervisorError,
    UpstreamGone,
    UpstreamTimeout,
    gone,
    timed_out,
)
from supervisor.policy.outcome import Outcome
from supervisor.policy.samples import BAD_SAMPLES, Consecutive, cpu_share
from supervisor.telemetry import tracing
from supervisor.telemetry.logs import REDACT, LineRing
from supervisor.wire import fastio, protocol
from supervisor.wire.first_answer import FirstAnswer
from supervisor.wire.jsonrpc import (
    MAX_DEPTH,
    LineSplitter,
    Message,
    Oversized,
    Sink,
    TooDeep,
    encode,
    error_response,
    head_id,
    is_valid_id,
    loads,
)
from supervisor.wire.outbox import DEFAULT_LIMIT, Outbox, OutboxOverflow, batch

from . import process
from .clock import SYSTEM_CLOCK, Clock

log = logging.getLogger("mcp_supervisor.instance")

STDERR_LINES = 50  # the last lines of one child, for its exit reason (the server keeps the long ring)
STDERR_BYTES = 64 * 1024
PROBE_TIMEOUT = 3.0


class InstanceOwner(Protocol):
    """The callbacks an instance makes into its `Server`."""

    def request_done(self, instance: Instance, pending: Pending, outcome: Outcome = ...) -> None:
        """`pending` ended: how (`Outcome`) decides the counters, the breaker and the span."""
    def child_notification(self, instance: Instance, message: Message) -> None: ...
    def child_request(self, instance: Instance, message: Message) -> None: ...
    def child_stderr(self, instance: Instance, line: str) -> None: ...
    def child_protocol_error(self, instance: Instance) -> None:
        """The child sent something that is not valid MCP (counted; the message was dropped)."""


class Pending:
    """A request the child has and has not answered yet."""

    __slots__ = ("client_id", "deadline", "method", "modernize", "progress_token", "sink", "span",
                 "started", "tool")

    def __init__(self, sink: Sink, client_id: Any, method: str, deadline: float,
                 progress_token: Any, tool: str | None, started: float, modernize: bool) -> None:
        self.sink = sink
        self.modernize = modernize  # a 2026-07-28 client talking to a legacy child
        self.client_id = client_id
        self.method = method
        self.deadline = deadline
        self.progress_token = progress_token
        self.tool = tool
        self.started = started
        self.span: Any = None  # the call's trace span, with [tracing] on


class Waiter(FirstAnswer):
    """A sink for the daemon's own requests (handshake, lists, probes): one answer, awaited. Its
    own type, so the server can tell these requests from client traffic."""

    __slots__ = ()


class _Answer(Waiter):
    """One handshake answer; wakes the handshake, which waits on either of two."""

    __slots__ = ("progress",)

    def __init__(self, progress: anyio.Event) -> None:
        super().__init__()
        self.progress = progress

    def deliver(self, message: Message) -> None:
        first = self.message is None
        super().deliver(message)
        if first and self.message is not None:
            self.progress.set()

    def pending(self, instance: Instance) -> bool:
        return any(p.sink is self for p in instance.pending.values())


class ExitInfo:
    """How an instance ended."""

    __slots__ = ("before_ready", "error", "junk_lines", "last_stderr", "returncode", "signal")

    def __init__(self, returncode: int | None, before_ready: bool, last_stderr: list[str],
                 junk_lines: int) -> None:
        self.returncode = returncode
        self.before_ready = before_ready
        self.last_stderr = last_stderr
        self.junk_lines = junk_lines
        self.signal = -returncode if returncode is not None and returncode < 0 else None
        self.error: str | None = None  # the handshake failed while the child was still running

    def describe(self) -> str:
        if self.error:
            return self.error
        if self.signal is not None:
            how = f"killed by signal {self.signal}"
        elif self.returncode is None:
            how = "closed its stdout"
        else:
            how = f"exited with code {self.returncode}"
        return how + (" before answering the handshake" if self.before_ready else "")


class HandshakeError(SupervisorError):
    """The child answered the handshake with something we cannot use."""


class Instance:
    """A child process speaking MCP over stdio, from spawn to reaped."""

    def __init__(self, *, server: str, index: int, argv: list[str], env: dict[str, str],
                 cwd: str | None, owner: InstanceOwner, init_timeout: float, stop_timeout: float,
                 max_message: int, roots: tuple[str, ...] = (), era_hint: str | None = None,
                 on_spawn: Callable[[process.ProcessRecord], None] | None = None,
                 on_reaped: Callable[[int], None] | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.server = server
        self.clock = clock
        self._monotonic = clock.monotonic
        self.index = index
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.owner = owner
        self.init_timeout = init_timeout
        self.stop_timeout = stop_timeout
        self.max_message = max_message
        self.roots = roots
        self.era_hint = era_hint  # "legacy": it spoke initialize last time; say that first
        self._on_spawn = on_spawn
        self._on_reaped = on_reaped

        self.pid: int | None = None
        self.started_at: float | None = None  # wall clock, when it became ready
        self.modern = False
        self.protocol_version: str | None = None
        self.init_result: dict[str, Any] | None = None  # legacy initialize result
        self.discover_result: dict[str, Any] | None = None  # modern discover result
        self.capabilities: dict[str, Any] = {}
        self.server_info: dict[str, Any] = {}
        self.ready = False
        self.draining = False
        self.pending: dict[int, Pending] = {}
        self.stderr_tail = LineRing(STDERR_LINES, STDERR_BYTES)
        self.junk_lines = 0
        self.oversized = 0
        self.memory_bytes: int | None = None
        self.memory_precise = False  # memory_bytes is PSS (read because RSS was over a limit)
        self.process_count = 0
        # CPU of the whole tree: the last reading and the share of a core
        # between the last two (`took_sample`).
        self.cpu_seconds: float | None = None
        self.cpu_at: float | None = None
        self.cpu_share: float | None = None
        # Health: consecutive failed probes and memory samples over the limit (the Server sets
        # the thresholds), and, once the supervisor decided to replace this child, why.
        self.unhealthy = Consecutive(2)
        self.over_memory = Consecutive(BAD_SAMPLES)
        self.scope: anyio.CancelScope | None = None  # cancelling it ends this child (restart)
        self.restart_kind: str | None = None
        self.restart_reason: str | None = None
        self.drained = anyio.Event()  # set when a draining child's last request finished

        self._next_id = 1
        # The bytes waiting for the child's stdin are bounded: admission says busy before
        # `stdin_busy_at` (one whole message below the bound, so an admitted request never
        # overflows it), and an overflow (the daemon's own writes, a child that stopped reading)
        # restarts this child.
        self._stdin = Outbox(max(DEFAULT_LIMIT, 4 * max_message))
        self.stdin_busy_at = self._stdin.limit - max_message
        self._stdin_transport: fastio.WriteBuffered | None = None
        self.protocol_errors = 0
        self.overflow: str | None = None
        self._stdout_closed = anyio.Event()
        self._stderr_closed = anyio.Event()
        self._gone = anyio.Event()
        self.tools: list[dict[str, Any]] = []
        self._process: anyio.abc.Process | None = None
        self._stop_requested = False
        self._envelope = protocol.modern_envelope()
        # Of `pending`, the calls parked for their client's input_required retry: the child waits
        # on the client there, so they hold no slot (`max_in_flight`); `input_required.py` counts.
        self.parked = 0

    def took_sample(self, memory: int, processes: int, precise: bool, cpu_seconds: float | None,
                    now: float) -> None:
        """A sample of this child's process tree (from the health loop, through its server):
        memory, process count, and its CPU seconds so far, which the previous reading makes a
        share of a core."""
        self.memory_bytes, self.process_count, self.memory_precise = memory, processes, precise
        if cpu_seconds is not None:
            share = cpu_share(self.cpu_seconds, self.cpu_at, cpu_seconds, now)
            if share is not None:
                self.cpu_share = share
            self.cpu_seconds = cpu_seconds
            self.cpu_at = now

    # ---- the hot path -------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self.pending)

    @property
    def stdin_backlog(self) -> int:
        """Bytes waiting for the child to read them: in our outbox and in the pipe transport's
        own buffer (where a batch being written sits)."""
        transport = self._stdin_transport
        return self._stdin.size + (transport.get_write_buffer_size() if transport is not None else 0)

    def forward(self, sink: Sink, message: Message, deadline: float, client_modern: bool) -> int:
        """Send a client's request to the child under our own id; the answer goes to `sink`."""
        cid = self._next_id
        self._next_id = cid + 1
        client_id = message["id"]
        message["id"] = cid
        params = message.get("params")
        token = None
        tool = None
        if params.__class__ is dict:
            meta = params.get("_meta")
            if meta.__class__ is dict:
                token = meta.get("progressToken")
                if token is not None:
                    meta = dict(meta)
                    meta["progressToken"] = cid
                    params = dict(params)
                    params["_meta"] = meta
                    message["params"] = params
                if self.modern and protocol.META_PROTOCOL_VERSION not in meta:
                    params = dict(params)
                    params["_meta"] = {**self._envelope, **meta}
                    message["params"] = params
            elif self.modern:
                params = dict(params)
                params["_meta"] = self._envelope
                message["params"] = params
            tool = params.get("name") if message["method"] == "tools/call" else None
        elif self.modern:
            message["params"] = {"_meta": self._envelope}
        span = None
        active = tracing.active
        if active is not None and params.__class__ is dict:
            meta = params.get("_meta")
            if meta.__class__ is dict and "traceparent" in meta:  # the session started a trace
                span = active.child_span(message, self.server)  # (writes its context into meta)
        try:
            line = encode(message)
        except TypeError as exc:  # orjson: nested deeper than it writes. Never reached the child,
            message["id"] = client_id  # so it takes no slot and is no failure of the server's.
            if span is not None and active is not None:
                active.end(span, None, "invalid_request")
            sink.deliver(error_response(client_id, INVALID_REQUEST,
                                        f"Invalid Request: cannot be forwarded to the server: {exc}"))
            return cid
        pending = self.pending[cid] = Pending(sink, client_id, message["method"], deadline, token, tool,
                                              self._monotonic(), client_modern and not self.modern)
        pending.span = span
        self._stdin.push(line)
        return cid

    def _on_line(self, line: bytes | Oversized) -> None:
        """One line from the child: everything in it is checked for type and shape before use
        (ids before any lookup); what is not valid MCP is a counted protocol error and dropped,
        and a caller whose answer it was hears an error at once."""
        if isinstance(line, Oversized):
            self._oversized(line)
            return
        try:
            msg = loads(line)
        except TooDeep as exc:
            self._protocol_error(f"a message nested deeper than {MAX_DEPTH} levels")
            if exc.msg_id.__class__ is int:
                self._answer_unusable(exc.msg_id, f"an answer nested deeper than {MAX_DEPTH} levels")
            return
        except ValueError:
            self._junk(line)
            return
        if msg.__class__ is not dict:
            self._junk(line)
            return
        method = msg.get("method")
        if method is None:
            mid = msg.get("id")
            if mid.__class__ is not int:
                self._protocol_error(f"an answer whose id {_short(mid)} is not one we sent")
                return
            pending = self.pending.pop(mid, None)
            if pending is None:
                return  # answer to a request we cancelled or timed out: nobody waits for it
            error = msg.get("error")
            if error is None:
                if msg.get("result").__class__ is not dict:
                    self._unusable(pending, "an answer without a result object")
                    return
            elif error.__class__ is not dict or "result" in msg or error.get("code").__class__ is not int \
                    or error.get("message").__class__ is not str:
                self._unusable(pending, "an error that is not {code: integer, message: string}")
                return
            msg["id"] = pending.client_id
            if pending.modernize:
                protocol.modernize_result(msg, pending.method)
            pending.sink.deliver(msg)
            if error is None:
                self.owner.request_done(self, pending, Outcome.OK)
            else:  # an internal error says the server is in trouble; others are the caller's
                self.owner.request_done(self, pending, Outcome.INTERNAL
                                        if error["code"] == INTERNAL_ERROR else Outcome.ERROR)
        elif method.__class__ is not str:
            self._protocol_error(f"a message whose method {_short(method)} is not a string")
        elif (params := msg.get("params")) is not None and params.__class__ is not dict:
            self._protocol_error(f"{method} with params that are not an object")
            if is_valid_id(msg.get("id")):
                self.send(error_response(msg["id"], INVALID_PARAMS, "Invalid params: must be an object"))
        elif "id" in msg:
            if not is_valid_id(msg["id"]):
                self._protocol_error(f"a {method} request whose id {_short(msg['id'])} is not valid")
                return
            self._on_child_request(msg)
        else:
            self._on_child_notification(msg)

    def _protocol_error(self, what: str) -> None:
        self.protocol_errors += 1
        self.owner.child_protocol_error(self)
        if self.protocol_errors <= 20 or self.protocol_errors % 1000 == 0:
            log.warning("%s: dropped invalid MCP from the child (#%d): %s", self.server,
                        self.protocol_errors, what)

    def _unusable(self, pending: Pending, what: str) -> None:
        """The child answered `pending` with something we cannot pass on: its caller hears so."""
        self._protocol_error(f"{what} (to {pending.method})")
        pending.sink.deliver(error_response(
            pending.client_id, INTERNAL_ERROR,
            f"server '{self.server}' sent an invalid answer to {pending.method}: {what}",
            {"server": self.server}))
        self.owner.request_done(self, pending, Outcome.INTERNAL)

    def _answer_unusable(self, cid: int, what: str) -> None:
        pending = self.pending.pop(cid, None)
        if pending is not None:
            self._unusable(pending, what)

    def _oversized(self, line: Oversized) -> None:
        """An answer over the size limit was dropped; its caller (the id is in the line's head)
        hears that at once instead of waiting for its deadline."""
        self.oversized += 1
        log.warning("%s: dropped a %d-byte message from the child (limit %d)",
                    self.server, line.size, self.max_message)
        cid = head_id(line.head)
        pending = self.pending.pop(cid, None) if cid is not None else None
        if pending is None:
            return
        pending.sink.deliver(error_response(
            pending.client_id, MESSAGE_TOO_LARGE,
            f"server '{self.server}' answered {pending.method} with {line.size} bytes, over the "
            f"{self.max_message}-byte message limit",
            {"server": self.server, "size": line.size, "limit": self.max_message}))
        self.owner.request_done(self, pending, Outcome.ERROR)

    def _junk(self, line: bytes) -> None:
        self.junk_lines += 1
        if self.junk_lines <= 20 or self.junk_lines % 1000 == 0:
            text = line[:200].decode("utf-8", "replace")
            log.warning("%s: non-JSON line on stdout (#%d): %r", self.server, self.junk_lines, text)

    def _on_child_notification(self, msg: Message) -> None:
        method = msg["method"]
        params = msg.get("params")
        if method == "notifications/progress" and params.__class__ is dict:
            token = params.get("progressToken")
            if token.__class__ is not int:  # ours are integers; lists and objects are not even ids
                if not is_valid_id(token):
                    self._protocol_error(f"a progress token {_short(token)} that is not a valid one")
                return
            pending = self.pending.get(token)
            if pending is not None and pending.progress_token is not None:
                params = dict(params)
                params["progressToken"] = pending.progress_token
                msg["params"] = params
                pending.sink.deliver(msg)
            return
        if params.__class__ is dict:
            meta = params.get("_meta")
            if meta.__class__ is dict and protocol.META_SUBSCRIPTION_ID in meta:
                subscription = meta[protocol.META_SUBSCRIPTION_ID]
                if subscription.__class__ is not int:
                    if not is_valid_id(subscription):
                        self._protocol_error(f"a subscription id {_short(subscription)} that is not valid")
                    return
                pending = self.pending.get(subscription)
                if pending is not None:
                    meta = dict(meta)
                    meta[protocol.META_SUBSCRIPTION_ID] = pending.client_id
                    msg["params"] = {**params, "_meta": meta}
                    pending.sink.deliver(msg)
                return
        self.owner.child_notification(self, msg)

    def _on_child_request(self, msg: Message) -> None:
        method = msg["method"]
        if method == "ping":
            self.send({"jsonrpc": "2.0", "id": msg["id"], "result": {}})
        elif method == "roots/list" and self.roots:
            roots = [{"uri": r if "://" in r else f"file://{r}", "name": r.rstrip("/").rsplit("/", 1)[-1]}
                     for r in self.roots]
            self.send({"jsonrpc": "2.0", "id": msg["id"], "result": {"roots": roots}})
        else:
            self.owner.child_request(self, msg)

    def send(self, message: Message) -> None:
        """Write a message (a notification, or an answer to the child's request) to the child."""
        self._stdin.push(encode(message))

    def cancel(self, cid: int, reason: str) -> Pending | None:
        """Forget a request and tell the child to stop working on it."""
        pending = self.pending.pop(cid, None)
        if pending is not None:
            self.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                       "params": {"requestId": cid, "reason": reason}})
        return pending

    def expire(self, now: float) -> list[Pending]:
        """Cancel requests past their deadline and answer their callers."""
        expired = [cid for cid, p in self.pending.items() if p.deadline <= now]
        done = []
        for cid in expired:
            pending = self.cancel(cid, "request timed out")
            if pending is None:
                continue
            waited = now - pending.started
            pending.sink.deliver(timed_out(
                pending.client_id, self.server,
                f"server '{self.server}' did not answer {pending.method} within {waited:.1f}s; "
                "the request was cancelled", waited))
            done.append(pending)
        return done

    def fail_all(self, reason: str) -> list[Pending]:
        """Answer every caller still waiting: the child is gone."""
        pendings = list(self.pending.values())
        self.pending.clear()
        for pending in pendings:
            pending.sink.deliver(gone(pending.client_id, self.server, reason))
        return pendings

    # ---- the daemon's own requests --------------------------------------------------------------

    async def call(self, method: str, params: dict[str, Any] | None, timeout: float) -> Any:
        """Send a request of our own and wait for its result (raises on error or timeout)."""
        if self._gone.is_set():
            raise UpstreamGone(f"{method}: the child has exited")
        waiter = Waiter()
        msg: Message = {"jsonrpc": "2.0", "id": 0, "method": method}
        if params is not None:
            msg["params"] = params
        cid = self.forward(waiter, msg, self._monotonic() + timeout + 1.0, client_modern=False)
        with anyio.move_on_after(timeout):
            await waiter.event.wait()
        if waiter.message is None:
            self.cancel(cid, "timed out")
            raise UpstreamTimeout(f"{method} got no answer within {timeout:g}s")
        if "error" in waiter.message:
            error = waiter.message["error"]
            exc = SupervisorError(f"{method} failed: {error.get('message', error)}", data=error)
            exc.code = int(error.get("code", INTERNAL_ERROR))
            raise exc
        return waiter.message.get("result")

    async def list_all(self, method: str, timeout: float) -> list[dict[str, Any]]:
        """Every item of a paginated list method."""
        key = protocol.LIST_ITEMS[method][0]
        items: list[dict[str, Any]] = []
        cursor = None
        for _ in range(1000):  # a child that pages forever is a bug, not a reason to hang
            result = await self.call(method, {"cursor": cursor} if cursor else None, timeout)
            got = result.get(key) if isinstance(result, dict) else None
            if not isinstance(got, list):
                self._protocol_error(f"a {method} result without a list of {key}")
                break
            kept = [item for item in got if item.__class__ is dict]
            if len(kept) != len(got):
                self._protocol_error(f"{len(got) - len(kept)} {method} items that are not objects")
            items.extend(kept)
            cursor = result.get("nextCursor")
            if cursor is not None and cursor.__class__ is not str:
                self._protocol_error(f"a {method} nextCursor that is not a string")
                break
            if not cursor:
                break
        return items

    async def probe(self, timeout: float) -> None:
        """A liveness probe in the child's own era: ping (legacy) or server/discover (modern)."""
        if self.modern:
            await self.call("server/discover", None, timeout)
        else:
            await self.call("ping", None, timeout)

    # ---- lifecycle ----------------------------------------------------------------------------

    async def run(self, on_ready: Callable[[Instance], None]) -> ExitInfo:
        """Spawn, handshake, call `on_ready`, then serve until the child goes away.

        Cancelling this task (restart, stop, reload) ends the child's whole tree first: teardown
        runs shielded, so no cancellation can leave a process behind.
        """
        try:
            proc = await anyio.open_process(
                self.argv, env=self.env, cwd=self.cwd, start_new_session=True,
                stdin=-1, stdout=-1, stderr=-1,
            )
        except OSError as exc:
            raise SpawnError(f"cannot run {self.argv[0]}: {exc.strerror or exc}") from exc
        self._process = proc
        self.pid = proc.pid
        record = process.identify(proc.pid, self.server)
        if record is not None and self._on_spawn is not None:
            self._on_spawn(record)
        error: str | None = None
        died_first = False
        try:
            async with anyio.create_task_group() as tg:
                assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
                tg.start_soon(self._pump_stdin, proc.stdin)
                tg.start_soon(self._read_stdout, proc.stdout)
                tg.start_soon(self._read_stderr, proc.stderr)
                tg.start_soon(self._watch_exit, proc)
                try:
                    with anyio.fail_after(self.init_timeout):
                        await self._handshake()
                except TimeoutError:
                    error = f"no answer to the MCP handshake within {self.init_timeout:g}s"
                except SupervisorError as exc:
                    error = str(exc)
                died_first = self._gone.is_set()
                if error is None and not self._gone.is_set():
                    self.ready = True
                    self.started_at = self.clock.time()
                    on_ready(self)
                if error is None:
                    await self._gone.wait()
                # Let the last stderr lines (often the reason it died) arrive before we stop reading.
                with anyio.move_on_after(0.5):
                    await self._stderr_closed.wait()
                tg.cancel_scope.cancel()
        finally:
            self.ready = False
            with anyio.CancelScope(shield=True):
                returncode = await self._terminate(proc)
                self._fail_pending()
        info = ExitInfo(returncode, self.started_at is None, self.stderr_tail.tail(5),
                        self.junk_lines)
        info.error = None if error is None or (died_first and returncode is not None) else error
        if self.overflow is not None:
            info.error = self.overflow
        return info

    def _fail_pending(self) -> None:
        if self.restart_reason is not None:
            reason = (f"server '{self.server}' was restarted ({self.restart_reason}) while handling "
                      "the request")
        elif self._stop_requested:
            reason = f"server '{self.server}' stopped while handling the request"
        else:
            reason = f"server '{self.server}' exited while handling the request; it is being restarted"
        # One crash is one failure for the circuit breaker, however many requests it took along.
        outcome = (Outcome.GONE if self.restart_reason is not None or self._stop_requested
                   else Outcome.CRASHED)
        for pending in self.fail_all(reason):
            self.owner.request_done(self, pending, outcome)
            outcome = Outcome.GONE

    async def _watch_exit(self, proc: anyio.abc.Process) -> None:
        """A grandchild can hold stdout open after the child died, so the exit itself counts too."""
        await proc.wait()
        with anyio.move_on_after(0.5):
            await self._stdout_closed.wait()
        self._gone.set()

    async def _handshake(self) -> None:
        """Probe `server/discover` first; an error means legacy, so `initialize`. A child known
        to be legacy (`era_hint`, from the state dir) is sent `initialize` alone, and probed
        only if that is refused.

        A probe that gets no answer within PROBE_TIMEOUT is not given up: a slow-starting modern
        child (imports take seconds on a busy machine) will still answer it, and then reject the
        `initialize` we send meanwhile with -32022. So after the probe timeout both requests are
        outstanding and whichever proves the era first wins; the spec asks us not to key this
        to one error code, and not to a race either.
        """
        deadline = anyio.current_time() + self.init_timeout
        if self.era_hint == "legacy" and await self._initialize_first(deadline):
            return
        progress = anyio.Event()
        discover = _Answer(progress)
        self.forward(discover, {"jsonrpc": "2.0", "id": 0, "method": "server/discover",
                                "params": {"_meta": self._envelope}},
                     self._monotonic() + self.init_timeout, client_modern=True)
        with anyio.move_on_after(min(PROBE_TIMEOUT, self.init_timeout / 2)):
            await discover.event.wait()
        if self._adopt_discover(discover.message):
            await self._read_tools(deadline)
            return
        initialize = _Answer(progress)
        self.forward(initialize, self._initialize_message(), self._monotonic() + self.init_timeout,
                     client_modern=False)
        while True:
            if self._adopt_discover(discover.message):
                await self._read_tools(deadline)
                return
            answer = initialize.message
            if answer is not None and "result" in answer:
                break
            if answer is not None and (discover.message is not None or not discover.pending(self)):
                error = answer.get("error") or {}
                raise HandshakeError(f"initialize failed: {error.get('message', error)}")
            if self._gone.is_set():
                raise UpstreamGone("the child exited during the handshake")
            progress = discover.progress = initialize.progress = anyio.Event()
            await progress.wait()
        self._adopt_initialize(answer["result"])
        for cid in [cid for cid, p in self.pending.items() if p.sink is discover]:
            self.cancel(cid, "the child answered initialize")  # an old child that ignores it
        await self._read_tools(deadline)

    def _initialize_message(self) -> Message:
        return {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": protocol.LATEST_LEGACY,
            "capabilities": {"roots": {"listChanged": True}},
            "clientInfo": protocol.CLIENT_INFO,
        }}

    def _adopt_initialize(self, result: Any) -> None:
        if not isinstance(result, dict):
            raise HandshakeError("initialize returned no result object")
        version = result.get("protocolVersion")
        if version not in protocol.KNOWN_VERSIONS:
            raise HandshakeError(f"child answered unknown protocol version {version!r}")
        capabilities = result.get("capabilities") or {}
        server_info = result.get("serverInfo") or {}
        if capabilities.__class__ is not dict or server_info.__class__ is not dict:
            raise HandshakeError("initialize returned capabilities or serverInfo that are not objects")
        self.init_result = result
        self.protocol_version = version
        self.capabilities = capabilities
        self.server_info = server_info
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def _initialize_first(self, deadline: float) -> bool:
        """The child spoke `initialize` last time: send it alone, no probe. False when it is
        refused (the child changed era): the caller then probes as for an unknown child."""
        answer = _Answer(anyio.Event())
        self.forward(answer, self._initialize_message(), self._monotonic() + self.init_timeout,
                     client_modern=False)
        await answer.event.wait()  # a child that dies fails its pending requests: this wakes too
        assert answer.message is not None
        if self._gone.is_set() and "result" not in answer.message:
            raise UpstreamGone("the child exited during the handshake")
        if "result" not in answer.message:
            log.info("%s: the remembered era (initialize) was refused; probing", self.server)
            return False
        self._adopt_initialize(answer.message["result"])
        await self._read_tools(deadline)
        return True

    def _adopt_discover(self, answer: Message | None) -> bool:
        """True (and the era settled) when `answer` is a DiscoverResult naming a modern version."""
        result = answer.get("result") if answer is not None else None
        if not isinstance(result, dict):
            return False
        versions = result.get("supportedVersions") or []
        modern = [v for v in protocol.MODERN_VERSIONS if v in versions] if versions.__class__ is list else []
        if not modern:
            return False
        capabilities = result.get("capabilities") or {}
        meta = result.get("_meta") or {}
        server_info = meta.get(protocol.META_SERVER_INFO) or {} if meta.__class__ is dict else None
        if capabilities.__class__ is not dict or server_info.__class__ is not dict:
            raise HandshakeError("server/discover returned capabilities, _meta or serverInfo that "
                                 "are not objects")
        self.modern = True
        self.protocol_version = modern[-1]
        self.discover_result = result
        self.capabilities = capabilities
        self.server_info = server_info
        return True

    async def _read_tools(self, deadline: float) -> None:
        if "tools" in self.capabilities:
            self.tools = await self.list_all("tools/list", max(0.1, deadline - anyio.current_time()))
        else:
            self.tools = []

    async def _pump_stdin(self, stdin: anyio.abc.ByteSendStream) -> None:
        # The child may close stdin or die; the stdout reader and exit watcher notice that.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            transport = self._stdin_transport = fastio.pipe_transport(stdin)
            try:
                await self._stdin.pump(stdin, fastio.pipe_sender(transport, PIPE_HIGH_WATER)
                                       if transport is not None else None)
            except OutboxOverflow as exc:  # the child stopped reading: this child ends, not the daemon
                self.overflow = f"stopped reading its stdin: {exc}"
                log.warning("%s: pid %s %s; ending it", self.server, self.pid, self.overflow)
                self._gone.set()

    async def _read_stdout(self, stdout: anyio.abc.ByteReceiveStream) -> None:
        splitter = LineSplitter(self.max_message)
        on_line = self._on_line
        try:
            if not await fastio.read_pipe_with_callback(stdout, _line_feed(splitter, on_line)):
                while True:
                    chunk = await stdout.receive(262144)
                    for line in splitter.feed(chunk):
                        on_line(line)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            self._stdout_closed.set()
            self._gone.set()
            self._fail_pending()

    async def _read_stderr(self, stderr: anyio.abc.ByteReceiveStream) -> None:
        # Always drained, so a chatty child never blocks on a full pipe.
        buffered = BufferedByteReceiveStream(stderr)
        try:
            while True:
                try:
                    raw = await buffered.receive_until(b"\n", 65536)
                except anyio.DelimiterNotFound:
                    raw = await buffered.receive(65536)
                # Masked here, at the source: the ring, the log file, `mcpctl logs`, the events
                # stream and the exit reason in status all get this one redacted copy.
                line = REDACT(raw.decode("utf-8", "replace").rstrip("\r"))
                self.stderr_tail.append(line)
                self.owner.child_stderr(self, line)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError,
                anyio.ClosedResourceError):
            pass
        finally:
            self._stderr_closed.set()

    def request_stop(self) -> None:
        self._stop_requested = True

    async def _terminate(self, proc: anyio.abc.Process) -> int | None:
        """Spec order: close stdin, wait, SIGTERM the group, wait, SIGKILL, sweep escapees."""
        pid = proc.pid
        snapshot = await anyio.to_thread.run_sync(process.descendants, pid)
        if proc.returncode is None:
            self._stdin.close()
            if proc.stdin is not None:
                try:
                    with anyio.move_on_after(1):
                        await proc.stdin.aclose()
                except (OSError, anyio.BrokenResourceError):
                    pass
            with anyio.move_on_after(self.stop_timeout / 2):
                await proc.wait()
        if proc.returncode is None:
            process.kill_group(pid, 15)
            with anyio.move_on_after(self.stop_timeout / 2):
                await proc.wait()
        if proc.returncode is None:
            process.kill_group(pid, 9)
        await anyio.to_thread.run_sync(process.sweep_tree, pid, pid, snapshot)
        with anyio.move_on_after(5):
            await proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    await stream.aclose()
        if self._on_reaped is not None:
            self._on_reaped(pid)
        return proc.returncode


def _short(value: Any) -> str:
    """A peer's value in a log line: its type and the start of its text, never all of it."""
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


PIPE_HIGH_WATER = 64 * 1024


def _line_feed(splitter: LineSplitter,
               on_line: Callable[[bytes | Oversized], None]) -> Callable[[bytes], None]:
    """Split a chunk of the child's stdout and route each line, inside one outbox batch (so the
    answers it produces are written before the read callback returns)."""
    flushing = batch()

    def feed(data: bytes) -> None:
        with flushing:
            for line in splitter.feed(data):
                on_line(line)
    return feed
