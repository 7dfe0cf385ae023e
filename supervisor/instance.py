"""One running child process: the handshake, the pipes, and the table that remaps request ids.

The hot path lives here. A request from any client is rewritten in place (our id, our progress
token, the 2026-07-28 envelope when the child needs it), remembered in `pending` and pushed onto the
child's stdin outbox; the reader task routes each reply straight to the waiting client's sink. No
task or future per request: routing is a dict lookup and a push.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from . import process, protocol, tracing
from .breaker import CANCELLED, CRASH, INTERNAL
from .errors import (
    INTERNAL_ERROR,
    REQUEST_TIMEOUT,
    SpawnError,
    SupervisorError,
    UpstreamGone,
    UpstreamTimeout,
)
from .health import BAD_SAMPLES, Consecutive
from .jsonrpc import LineSplitter, Message, Oversized, encode, error_response, loads
from .logs import REDACT
from .metrics import ERROR, GONE
from .outbox import Outbox, batch

log = logging.getLogger("mcp_supervisor.instance")

STDERR_LINES = 1000
PROBE_TIMEOUT = 3.0


class Sink(Protocol):
    """Where answers for one client go (a session, a control call, the daemon itself)."""

    def deliver(self, message: Message) -> None: ...


class InstanceOwner(Protocol):
    """The callbacks an instance makes into its `Server`."""

    def request_done(self, instance: Instance, pending: Pending, ok: bool,
                     outcome: int = ..., fault: str | None = None) -> None:
        """`outcome`: a `metrics` outcome for the counters; `fault`: None when the child answered
        or the caller is to blame, else one of the `breaker` constants."""
    def child_notification(self, instance: Instance, message: Message) -> None: ...
    def child_request(self, instance: Instance, message: Message) -> None: ...
    def child_stderr(self, instance: Instance, line: str) -> None: ...


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


class Waiter:
    """A sink for the daemon's own requests (handshake, lists, probes): one answer, awaited."""

    __slots__ = ("event", "message")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.message: Message | None = None

    def deliver(self, message: Message) -> None:
        if "id" in message and "method" not in message and self.message is None:
            self.message = message
            self.event.set()


class _Answer(Waiter):
    """One handshake answer; wakes the handshake, which waits on either of two."""

    __slots__ = ("progress",)

    def __init__(self, progress: anyio.Event) -> None:
        super().__init__()
        self.progress = progress

    def deliver(self, message: Message) -> None:
        if "method" not in message and self.message is None:
            self.message = message
            self.event.set()
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
                 max_message: int, roots: tuple[str, ...] = (),
                 on_spawn: Callable[[process.ProcessRecord], None] | None = None,
                 on_reaped: Callable[[int], None] | None = None) -> None:
        self.server = server
        self.index = index
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.owner = owner
        self.init_timeout = init_timeout
        self.stop_timeout = stop_timeout
        self.max_message = max_message
        self.roots = roots
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
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self.junk_lines = 0
        self.oversized = 0
        self.memory_bytes: int | None = None
        self.memory_precise = False  # memory_bytes is PSS (read because RSS was over a limit)
        self.process_count = 0
        # CPU of the whole tree: the last reading and the share of a core
        # between the last two (health.cpu_sample).
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
        self._stdin = Outbox()
        self._stdout_closed = anyio.Event()
        self._stderr_closed = anyio.Event()
        self._gone = anyio.Event()
        self.tools: list[dict[str, Any]] = []
        self._process: anyio.abc.Process | None = None
        self._stop_requested = False
        self._envelope = protocol.modern_envelope()

    # ---- the hot path -------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self.pending)

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
        pending = self.pending[cid] = Pending(sink, client_id, message["method"], deadline, token, tool,
                                              time.monotonic(), client_modern and not self.modern)
        if tracing.active is not None and params.__class__ is dict:
            meta = params.get("_meta")
            if meta.__class__ is dict and "traceparent" in meta:  # the session started a trace
                pending.span = tracing.active.child_span(message, self.server)
        self._stdin.push(encode(message))
        return cid

    def _on_line(self, line: bytes | Oversized) -> None:
        if isinstance(line, Oversized):
            self.oversized += 1
            log.warning("%s: dropped a %d-byte message from the child (limit %d)",
                        self.server, line.size, self.max_message)
            return
        try:
            msg = loads(line)
        except ValueError:
            self._junk(line)
            return
        if msg.__class__ is not dict:
            self._junk(line)
            return
        if "method" not in msg:
            mid = msg.get("id")
            pending = self.pending.pop(mid, None) if mid.__class__ is int else None
            if pending is None:
                return  # answer to a request we cancelled or timed out: nobody waits for it
            msg["id"] = pending.client_id
            if pending.modernize:
                protocol.modernize_result(msg, pending.method)
            pending.sink.deliver(msg)
            error = msg.get("error")
            if error is None:
                self.owner.request_done(self, pending, True)
            else:  # an internal error says the server is in trouble; others are the caller's
                code = error.get("code") if error.__class__ is dict else None
                self.owner.request_done(self, pending, False, ERROR,
                                        INTERNAL if code == INTERNAL_ERROR else None)
        elif "id" in msg:
            self._on_child_request(msg)
        else:
            self._on_child_notification(msg)

    def _junk(self, line: bytes) -> None:
        self.junk_lines += 1
        if self.junk_lines <= 20 or self.junk_lines % 1000 == 0:
            text = line[:200].decode("utf-8", "replace")
            log.warning("%s: non-JSON line on stdout (#%d): %r", self.server, self.junk_lines, text)

    def _on_child_notification(self, msg: Message) -> None:
        method = msg["method"]
        params = msg.get("params")
        if method == "notifications/progress" and params.__class__ is dict:
            pending = self.pending.get(params.get("progressToken"))  # type: ignore[arg-type]
            if pending is not None and pending.progress_token is not None:
                params = dict(params)
                params["progressToken"] = pending.progress_token
                msg["params"] = params
                pending.sink.deliver(msg)
            return
        if params.__class__ is dict:
            meta = params.get("_meta")
            if meta.__class__ is dict and protocol.META_SUBSCRIPTION_ID in meta:
                pending = self.pending.get(meta[protocol.META_SUBSCRIPTION_ID])
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
        elif method == "roots/list":
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
            pending.sink.deliver(error_response(
                pending.client_id, REQUEST_TIMEOUT,
                f"server '{self.server}' did not answer {pending.method} within {waited:.1f}s; "
                "the request was cancelled", {"server": self.server, "timeout_s": round(waited, 3)}))
            done.append(pending)
        return done

    def fail_all(self, reason: str) -> list[Pending]:
        """Answer every caller still waiting: the child is gone."""
        pendings = list(self.pending.values())
        self.pending.clear()
        for pending in pendings:
            pending.sink.deliver(error_response(
                pending.client_id, UpstreamGone.code, reason, {"server": self.server}))
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
        cid = self.forward(waiter, msg, time.monotonic() + timeout + 1.0, client_modern=False)
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
            items.extend(result.get(key, []) if isinstance(result, dict) else [])
            cursor = result.get("nextCursor") if isinstance(result, dict) else None
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
                    self.started_at = time.time()
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
        info = ExitInfo(returncode, self.started_at is None, list(self.stderr_tail)[-5:],
                        self.junk_lines)
        info.error = None if error is None or (died_first and returncode is not None) else error
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
        fault = CANCELLED if self.restart_reason is not None or self._stop_requested else CRASH
        for pending in self.fail_all(reason):
            self.owner.request_done(self, pending, False, GONE, fault)
            fault = CANCELLED

    async def _watch_exit(self, proc: anyio.abc.Process) -> None:
        """A grandchild can hold stdout open after the child died, so the exit itself counts too."""
        await proc.wait()
        with anyio.move_on_after(0.5):
            await self._stdout_closed.wait()
        self._gone.set()

    async def _handshake(self) -> None:
        """Probe `server/discover` first; an error means legacy, so `initialize`.

        A probe that gets no answer within PROBE_TIMEOUT is not given up: a slow-starting modern
        child (imports take seconds on a busy machine) will still answer it, and then reject the
        `initialize` we send meanwhile with -32022. So after the probe timeout both requests are
        outstanding and whichever proves the era first wins; the spec asks us not to key this
        to one error code, and not to a race either.
        """
        deadline = anyio.current_time() + self.init_timeout
        progress = anyio.Event()
        discover = _Answer(progress)
        self.forward(discover, {"jsonrpc": "2.0", "id": 0, "method": "server/discover",
                                "params": {"_meta": self._envelope}},
                     time.monotonic() + self.init_timeout, client_modern=True)
        with anyio.move_on_after(min(PROBE_TIMEOUT, self.init_timeout / 2)):
            await discover.event.wait()
        if self._adopt_discover(discover.message):
            await self._read_tools(deadline)
            return
        initialize = _Answer(progress)
        self.forward(initialize, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": protocol.LATEST_LEGACY,
            "capabilities": {"roots": {"listChanged": True}},
            "clientInfo": protocol.CLIENT_INFO,
        }}, time.monotonic() + self.init_timeout, client_modern=False)
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
        result = answer["result"]
        if not isinstance(result, dict):
            raise HandshakeError("initialize returned no result object")
        version = result.get("protocolVersion")
        if version not in protocol.KNOWN_VERSIONS:
            raise HandshakeError(f"child answered unknown protocol version {version!r}")
        self.init_result = result
        self.protocol_version = version
        self.capabilities = result.get("capabilities") or {}
        self.server_info = result.get("serverInfo") or {}
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        for cid in [cid for cid, p in self.pending.items() if p.sink is discover]:
            self.cancel(cid, "the child answered initialize")  # an old child that ignores it
        await self._read_tools(deadline)

    def _adopt_discover(self, answer: Message | None) -> bool:
        """True (and the era settled) when `answer` is a DiscoverResult naming a modern version."""
        result = answer.get("result") if answer is not None else None
        if not isinstance(result, dict):
            return False
        versions = result.get("supportedVersions") or []
        modern = [v for v in protocol.MODERN_VERSIONS if v in versions]
        if not modern:
            return False
        self.modern = True
        self.protocol_version = modern[-1]
        self.discover_result = result
        self.capabilities = result.get("capabilities") or {}
        meta = result.get("_meta") or {}
        self.server_info = meta.get(protocol.META_SERVER_INFO) or {}
        return True

    async def _read_tools(self, deadline: float) -> None:
        if "tools" in self.capabilities:
            self.tools = await self.list_all("tools/list", max(0.1, deadline - anyio.current_time()))
        else:
            self.tools = []

    async def _pump_stdin(self, stdin: anyio.abc.ByteSendStream) -> None:
        # The child may close stdin or die; the stdout reader and exit watcher notice that.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await self._stdin.pump(stdin, _pipe_sender(stdin))

    async def _read_stdout(self, stdout: anyio.abc.ByteReceiveStream) -> None:
        splitter = LineSplitter(self.max_message)
        on_line = self._on_line
        try:
            if not await _read_pipe_with_callback(stdout, splitter, on_line):
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


PIPE_HIGH_WATER = 64 * 1024


class _LineProtocol(asyncio.Protocol):
    """Stands in for the pipe transport's own protocol while `_read_pipe_with_callback` runs.

    Each chunk the transport reads is split and routed right there, inside one outbox batch (so the
    answers it produces are written before the callback returns); end of stream and errors are
    passed on to the protocol it replaced, which keeps the subprocess transport's bookkeeping (it
    reaps the child only once every pipe reported closed)."""

    def __init__(self, original: asyncio.BaseProtocol, splitter: LineSplitter,
                 on_line: Callable[[bytes | Oversized], None]) -> None:
        self.original = original
        self.splitter = splitter
        self.on_line = on_line
        self.flushing = batch()
        self.done = anyio.Event()
        self.failure: BaseException | None = None

    def feed(self, data: bytes) -> None:
        on_line = self.on_line
        with self.flushing:
            for line in self.splitter.feed(data):
                on_line(line)

    def data_received(self, data: bytes) -> None:
        if self.failure is not None:
            return
        try:
            self.feed(data)
        except BaseException as exc:  # surface it in the reader task, not the loop's handler
            self.failure = exc
            self.done.set()

    def eof_received(self) -> bool | None:
        eof_received = getattr(self.original, "eof_received", None)
        return eof_received() if eof_received is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.original.connection_lost(exc)
        finally:
            self.done.set()


async def _read_pipe_with_callback(stdout: anyio.abc.ByteReceiveStream, splitter: LineSplitter,
                                   on_line: Callable[[bytes | Oversized], None]) -> bool:
    """Route a child's stdout from the pipe transport's own read callback; False if not possible.

    anyio's `receive` costs a future, a task wake-up and an extra loop pass per chunk (the
    transport already read the data in a callback, then hands it to a StreamReader the task
    awaits). Swapping the transport's protocol for the task's lifetime routes each chunk where it
    is read. The swap is undone when the task ends, however it ends. Measured in BENCHMARKS.md.
    """
    reader = getattr(stdout, "_stream", None)
    transport = getattr(reader, "_transport", None)
    buffer = getattr(reader, "_buffer", None)
    if (not isinstance(reader, asyncio.StreamReader) or not isinstance(buffer, bytearray)
            or not hasattr(transport, "set_protocol") or not hasattr(transport, "get_protocol")):
        return False
    assert transport is not None
    original = transport.get_protocol()
    proto = _LineProtocol(original, splitter, on_line)
    # Whatever the StreamReader took in before the swap (start-up chatter) goes first, and the
    # swap happens in the same step, so no byte is lost or reordered.
    if buffer:
        data = bytes(buffer)
        buffer.clear()
        proto.feed(data)
    if reader.at_eof():
        return True
    with contextlib.suppress(AttributeError):  # see http._small_reads: no mmap per read
        transport.max_size = 65536
    transport.set_protocol(proto)
    try:
        if not transport.is_reading():  # the StreamReader paused it while its buffer was full
            transport.resume_reading()
        await proto.done.wait()
    finally:
        if transport.get_protocol() is proto:
            transport.set_protocol(original)
    if proto.failure is not None:
        raise proto.failure
    return True


def _pipe_sender(stdin: anyio.abc.ByteSendStream) -> Callable[[bytes], int] | None:
    """A non-blocking write to the child's stdin for `Outbox`'s direct path, or None.

    On anyio's asyncio backend the stream wraps an asyncio StreamWriter whose transport writes at
    once when its buffer is empty and buffers in order otherwise. Past the high-water mark we take
    nothing, so the pump's `send` (which awaits `drain`) applies the back-pressure as before.
    """
    writer = getattr(stdin, "_stream", None)
    transport = getattr(writer, "transport", None)
    if not isinstance(transport, asyncio.WriteTransport):
        return None

    def send(data: bytes) -> int:
        if transport.is_closing() or transport.get_write_buffer_size() > PIPE_HIGH_WATER:
            return 0
        transport.write(data)
        return len(data)

    return send
