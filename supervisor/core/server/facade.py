"""The `Server` facade: one configured server, tying its parts together (see the package docstring)."""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from supervisor import errors
from supervisor.config import ServerConfig
from supervisor.config.summary import summarize
from supervisor.domains import domain, loop_domain
from supervisor.errors import (
    METHOD_NOT_FOUND,
    SpawnError,
    SupervisorError,
    UpstreamGone,
    UpstreamTimeout,
    rate_limited,
)
from supervisor.policy import counters
from supervisor.policy.autoscale import DOWN, UP, Autoscaler, Policy, Verdict
from supervisor.policy.breaker import CLOSED, CircuitBreaker
from supervisor.policy.outcome import Outcome
from supervisor.policy.ratelimit import TokenBucket
from supervisor.policy.samples import Consecutive, idle_due
from supervisor.policy.states import SERVING, Exit, RestartTracker, State
from supervisor.policy.tool_policy import ServerGate, origin_of
from supervisor.telemetry import tracing
from supervisor.telemetry.logs import REDACT, LineRing, LogBudget
from supervisor.units import format_duration, format_size
from supervisor.wire import protocol
from supervisor.wire.jsonrpc import Message, Sink, error_response

from ..instance import ExitInfo, Instance, Pending, Waiter
from ..pins import ToolPins
from ..subscriptions import Subscriptions
from .admission import Queued, least_loaded, retry_after_ms, shown, timeout_for
from .childlog import STDERR_LOG_PER_SECOND, STDERR_RING, STDERR_RING_BYTES, ChildLog
from .context import FleetContext
from .derived import derive_state
from .launch import Launch
from .scaling import observation, scale_down_victim

if TYPE_CHECKING:
    from ..process import ProcessRecord

OK = Outcome.OK  # a module global: `outcome is OK` on the hot path
log = logging.getLogger("mcp_supervisor.server")

SWEEP_INTERVAL = 0.05
PROBE_SPACING = 1.0  # at most one extra probe per second when real requests time out
IDLE_RECHECK = 30.0
HISTORY = 50  # state changes and restarts kept for `supervisor/status {detail: true}`
LATENCY_SAMPLES = 2048


class Attached(Protocol):
    """A client session attached to a server, told about the server's notifications."""

    def server_notification(self, server: Server, message: Message) -> None: ...
    def forward_server_request(self, instance: Instance, message: Message) -> bool: ...


class ClientSet(Protocol):
    """`sharing = "per-client"`: the instances a server keeps for its clients (`perclient`), as
    the server uses them. Declared here, made by `perclient`, so neither imports the other's
    module for the other way round."""

    @property
    def servers(self) -> list[Server]: ...
    @property
    def taken(self) -> int: ...
    @property
    def cap(self) -> int: ...
    def submit(self, sink: Sink, message: Message, client_modern: bool) -> None: ...
    def cancel(self, sink: Sink, client_id: Any, reason: str) -> bool: ...
    def drop_sink(self, sink: Sink) -> int: ...
    def stop_all(self, why: str) -> None: ...
    def any_instance(self) -> Server | None: ...
    async def run(self) -> None: ...
    def status(self) -> list[dict[str, Any]]: ...


class Server(Launch, ChildLog):
    """One configured server (see the package docstring for its parts)."""

    def __init__(self, config: ServerConfig, ctx: FleetContext,
                 per_client: Callable[[Server], ClientSet] | None = None) -> None:
        """`per_client` makes the client instances of a `sharing = "per-client"` server (the
        fleet passes `perclient.ClientInstances`); without it the server runs its own children."""
        self.config = config
        self.name = config.name
        self.ctx = ctx
        self.clock = ctx.clock
        self._monotonic = ctx.clock.monotonic  # bound once: the hot path reads it per request
        self.state = State.STOPPED
        self.reason = "not started yet"
        self.since = self.clock.time()
        self.restarts = 0
        self.restart_reasons: collections.Counter[str] = collections.Counter()
        # The dashboard's detail screen: the last state changes and restarts, with times.
        self.state_history: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY)
        self.restart_history: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY)
        self.instances: list[Instance] = []
        self.ready_instances: list[Instance] = []
        self.queue: collections.deque[Queued] = collections.deque()
        self.tools: list[dict[str, Any]] = []
        self.stderr = LineRing(STDERR_RING, STDERR_RING_BYTES)
        self.stderr_at: collections.deque[float] = collections.deque(maxlen=STDERR_RING)
        """When each line of `stderr` arrived (aligned from the newest end; see `stderr_times`)."""
        self.sessions: set[Attached] = set()
        self.subscriptions = Subscriptions()  # resources/subscribe, per client session
        self.calls_total = 0
        self.errors_total = 0
        self.timeouts_total = 0
        self.busy_total = 0
        self.latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_SAMPLES)
        self.stats = counters.RequestStats()  # read by the Prometheus collector at scrape time
        self.last_exit: str | None = None
        self.handshake: Instance | None = None  # the latest child that finished its handshake

        self.last_stderr: list[str] = []  # the last lines of the child that exited last
        self.breaker = CircuitBreaker(config.breaker_errors, config.breaker_window,
                                      config.breaker_cooldown, self._monotonic)
        self.tracker = RestartTracker(
            max_restarts=config.max_restarts, restart_window=config.restart_window,
            max_start_failures=config.max_start_failures, backoff_initial=config.backoff_initial,
            backoff_max=config.backoff_max, stable_after=config.stable_after)
        self.last_active = self._monotonic()  # when a client request last finished (idle stop)

        self._desired = config.start == "eager"
        self._failed = False
        self._stopping = False
        self._idle_stopped = False  # stopped by idle_stop_after: the next request starts it again
        self._stop_reason = "stopped"
        self._poke = anyio.Event()
        self._probe_soon = anyio.Event()
        self._run_scope: anyio.CancelScope | None = None
        self._sweeper_idle = True
        self._work = anyio.Event()
        self._slot_states: dict[int, tuple[State, str]] = {}
        self._state_changed = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        # Slots: one task per instance, in a task group that lives as long as the run scope. The
        # autoscaler adds slots and retires them (drain, then stop; the task then ends).
        self._slot_group: anyio.abc.TaskGroup | None = None
        self._slot_indices: set[int] = set()
        self._retiring: set[int] = set()
        self.policy = Policy.for_config(config)
        self.autoscaler = Autoscaler(self.policy) if self.policy is not None else None
        self.scale_events: collections.Counter[str] = collections.Counter()
        self.last_scale: dict[str, Any] | None = None
        self._bucket = (TokenBucket.for_limit(config.rate_limit, self._monotonic())
                        if config.rate_limit is not None else None)
        self.rate_limited_total = 0
        self.protocol_errors_total = 0  # invalid MCP from any of its children, dropped
        self._stderr_budget = LogBudget(STDERR_LOG_PER_SECOND)
        self._message_budget = LogBudget(STDERR_LOG_PER_SECOND)
        self.cache = ctx.cache.front(config, self.route) if ctx.cache is not None else None
        self.pins = ToolPins(ctx.state_dir / "tool-pins" / f"{self.name}.json", ctx.clock)
        self.tool_changes_total = 0  # definition changes seen (approved or not)
        self.blocked: set[str] = set()  # tools held back by on_tool_change = "block"
        self.gate: ServerGate | None = None
        self.policy_epoch = 0  # bumped whenever what clients see of this server may change
        self._visible: tuple[int, int, list[dict[str, Any]]] | None = None
        self._rebuild_gate()
        # sharing = "per-client": this server runs no child itself, one per client instead.
        self.clients = per_client(self) if per_client is not None else None
        self.owner_of: Server | None = None  # on a per-client instance: the configured server
        self.owner: str | None = None  # ... and the client it belongs to
        self.retired = False  # a per-client instance on its way out
        self.client_dir: Path | None = None  # an anonymous client's directory, removed with it
        # The daemon's environment plus this server's secrets, as read for the latest spawn.
        self.environ: Mapping[str, str] = ctx.environ
        self._secret_problems: tuple[str, ...] = ()
        self._env_file_error: str | None = None

    def succeed(self, old: Server) -> None:
        """A changed entry replaces `old`: the same server with a new config, so its restart
        count goes on (this is one more, for "config") and its log lines stay."""
        self.restarts = old.restarts + 1
        self.restart_reasons = old.restart_reasons.copy()
        self.restart_reasons["config"] += 1
        self.stderr.extend(old.stderr)

    def config_comments_changed(self, config: ServerConfig) -> None:
        """A reload whose entry has the same fingerprint (only comments or order differ): keep
        the new text of the config, change nothing else."""
        self.config = config

    def latency_quantiles(self, *quantiles: float) -> tuple[float | None, ...]:
        """Of the recent latencies (seconds): one value per quantile, None before any call."""
        ordered = sorted(self.latencies)
        if not ordered:
            return tuple(None for _ in quantiles)
        return tuple(ordered[min(len(ordered) - 1, int(len(ordered) * q))] for q in quantiles)

    # ---- tool policy ----------------------------------------------------------------------------

    def _rebuild_gate(self) -> None:
        block = self.config.on_tool_change == "block"
        self.blocked = set(self.pins.changes) if block else set()
        gate = ServerGate(self.config, self.blocked, self.pins.matches if block else None)
        self.gate = gate if gate.active else None
        self.policy_epoch += 1

    def _tell_sessions(self, *kinds: str) -> None:
        for kind in kinds:
            message = {"jsonrpc": "2.0", "method": f"notifications/{kind}/list_changed"}
            for session in list(self.sessions):
                session.server_notification(self, message)

    def apply_policy(self, config: ServerConfig) -> None:
        """A reload changed only what clients see (`POLICY_KEYS`): no restart, and every attached
        client is told to list again."""
        self.config = config
        self._rebuild_gate()
        self._tell_sessions("tools", "prompts", "resources")
        if self.clients is not None:
            for server in self.clients.servers:
                server.apply_policy(dataclasses.replace(config, sharing="shared", max_instances=None,
                                                        start="eager", idle_stop_after=None))

    def _adopt(self, inst: Instance) -> None:
        """A per-client instance finished a handshake or re-read its tools: the configured server
        answers handshakes and lists from it."""
        self.handshake = inst
        self.tools = inst.tools
        if self.blocked != (set(self.pins.changes) if self.config.on_tool_change == "block" else set()):
            self._rebuild_gate()
        self._state_changed.set()
        self._state_changed = anyio.Event()

    def per_client_changed(self) -> None:
        """An instance came or went: the reason says how many (and publishes a state event)."""
        if self.clients is not None and self.state in SERVING:
            self._set_state(self.state, self._per_client_reason())

    def _per_client_reason(self) -> str:
        assert self.clients is not None
        taken = self.clients.taken
        return (f"per-client: {taken} client instance{'s' if taken != 1 else ''} "
                f"of at most {self.clients.cap}")

    @property
    def all_instances(self) -> list[Instance]:
        """Every child of this server, per-client instances included."""
        if self.clients is None:
            return self.instances
        return [inst for server in self.clients.servers for inst in server.instances]

    def _tools_seen(self, tools: list[dict[str, Any]]) -> None:
        """A fresh tool list from a child: pin new tools, flag (and maybe hold back) changed ones."""
        newly = self.pins.observe(tools)
        block = self.config.on_tool_change == "block"
        for name in newly:
            self.tool_changes_total += 1
            log.warning("%s: tool %r changed since it was pinned; %s (see: mcpctl tools --diff %s)",
                        self.name, name, "hidden until approved" if block else "still served",
                        self.name)
            self.ctx.publish({"type": "tool_change", "server": self.name, "tool": name,
                              "action": "blocked" if block else "warned", "at": self.clock.time()})
        if block and self.blocked != set(self.pins.changes):
            self._rebuild_gate()
        elif not block and self.gate is not None and newly:
            self.policy_epoch += 1

    def approve_tools(self, tool: str | None = None) -> list[str]:
        """`mcpctl tools approve`: pin what the child offers now; held-back tools come back."""
        approved = self.pins.approve(tool)
        if approved:
            log.info("%s: approved the current definition of %s", self.name, ", ".join(approved))
            self.ctx.publish({"type": "tool_change", "server": self.name, "tool": tool,
                              "action": "approved", "approved": approved, "at": self.clock.time()})
            self._rebuild_gate()
            self._tell_sessions("tools")
            for server in self.clients.servers if self.clients is not None else ():
                server._rebuild_gate()  # the pins are shared; each instance's gate is its own
                server._tell_sessions("tools")
        return approved

    @property
    def visible_tools(self) -> list[dict[str, Any]]:
        """The tools clients see (policy applied), recomputed only when the tools or policy change."""
        gate = self.gate
        if gate is None:
            return self.tools
        cached = self._visible
        if cached is not None and cached[0] == id(self.tools) and cached[1] == self.policy_epoch:
            return cached[2]
        visible = gate.visible_tools(self.tools)
        self._visible = (id(self.tools), self.policy_epoch, visible)
        return visible

    # ---- admission: the hot path ----------------------------------------------------------------

    def submit(self, sink: Sink, message: Message, client_modern: bool) -> None:
        """Route one request; its answer (or a precise error) is delivered to `sink`."""
        if self.clients is not None:
            self.clients.submit(sink, message, client_modern)  # to the client's own instance
            return
        gate = self.gate
        if gate is not None and message["method"] in gate.methods:
            admitted = gate.admit(sink, message)
            if admitted is None:
                return  # refused by the tool policy
            sink = admitted
        capability = protocol.METHOD_CAPABILITY.get(message["method"])
        if capability is not None:
            child = self.handshake
            if child is not None and capability not in child.capabilities:
                self._undeclared(sink, message, capability, client_modern)
                return
        cache = self.cache
        if cache is not None and message["method"] in cache.methods:
            routed = cache.intercept(sink, message, client_modern)
            if routed is None:
                return  # answered from the cache, or joined an identical request in flight
            sink = routed
        self.route(sink, message, client_modern)

    def route(self, sink: Sink, message: Message, client_modern: bool) -> None:
        """Admission proper: an instance, the queue, or a refusal. The cache worker calls this
        for Redis misses. The server's rate limit is checked here, after the cache: a hit never
        reaches the child, so it does not spend the child's (often an upstream API's) quota."""
        bucket = self._bucket
        if bucket is not None:
            shared = self.ctx.cluster_limits
            if shared is not None:
                assert self.config.rate_limit is not None
                shared.check(f"server:{self.name}:{self.config.rate_limit.text}", self.config.rate_limit,
                             bucket, lambda wait: self._rate_checked(sink, message, client_modern, wait))
                return
            if not bucket.take(self._monotonic()):
                self.refuse_rate_limited(sink, message, bucket.retry_after(self._monotonic()))
                return
        self._admit(sink, message, client_modern)

    def _rate_checked(self, sink: Sink, message: Message, client_modern: bool, wait: float) -> None:
        """The cluster's bucket answered (a moment after `route`): refuse, or admit as usual."""
        if wait:
            self.refuse_rate_limited(sink, message, wait)
        else:
            self._admit(sink, message, client_modern)

    def _admit(self, sink: Sink, message: Message, client_modern: bool) -> None:
        if self.breaker.state is not CLOSED and not self._breaker_allows(sink, message):
            return
        ready = self.ready_instances
        limit = self.config.max_in_flight
        inst = None
        if len(ready) == 1:
            only = ready[0]
            if len(only.pending) - (only.parked if limit > 1 else 0) < limit and not only.draining:
                inst = only
        elif ready:
            inst = least_loaded(ready, limit)
        now = self._monotonic()
        if inst is not None and inst.stdin_backlog > inst.stdin_busy_at:
            self._refuse_busy(sink, message, f"'{self.name}' has {inst.stdin_backlog} bytes "
                              "waiting for it to read")
            return
        if inst is not None and not self.queue:
            inst.forward(sink, message, now + timeout_for(self.config, message), client_modern)
            if self._sweeper_idle:
                self._wake_sweeper()
            return
        if self.state not in SERVING and self.state not in (State.STARTING, State.BACKOFF):
            if not self._failed and (
                    (self.config.start == "lazy" and self.state == State.STOPPED)
                    or (self._idle_stopped and self.state in (State.STOPPED, State.STOPPING))):
                self.start()  # this request waits in the queue until the child is ready
            else:
                self.stats.refused(message["method"], Outcome.UNAVAILABLE)
                sink.deliver(errors.unavailable(
                    message["id"], self.name, f"server '{self.name}' is {self.state}: {self.reason}",
                    state=str(self.state), reason=self.reason))
                return
        if len(self.queue) >= self.config.max_queue:
            self._refuse_busy(sink, message, f"'{self.name}' has {self.in_flight} requests in "
                              f"flight and {len(self.queue)} queued")
            return
        self.queue.append(Queued(sink, message, now + timeout_for(self.config, message), client_modern, now))
        if self._sweeper_idle:
            self._wake_sweeper()

    def _refuse_busy(self, sink: Sink, message: Message, why: str) -> None:
        self.busy_total += 1
        self.stats.refused(message["method"], Outcome.BUSY)
        retry_ms = retry_after_ms(self.config.max_in_flight, len(self.ready_instances), len(self.queue),
                                  self.latencies)
        sink.deliver(errors.busy(message["id"], self.name, why, retry_ms))

    def refuse_rate_limited(self, sink: Sink, message: Message, retry_after: float) -> None:
        self.rate_limited_total += 1
        limit = self.config.rate_limit.text if self.config.rate_limit else "its limit"
        sink.deliver(rate_limited(message["id"], f"server '{self.name}' is over {limit}", retry_after,
                                  self.name))

    def _undeclared(self, sink: Sink, message: Message, capability: str, client_modern: bool) -> None:
        """Capability-aware routing: the child never sees a call it said it cannot serve. An empty
        list is the right answer to a list method; anything else is an unknown method."""
        method = message["method"]
        list_key = protocol.LIST_ITEMS.get(method)
        if list_key is not None:
            result: dict[str, Any] = {list_key[0]: []}
            if client_modern:
                protocol.modernize_result({"result": result}, method)
            sink.deliver({"jsonrpc": "2.0", "id": message["id"], "result": result})
            return
        sink.deliver(error_response(
            message["id"], METHOD_NOT_FOUND,
            f"Method not found: server '{self.name}' does not declare the "
            f"'{capability}' capability, so it does not serve {method}"))

    def _breaker_allows(self, sink: Sink, message: Message) -> bool:
        breaker = self.breaker
        if breaker.allow():
            self._refresh_serving()  # open → half-open: the reason now says a trial is under way
            return True
        retry_ms = breaker.retry_after_ms()
        sink.deliver(errors.circuit_open(
            message["id"], self.name,
            f"server '{self.name}' is failing fast: its circuit breaker opened after "
            f"{breaker.errors} failures within {breaker.window:g}s (last: {breaker.last_failure}); "
            f"it lets a trial call through in {retry_ms} ms", retry_ms, breaker.current()))
        return False

    def _dispatch_queue(self) -> None:
        queue = self.queue
        limit = self.config.max_in_flight
        while queue:
            inst = least_loaded(self.ready_instances, limit)
            if inst is None:
                return
            item = queue.popleft()
            inst.forward(item.sink, item.message, item.deadline, item.client_modern)

    def request_done(self, instance: Instance, pending: Pending, outcome: Outcome = OK) -> None:
        if pending.span is not None and tracing.active is not None:
            tracing.active.end(pending.span, None, None if outcome is OK else outcome.label)
        if not isinstance(pending.sink, Waiter):  # the daemon's own requests are not traffic
            now = self._monotonic()
            self.calls_total += 1
            self.last_active = now
            elapsed = now - pending.started
            self.latencies.append(elapsed)
            self.stats.record(pending.method, outcome, elapsed)
            if outcome is not OK:
                self.errors_total += 1
                self._settle(pending, outcome)
            elif self.breaker.state is not CLOSED and self.breaker.success():
                log.info("%s: circuit breaker closed: a trial call succeeded", self.name)
                self._refresh_serving()
        if instance.draining and not instance.pending:
            instance.drained.set()
        if self.queue:
            self._dispatch_queue()

    def slot_freed(self) -> None:
        """A call in a child stopped holding its slot without ending (parked for its client's
        input_required retry): a queued request may take it."""
        if self.queue:
            self._dispatch_queue()

    def _settle(self, pending: Pending, outcome: Outcome) -> None:
        """A call that did not end OK, told to the breaker (which opens or, for a trial that got an
        answer, closes)."""
        if getattr(pending.sink, "awaiting_client", False):
            # Parked for an input_required retry that never came (the call timed out, or the
            # child gave up waiting for the answer): the client left, the child is fine.
            self.breaker.neutral()
            return
        if outcome is Outcome.TIMEOUT:
            self._probe_soon.set()  # is the child hung? do not wait for the next health round
        if self.breaker.settle(outcome, shown(pending.method)):
            if self.breaker.state is CLOSED:
                log.info("%s: circuit breaker closed: a trial call succeeded", self.name)
            else:
                log.warning("%s: %s", self.name, self.breaker.describe())
            self._refresh_serving()

    def cancel(self, sink: Sink, client_id: Any, reason: str = "cancelled by the client") -> bool:
        """A client's notifications/cancelled: drop it from the queue or cancel it in the child."""
        if self.clients is not None:
            return self.clients.cancel(sink, client_id, reason)
        left_flight = False
        if self.cache is not None:
            held, orphan = self.cache.withdraw(sink, client_id)
            if held:
                if orphan is None:
                    return True  # others still wait for the same answer: the child keeps working
                # Nobody waits any more: cancel the shared request itself.
                sink, client_id, left_flight = orphan, orphan.routed_id, True
        for item in self.queue:
            if origin_of(item.sink) is sink and item.message.get("id") == client_id:
                self.queue.remove(item)
                return True
        for inst in self.instances:
            for cid, pending in list(inst.pending.items()):
                if origin_of(pending.sink) is sink and pending.client_id == client_id:
                    inst.cancel(cid, reason)
                    self.request_done(inst, pending, Outcome.CANCELLED)
                    return True
        return left_flight

    def drop_sink(self, sink: Sink) -> int:
        """The client went away: forget its queued requests and cancel its in-flight ones."""
        if self.clients is not None:
            return self.clients.drop_sink(sink)
        dropped = 0
        if self.cache is not None:
            for flight in self.cache.leave_all(sink):
                if self.cancel(flight, flight.routed_id, "the client disconnected"):
                    dropped += 1
        if self.queue:
            kept = collections.deque(q for q in self.queue if origin_of(q.sink) is not sink)
            dropped += len(self.queue) - len(kept)
            self.queue = kept
        for inst in self.instances:
            for cid, pending in list(inst.pending.items()):
                if origin_of(pending.sink) is sink:
                    inst.cancel(cid, "the client disconnected")
                    self.request_done(inst, pending, Outcome.CANCELLED)
                    dropped += 1
        return dropped

    @property
    def in_flight(self) -> int:
        return sum(len(inst.pending) for inst in self.instances)

    @property
    def awaiting_input(self) -> int:
        """Of `in_flight`, the calls parked for their client's input_required retry."""
        return sum(inst.parked for inst in self.instances)

    # ---- deadlines ------------------------------------------------------------------------------

    def _wake_sweeper(self) -> None:
        self._sweeper_idle = False
        self._work.set()

    async def _sweeper(self) -> None:
        while True:
            if not self.queue and not any(inst.pending for inst in self.instances):
                self._sweeper_idle = True
                self._work = anyio.Event()
                with anyio.move_on_after(IDLE_RECHECK):
                    await self._work.wait()
                continue
            await anyio.sleep(SWEEP_INTERVAL)
            self.expire(self._monotonic())

    def expire(self, now: float) -> None:
        for inst in list(self.instances):
            for pending in inst.expire(now):
                self.timeouts_total += 1
                self.request_done(inst, pending, Outcome.TIMEOUT)
        if self.queue and any(item.deadline <= now for item in self.queue):
            kept: collections.deque[Queued] = collections.deque()
            for item in self.queue:
                if item.deadline <= now:
                    self.timeouts_total += 1
                    self.errors_total += 1
                    self.stats.refused(item.message["method"], Outcome.TIMEOUT)
                    # A server that is up but cannot keep up is failing; one still starting is not.
                    if self.state in SERVING and self.breaker.failure(
                            f"{shown(item.message['method'])} timed out in the queue"):
                        self._refresh_serving()
                    item.sink.deliver(errors.timed_out(
                        item.message["id"], self.name,
                        f"server '{self.name}' could not take the request within "
                        f"{now - item.enqueued:.1f}s ({self.state}: {self.reason or 'busy'})"))
                else:
                    kept.append(item)
            self.queue = kept

    def _fail_queue(self, reason: str, *, only_unsafe: bool = False) -> None:
        kept: collections.deque[Queued] = collections.deque()
        for item in self.queue:
            if only_unsafe and item.message.get("method") in protocol.RETRY_SAFE_METHODS:
                kept.append(item)
                continue
            self.stats.refused(item.message["method"], Outcome.UNAVAILABLE)
            item.sink.deliver(errors.unavailable(item.message["id"], self.name, reason))
        self.queue = kept

    # ---- notifications and requests from the child ----------------------------------------------

    def child_notification(self, instance: Instance, message: Message) -> None:
        method = message["method"]
        if method == "notifications/tools/list_changed":
            self._spawn(self._refresh_tools, instance)
        if self.cache is not None:
            self.cache.notification(method)
        if method == "notifications/message":
            self._log_message(message.get("params") or {})
        if method == "notifications/resources/updated":
            # Only the sessions subscribed to that URI (and fan-outs such as the aggregate, which
            # hold no subscriptions of their own here).
            params = message.get("params")
            subscribed = self.subscriptions.sessions_for(params.get("uri") if isinstance(params, dict)
                                                         else None)
            for session in list(self.sessions):
                if session in subscribed or not getattr(session, "subscribes", False):
                    session.server_notification(self, message)
            return
        for session in list(self.sessions):
            session.server_notification(self, message)

    def child_request(self, instance: Instance, message: Message) -> None:
        """The child asks its client something: the one client whose call can have caused it
        gets it (a call parked for its client's retry waits on that client, so it is not asking)."""
        sinks = {id(p.sink): p.sink for p in instance.pending.values()}
        candidates = [s for s in sinks.values() if hasattr(s, "forward_server_request")
                      and not getattr(s, "awaiting_client", False)]
        roots = message["method"] == "roots/list"
        if roots:  # only a 2026-07-28 call is asked; everyone else gets the entry's roots (none)
            candidates = [s for s in candidates if getattr(s, "translates_input", False)]
        if len(candidates) == 1 and candidates[0].forward_server_request(instance, message):
            return
        if roots:
            instance.send({"jsonrpc": "2.0", "id": message["id"], "result": {"roots": []}})
            return
        instance.send(error_response(
            message["id"], -32603,
            f"mcp-supervisor cannot route {message['method']}: {len(candidates)} clients have "
            "requests in flight on this server, so the one that caused it is unknown"))

    def child_protocol_error(self, instance: Instance) -> None:
        self.protocol_errors_total += 1

    async def _refresh_tools(self, instance: Instance) -> None:
        try:
            tools = await instance.list_all("tools/list", self.config.request_timeout)
        except Exception as exc:  # a refresh failure must not take the server down
            log.warning("%s: re-reading tools after list_changed failed: %s", self.name, exc)
            return
        instance.tools = tools
        self.tools = tools
        self._tools_seen(tools)
        if self.owner_of is not None:
            self.owner_of._adopt(instance)
        if self.cache is not None:
            self.cache.tools_changed(tools)

    def _spawn(self, func: Callable[[Instance], Any], instance: Instance) -> None:
        if self._tg is not None:
            self._tg.start_soon(self._in_domain, func, instance)

    async def _in_domain(self, func: Callable[[Instance], Any], instance: Instance) -> None:
        with domain("task", f"{self.name} {getattr(func, '__name__', 'task')}"):
            await func(instance)

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._desired = True
        self._failed = False
        self._idle_stopped = False
        self.tracker.reset()
        self._recheck()
        self._poke.set()

    def _recheck(self) -> None:
        """A server that is not running and was asked to (re)start is `starting` at once: an
        unavailable one looks at its prerequisites again (a key may have been set, a package
        installed), a failed one is revived. A caller waiting for it to settle then waits for the
        outcome instead of reading the old state (and exiting 1 on it)."""
        if self._run_scope is None and self.state in (State.UNAVAILABLE, State.FAILED):
            self._set_state(State.STARTING, "checking prerequisites" if self.state == State.UNAVAILABLE
                            else "restarting")

    def stop(self, reason: str = "stopped") -> None:
        self._desired = False
        self._idle_stopped = False
        self._stop_reason = reason
        if self.clients is not None:
            if self.state in SERVING:
                self._set_state(State.STOPPING, "stopping the client instances")
            self.clients.stop_all(reason)
            return
        if self._run_scope is not None:
            self._stopping = True
            for inst in self.instances:
                inst.request_stop()
            self._set_state(State.STOPPING, "stop requested")
            self._run_scope.cancel()
        else:
            self._poke.set()

    def restart(self, reason: str = "manual") -> None:
        """Replace every child now: an operator's `restart` ("manual"), a reload ("config").

        Forgets the restart history and closes the breaker: someone decided to try again.
        """
        self._count_restart(reason, reason)
        if self.clients is not None:
            self.clients.stop_all(f"restarting ({reason})")  # new instances on next use
            return
        self._desired = True
        self._failed = False
        self._idle_stopped = False
        self.tracker.reset()
        self.breaker.reset()
        if self._run_scope is not None:
            for inst in self.instances:
                if inst.restart_reason is None:
                    inst.restart_reason = reason
            # Transitional at once, so a caller waiting for the server to settle waits for the
            # new child rather than seeing the old one still "ready".
            self._set_state(State.STOPPING, f"restarting ({reason})")
            self._run_scope.cancel()
        self._recheck()
        self._poke.set()

    def restart_instance(self, inst: Instance, kind: Exit, reason: str, *,
                         graceful: bool = False) -> None:
        """Replace one child the supervisor judged bad (unresponsive, over its memory limit).

        Graceful: the child takes no new requests (they queue for its replacement), the ones it
        has get up to `drain_timeout` to finish, then it is stopped and a new one started.
        """
        if inst.restart_kind is not None or inst.scope is None:
            return  # already on its way out
        inst.restart_kind = str(kind)
        inst.restart_reason = reason
        inst.draining = True
        log.warning("%s: replacing pid %s: %s", self.name, inst.pid, reason)
        if graceful and inst.pending and self._tg is not None:
            self._tg.start_soon(self._drain_then_stop, inst)
        else:
            inst.scope.cancel()

    async def _drain_then_stop(self, inst: Instance) -> None:
        with anyio.move_on_after(self.config.drain_timeout):
            await inst.drained.wait()
        if inst.scope is not None:
            inst.scope.cancel()

    def _count_restart(self, kind: str, reason: str) -> None:
        self.restarts += 1
        self.restart_reasons[kind] += 1
        at = self.clock.time()
        self.restart_history.append({"at": at, "kind": kind, "detail": REDACT(reason)})
        self.ctx.publish({"type": "restart", "server": self.name, "reason": kind, "detail": reason,
                          "at": at})

    async def wait_settled(self, timeout: float) -> None:
        """Wait until the server is in a state that is not transitional (or the timeout)."""
        if self.clients is not None and self.handshake is None and self.state in SERVING:
            self.clients.any_instance()  # the first handshake needs a child: start the spare
        with anyio.move_on_after(timeout):
            while self.transitional:
                await self._state_changed.wait()

    @property
    def transitional(self) -> bool:
        if self.clients is not None and self.state in SERVING:
            return self.handshake is None  # until the first instance has done its handshake
        return self.state in (State.STARTING, State.STOPPING, State.BACKOFF) or (
            self._desired and self.state == State.STOPPED and not self._failed)

    def _set_state(self, state: State, reason: str) -> None:
        reason = REDACT(reason)  # reasons quote the child's stderr and errors: never a secret
        if state == self.state and reason == self.reason:
            return
        self.state = state
        self.reason = reason
        self.since = self.clock.time()
        self.state_history.append({"at": self.since, "state": str(state), "reason": reason})
        self._state_changed.set()
        self._state_changed = anyio.Event()
        log.info("%s: %s%s", self.name, state, f" ({reason})" if reason else "")
        self.ctx.publish({"type": "state", "server": self.name, "state": str(state),
                          "reason": reason, "at": self.since})

    async def run(self) -> None:
        """The server's whole life: start when wanted, supervise, stop when told."""
        if self.clients is not None:
            await self._run_per_client(self.clients)
            return
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(loop_domain, f"{self.name} sweeper", self._sweeper)
            if self.cache is not None and self.cache.needs_worker:
                tg.start_soon(loop_domain, f"{self.name} cache worker", self.cache.worker)
            tg.start_soon(loop_domain, f"{self.name} health", self._health)
            if self.config.idle_stop_after:
                after = self.config.idle_stop_after
                tg.start_soon(loop_domain, f"{self.name} idle watch", lambda: self._idle_watch(after))
            while True:
                if not self._desired or self._failed:
                    if not self._failed and self.state != State.UNAVAILABLE:
                        if self.config.start == "lazy" and not self.calls_total:
                            self._stop_reason = "lazy: starts on first request"
                        self._set_state(State.STOPPED, self._stop_reason)
                    await self._wait_poke()
                    continue
                await self.load_secrets()
                unavailable = self.check_prerequisites()
                if unavailable:
                    self._set_state(State.UNAVAILABLE, unavailable)
                    self._fail_queue(f"server '{self.name}' is unavailable: {unavailable}")
                    await self._wait_poke()
                    continue
                self._set_state(State.STARTING, "spawning")
                self._note(f"starting: {self.describe_variables()}")
                if self.autoscaler is not None:
                    self.autoscaler.reset()
                with anyio.CancelScope() as scope:
                    self._run_scope = scope
                    async with anyio.create_task_group() as slots:
                        self._slot_group = slots
                        for _ in range(self.floor):
                            self._add_slot()
                self._slot_group = None
                self._slot_indices.clear()
                self._retiring.clear()
                self._run_scope = None
                self._stopping = False
                self._slot_states.clear()
                if not self._desired:
                    self._fail_queue(f"server '{self.name}' was stopped")

    async def _wait_poke(self) -> None:
        with anyio.move_on_after(IDLE_RECHECK):
            await self._poke.wait()
        self._poke = anyio.Event()

    async def _run_per_client(self, clients: ClientSet) -> None:
        """A per-client server: ready at once (its instances start on first use), until stopped."""
        while True:
            if not self._desired:
                self._set_state(State.STOPPED, self._stop_reason)
                await self._wait_poke()
                continue
            unavailable = self.check_prerequisites()
            if unavailable:
                self._set_state(State.UNAVAILABLE, unavailable)
                await self._wait_poke()
                continue
            self._set_state(State.READY, self._per_client_reason())
            await clients.run()  # returns once stop() asked and every instance has stopped

    @property
    def floor(self) -> int:
        """Instances the server starts with: `min_instances` when it autoscales, else `instances`."""
        return self.policy.min_instances if self.policy is not None else self.config.instances

    @property
    def target_instances(self) -> int:
        """Slots that are not being retired (starting ones included); the floor when not running."""
        if self._slot_group is None:
            return self.floor
        return len(self._slot_indices) - len(self._retiring)

    @property
    def sample_interval(self) -> float:
        """How often health.MemoryWatch samples this server: an autoscaled one at least three times
        per scale_up_window, so "stayed above for the window" means several samples agreed."""
        interval = self.config.memory_interval
        if self.policy is not None:
            interval = min(interval, max(0.05, self.policy.up_window / 3))
        return interval

    def _add_slot(self) -> int:
        assert self._slot_group is not None
        index = 0
        while index in self._slot_indices:
            index += 1
        self._slot_indices.add(index)
        self._slot_group.start_soon(self._slot, index)
        return index

    async def _slot(self, index: int) -> None:
        try:
            await self._slot_life(index)
        finally:
            self._slot_indices.discard(index)
            if index in self._retiring:
                self._retiring.discard(index)
                self._slot_states.pop(index, None)
                if self.state in SERVING:
                    self._derive_state()

    async def _slot_life(self, index: int) -> None:
        respawn = False
        while True:
            if index in self._retiring:
                return
            if respawn:
                await self.load_secrets()  # `run` read them for the first spawn
            respawn = True
            argv = self._argv()
            if argv is None:
                self._give_up(self.check_prerequisites() or "command not found", State.UNAVAILABLE)
                return
            cwd = self._expand(self.config.cwd) if self.config.cwd else self._default_cwd()
            inst = self.ctx.new_instance(
                server=self.name, index=index, argv=argv, env=self._spawn_env(), cwd=cwd, owner=self,
                init_timeout=self.config.init_timeout, stop_timeout=self.config.stop_timeout,
                max_message=self.ctx.max_message, roots=self.config.roots,
                era_hint=self.ctx.eras.get(self.config) if self.ctx.eras is not None else None,
                on_spawn=self._record_spawn, on_reaped=self._record_reaped, clock=self.clock)
            inst.unhealthy = Consecutive(self.config.unhealthy_after)
            self.instances.append(inst)
            self._set_slot(index, State.STARTING, "waiting for the MCP handshake")
            info: ExitInfo | None = None
            spawn_error = None
            try:
                # Cancelling this scope (restart_instance) ends just this child; cancelling the
                # run scope (stop, restart) ends every slot and propagates through here. The
                # instance is a failure domain: a bug while serving it counts as its crash (its
                # process is already ended: teardown runs shielded) and the policy decides.
                with anyio.CancelScope() as inst.scope, domain(
                        "instance", f"{self.name} slot {index}") as outcome:
                    try:
                        info = await inst.run(self._on_ready)
                    except SpawnError as exc:
                        spawn_error = str(exc)
                if outcome.failure is not None:
                    info = ExitInfo(None, inst.started_at is None, inst.stderr_tail.tail(5),
                                    inst.junk_lines)
                    info.error = f"internal error serving it: {type(outcome.failure).__name__}"
            finally:
                inst.scope = None
                self.instances.remove(inst)
                if inst in self.ready_instances:
                    self.ready_instances.remove(inst)
            if index in self._retiring:
                log.info("%s: pid %s stopped (autoscaled down)", self.name, inst.pid)
                return
            now = self._monotonic()
            if inst.restart_kind is not None:
                # Replaced on purpose (unresponsive, memory): counted, and at once.
                kind = Exit(inst.restart_kind)
                reason = inst.restart_reason or str(kind)
                self.last_exit = reason
                self.last_stderr = inst.stderr_tail.tail(5)
                self._count_restart(str(kind), reason)
                self.breaker.reset()  # its failures were this child's
                decision = self.tracker.exited(kind, now)
                if decision.give_up:
                    self._give_up(f"restart loop: {decision.why}; last: {reason}")
                    return
                self._set_slot(index, State.STARTING, f"restarting: {reason}")
                continue
            if info is None or info.before_ready:
                what = spawn_error or (info.describe() if info else "did not start")
                self.last_stderr = info.last_stderr if info else []
                last = (info.last_stderr[-1] if info and info.last_stderr else "").strip()
                reason = f"{what}: {last}" if last else what
                self.last_exit = reason
                self.restart_reasons[str(Exit.START_FAILURE)] += 1
                decision = self.tracker.exited(Exit.START_FAILURE, now)
                if decision.give_up:
                    self._give_up(f"{reason} ({decision.why})")
                    return
            else:
                uptime = self.clock.time() - (inst.started_at or self.clock.time())
                reason = f"crashed: {info.describe()}"
                if info.last_stderr:
                    reason += f": {info.last_stderr[-1].strip()}"
                self.last_exit = reason
                self.last_stderr = info.last_stderr
                self._count_restart(str(Exit.CRASH), reason)
                decision = self.tracker.exited(Exit.CRASH, now, uptime)
                if decision.give_up:
                    self._give_up(f"crash loop: {decision.why}; last: {reason}")
                    return
            if not self.ready_instances:
                self._fail_queue(f"server '{self.name}' {reason}", only_unsafe=True)
            self._set_slot(index, State.BACKOFF, f"{reason}; next start in {decision.delay:.1f}s")
            await anyio.sleep(decision.delay)

    def _on_ready(self, inst: Instance) -> None:
        eras = self.ctx.eras
        era = "modern" if inst.modern else "legacy"
        if eras is not None and eras.remember(self.config, era) and self._tg is not None:
            self._tg.start_soon(anyio.to_thread.run_sync, eras.save)
        self.ready_instances.append(inst)
        self.handshake = inst
        self.tracker.ready()
        self.tools = inst.tools
        self._tools_seen(inst.tools)
        if self.owner_of is not None:
            self.owner_of._adopt(inst)
        if self.cache is not None:
            self.cache.child_ready(inst)
        self.last_active = self._monotonic()
        self._set_slot(inst.index, State.READY, "")
        self._dispatch_queue()

    def _give_up(self, reason: str, state: State = State.FAILED) -> None:
        self._failed = state == State.FAILED
        if state == State.UNAVAILABLE:
            self._desired = True
        self._set_state(state, reason)
        self._fail_queue(f"server '{self.name}' {state}: {reason}")
        if self._run_scope is not None:
            for inst in self.instances:
                inst.request_stop()
            self._run_scope.cancel()

    def _set_slot(self, index: int, state: State, reason: str) -> None:
        self._slot_states[index] = (state, reason)
        if self.state in (State.FAILED, State.UNAVAILABLE, State.STOPPING) and state != State.READY:
            return
        self._derive_state()

    def _refresh_serving(self) -> None:
        """The breaker changed: ready ⇄ degraded (only while serving)."""
        if self.state in SERVING:
            self._derive_state()

    def _derive_state(self) -> None:
        """The server's state from its slots' (best first) and its breaker's (see `derived`)."""
        breaker = self.breaker
        derived = derive_state(self._slot_states.values(),
                               None if breaker.state is CLOSED else breaker.describe(),
                               len(self.ready_instances), self.target_instances)
        if derived is not None:
            self._set_state(*derived)

    # ---- health ---------------------------------------------------------------------------------

    async def _health(self) -> None:
        """Probe every ready child each `health_interval`, and soon after a real request timed out.

        After a failed probe the next one follows at once (the `ping_timeout` just spent is the
        spacing), so a hung child is replaced `unhealthy_after` timeouts after it is first caught.
        """
        interval = self.config.health_interval
        last = -PROBE_SPACING
        while True:
            with anyio.move_on_after(interval):
                await self._probe_soon.wait()
            if self._probe_soon.is_set():
                self._probe_soon = anyio.Event()
                wait = last + min(PROBE_SPACING, interval) - self._monotonic()
                if wait > 0:
                    await anyio.sleep(wait)
            last = self._monotonic()
            targets = [inst for inst in self.ready_instances if inst.restart_kind is None]
            if len(targets) == 1:
                await self._probe(targets[0])
            elif targets:
                async with anyio.create_task_group() as tg:
                    for inst in targets:
                        tg.start_soon(self._probe, inst)

    async def _probe(self, inst: Instance) -> None:
        timeout = self.config.ping_timeout
        while inst.ready and inst.restart_kind is None:
            try:
                await inst.probe(timeout)
            except UpstreamTimeout:
                pass
            except UpstreamGone:
                return  # it exited; the slot deals with that
            except SupervisorError:
                inst.unhealthy.observe(False)  # an error answer is still an answer
                return
            else:
                inst.unhealthy.observe(False)
                return
            if not inst.ready or inst.restart_kind is not None:
                return
            failures = inst.unhealthy.count + 1
            if inst.unhealthy.observe(True):
                probe = "server/discover" if inst.modern else "ping"
                self.restart_instance(inst, Exit.UNRESPONSIVE,
                                      f"unresponsive: {failures} {probe} probes in a row got no "
                                      f"answer within {timeout:g}s")
                return
            log.warning("%s: pid %s did not answer a health probe within %gs (%d/%d)", self.name,
                        inst.pid, timeout, failures, inst.unhealthy.threshold)

    def memory_sample(self, inst: Instance, sample: tuple[int, int, bool], cpu_seconds: float | None,
                      now: float) -> None:
        """A sample of `inst`'s tree (from health.MemoryWatch: bytes, processes, whether the bytes are
        PSS; CPU seconds): the instance keeps it, and `memory_limit` is enforced."""
        inst.took_sample(*sample, cpu_seconds, now)
        limit = self.config.memory_limit
        size = inst.memory_bytes or 0
        if not limit or inst.restart_kind is not None:
            inst.over_memory.reset()
            return
        over = size > limit
        if inst.over_memory.observe(over):
            self.restart_instance(inst, Exit.MEMORY,
                                  f"memory: {format_size(size)} > {format_size(limit)} limit",
                                  graceful=True)
        elif over:
            log.warning("%s: pid %s uses %s, over its %s limit (sample %d/%d)", self.name, inst.pid,
                        format_size(size), format_size(limit), inst.over_memory.count,
                        inst.over_memory.threshold)

    async def _idle_watch(self, after: float) -> None:
        check = max(0.05, min(after / 4, IDLE_RECHECK))
        while True:
            await anyio.sleep(check)
            self.idle_check(after)

    def idle_check(self, after: float) -> bool:
        """One look by the idle watch: stop a serving server with nothing to do for `after`
        seconds (the next request starts it again). True when it stopped it."""
        if self.state in SERVING and idle_due(self.last_active, self._monotonic(), after,
                                              self.in_flight + len(self.queue)):
            log.info("%s: idle for %s; stopping it until the next request", self.name,
                     format_duration(after))
            self.stop(f"idle: no requests for {format_duration(after)}; "
                      "starts again on the next request")
            self._idle_stopped = True
            return True
        return False

    def _record_spawn(self, record: ProcessRecord) -> None:
        self.ctx.direct_children.add(record.pid)
        if self.ctx.pids is not None:
            self.ctx.pids.add(record)

    def _record_reaped(self, pid: int) -> None:
        self.ctx.direct_children.discard(pid)
        if self.ctx.pids is not None:
            self.ctx.pids.remove(pid)

    # ---- autoscaling ----------------------------------------------------------------------------

    def autoscale(self, now: float, fleet_memory: int | None, memory_limit: int | None) -> None:
        """One observation for the autoscaler (from health.MemoryWatch, after a sample)."""
        scaler = self.autoscaler
        if scaler is None or self._slot_group is None or self._stopping or self.state not in SERVING:
            return
        ready = [inst for inst in self.ready_instances if not inst.draining]
        obs = observation(ready, self.target_instances, len(self.queue), self.config.max_in_flight,
                          fleet_memory, memory_limit)
        verdict = scaler.observe(now, obs)
        if verdict is not None:
            self._apply_scale(verdict, ready)

    def _apply_scale(self, verdict: Verdict, ready: list[Instance]) -> None:
        before = self.target_instances
        if verdict.direction == UP:
            self._add_slot()
            log.info("%s: scaling up: %s", self.name, verdict.reason)
        elif verdict.direction == DOWN:
            victim = scale_down_victim(ready)
            if victim is None:
                return
            self._retire(victim)
            log.info("%s: scaling down: %s; draining pid %s (%d in flight)", self.name,
                     verdict.reason, victim.pid, len(victim.pending))
        else:
            log.warning("%s: %s", self.name, verdict.reason)
        self.scale_events[verdict.direction] += 1
        self.last_scale = {"direction": verdict.direction, "reason": verdict.reason,
                           "from": before, "to": self.target_instances, "at": self.clock.time()}
        self.ctx.publish({"type": "scale", "server": self.name, **self.last_scale})
        if self.state in SERVING:
            self._derive_state()

    def _retire(self, inst: Instance) -> None:
        """Scale down by one: `inst` takes no new requests, finishes what it has (never cut: each
        call still has its own deadline), then is stopped and its slot ends."""
        assert self._slot_group is not None
        self._retiring.add(inst.index)
        inst.draining = True
        self._slot_group.start_soon(self._stop_retired, inst)
        if self.queue:
            self._dispatch_queue()

    async def _stop_retired(self, inst: Instance) -> None:
        if inst.pending:
            await inst.drained.wait()
        inst.request_stop()
        if inst.scope is not None:
            inst.scope.cancel()

    # ---- status ---------------------------------------------------------------------------------

    def detail(self) -> dict[str, Any]:
        """What `status` leaves out for size: recent history and the config (secrets masked)."""
        return {"state_history": list(self.state_history),
                "restart_history": list(self.restart_history),
                "config": summarize(self.config)}

    def status(self) -> dict[str, Any]:
        pids = [inst.pid for inst in self.all_instances if inst.pid is not None]
        ready = self.ready_instances
        started = min((i.started_at for i in ready if i.started_at), default=None)
        memory = [i.memory_bytes for i in self.all_instances if i.memory_bytes is not None]
        first = ready[0] if ready else None
        return {
            "name": self.name,
            "state": str(self.state),
            # A degraded server's reason counts down to the breaker's next trial call.
            "reason": (self.breaker.describe() if self.state == State.DEGRADED
                       and self.breaker.state is not CLOSED else self.reason),
            "since": self.since,
            "pid": pids[0] if pids else None,
            "pids": pids,
            "restarts": self.restarts,
            "restart_reasons": dict(self.restart_reasons),
            "uptime_s": round(self.clock.time() - started, 3) if started else None,
            "memory_bytes": sum(memory) if memory else None,
            "memory_limit": self.config.memory_limit,
            "in_flight": self.in_flight,
            "queued": len(self.queue),
            "protocol_version": first.protocol_version if first else None,
            "era": ("modern" if first.modern else "legacy") if first else None,
            "tools": len(self.visible_tools),
            "tools_hidden": len(self.tools) - len(self.visible_tools),
            # Tools whose definition differs from the pinned one (the dashboard marks them).
            "tool_changes": len(self.pins.changes),
            "changed_tools": sorted(self.pins.changes),
            "tool_changes_total": self.tool_changes_total,
            "on_tool_change": self.config.on_tool_change,
            "instances": len(ready),
            "target_instances": self.target_instances,
            "min_instances": self.policy.min_instances if self.policy else self.floor,
            "max_instances": self.policy.max_instances if self.policy else self.floor,
            "autoscale": self.policy is not None,
            "draining": sum(1 for i in ready if i.draining),
            "cpu": (round(sum(shares) / len(shares), 3)
                    if (shares := [i.cpu_share for i in ready if i.cpu_share is not None]) else None),
            # Every instance's whole process tree, in percent of one core (None until two samples).
            "cpu_percent": (round(100 * sum(trees), 1)
                            if (trees := [i.cpu_share for i in self.instances
                                          if i.cpu_share is not None]) else None),
            "last_scale": dict(self.last_scale) if self.last_scale else None,
            "scale_events": dict(self.scale_events),
            "calls_total": self.calls_total,
            "errors_total": self.errors_total,
            "timeouts_total": self.timeouts_total,
            "busy_total": self.busy_total,
            "rate_limited_total": self.rate_limited_total,
            "protocol_errors": self.protocol_errors_total,
            "rate_limit": self.config.rate_limit.text if self.config.rate_limit else None,
            "last_exit": REDACT(self.last_exit) if self.last_exit else None,
            "last_stderr": self.last_stderr,
            "breaker": self.breaker.status(),
            "probe_failures": max((i.unhealthy.count for i in ready), default=0),
            "start": self.config.start,
            "sharing": self.config.sharing,
            # sharing = "per-client": which client owns which instance.
            "clients": self.clients.status() if self.clients is not None else None,
            "variables": self.variables(),
        }
