"""The `Server` facade: one configured server, tying its parts together (see the package docstring)."""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio

from supervisor.config import ServerConfig
from supervisor.domains import domain, loop_domain
from supervisor.policy.autoscale import Autoscaler, Policy
from supervisor.policy.breaker import CircuitBreaker
from supervisor.policy.counters import RequestStats
from supervisor.policy.states import SERVING, Exit, State
from supervisor.telemetry.logs import LineRing, LogBudget
from supervisor.wire.jsonrpc import Message, Sink

from ..instance import Instance
from ..pins import ToolPins
from ..subscriptions import Subscriptions
from . import status
from .admission import Queued
from .capacity import Capacity
from .child_requests import answer_child_request
from .childlog import STDERR_LOG_PER_SECOND, STDERR_RING, STDERR_RING_BYTES, ChildLog
from .context import FleetContext
from .entry import Entry
from .forward import Forward
from .intake import Admission, RequestDone
from .launch import Launch
from .lifecycle import Lifecycle
from .probes import Probes
from .restarts import Ending, RestartBook
from .slots import Slots
from .tools import ToolPolicy

log = logging.getLogger("mcp_supervisor.server")

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


@dataclass(frozen=True)
class ClientInstance:
    """What makes a server one client's instance of a `sharing = "per-client"` server."""

    parent: Server  # the configured server: it answers handshakes and lists from this one's child
    owner: str  # the client it belongs to
    name: str  # its own name: its HOME/TMPDIR and log lines
    client_dir: Path | None  # an anonymous client's directory, removed with the instance


class Server(Launch, ChildLog):
    """One configured server (see the package docstring for its parts)."""

    request_done: RequestDone  # how an instance says a call ended: straight to admission
    # The parts (declared here, made in __init__) that the forwarded figures below read.
    admission: Admission
    book: RestartBook
    tool_policy: ToolPolicy
    capacity: Capacity
    slots: Slots
    life: Lifecycle

    def __init__(self, config: ServerConfig, ctx: FleetContext,
                 per_client: Callable[[Server], ClientSet] | None = None, *,
                 client: ClientInstance | None = None) -> None:
        """`per_client` makes the client instances of a `sharing = "per-client"` server (the
        fleet passes `perclient.ClientInstances`); without it the server runs its own children.
        `client`: this server is one of those instances (`perclient` makes them)."""
        self.config = config
        self.name = client.name if client is not None else config.name
        self.ctx = ctx
        self.clock = ctx.clock
        self._monotonic = ctx.clock.monotonic  # bound once: the hot path reads it per request
        self.instances: list[Instance] = []  # every child, and the ready ones (changed by the slots)
        self.ready_instances: list[Instance] = []
        self.handshake: Instance | None = None  # the latest child that finished its handshake
        self.tools: list[dict[str, Any]] = []  # as its latest child lists them (before policy)
        self.stderr = LineRing(STDERR_RING, STDERR_RING_BYTES)
        self.stderr_at: collections.deque[float] = collections.deque(maxlen=STDERR_RING)
        """When each line of `stderr` arrived (aligned from the newest end; see `stderr_times`)."""
        self._stderr_budget = LogBudget(STDERR_LOG_PER_SECOND)
        self._message_budget = LogBudget(STDERR_LOG_PER_SECOND)
        self.sessions: set[Attached] = set()
        self.subscriptions = Subscriptions()  # resources/subscribe, per client session
        self.last_exit: str | None = None
        self.last_stderr: list[str] = []  # the last lines of the child that exited last
        self.protocol_errors_total = 0  # invalid MCP from any of its children, dropped
        self.breaker = CircuitBreaker(config.breaker_errors, config.breaker_window,
                                      config.breaker_cooldown, self._monotonic)
        self.book = RestartBook(self.name, ctx.publish, self.clock.time)
        # The parts (see the package docstring). Each gets the shared lists and objects it reads,
        # and this server for what it must ask (each part declares what, as a Protocol).
        self.admission = Admission(self, self.instances, self.ready_instances, self.breaker,
                                   self._monotonic, ctx.cluster_limits)
        self.request_done: RequestDone = self.admission.request_done  # per answer: no extra call
        self.slot_freed = self.admission.slot_freed
        self.expire = self.admission.expire
        self.latency_quantiles = self.admission.latency_quantiles
        self.probes = Probes(self, self.ready_instances, self._monotonic)
        policy = Policy.for_config(config)
        floor = policy.min_instances if policy is not None else config.instances
        self.slots = Slots(self, config, floor, self.instances, self.ready_instances, self.breaker,
                           self.clock)
        self.capacity = Capacity(self, config, policy, self.slots, self.admission, self.clock)
        self.autoscale = self.capacity.autoscale
        self.idle_check = self.capacity.idle_check
        self.life = Lifecycle(self, self.clock, ctx.publish, self.slots, self.admission, self.capacity,
                              self.book, self.breaker, self.instances)
        self.set_state = self.life.set
        self.start_on_request = self.life.start_on_request
        self.idle_stop = self.life.idle_stop
        self.give_up = self.life.give_up
        self.wait_settled = self.life.wait_settled
        self._tg: anyio.abc.TaskGroup | None = None
        self.route = self.admission.route  # admission proper; the cache worker's, for Redis misses
        self.refuse_rate_limited = self.admission.refuse_rate_limited
        self.cache = ctx.cache.front(config, self.route) if ctx.cache is not None else None
        pins = client.parent.pins if client is not None else ToolPins(
            ctx.state_dir / "tool-pins" / f"{self.name}.json", ctx.clock)  # a client's instance shares them
        self.tool_policy = ToolPolicy(self.name, config, pins, ctx.publish, self.clock.time)
        # sharing = "per-client": this server runs no child itself, one per client instead.
        self.clients = per_client(self) if per_client is not None else None
        self.life.clients = self.clients
        self.entry = Entry(self, self.tool_policy, self.cache, self.admission, self.clients)
        self.submit = self.entry.submit  # the hot path: straight in, no extra call
        self.cancel = self.entry.cancel
        self.drop_sink = self.entry.drop_sink
        self.owner_of = client.parent if client is not None else None
        self.owner = client.owner if client is not None else None
        self.client_dir = client.client_dir if client is not None else None
        # The daemon's environment plus this server's secrets, as read for the latest spawn.
        self.environ: Mapping[str, str] = ctx.environ
        self._secret_problems: tuple[str, ...] = ()
        self._env_file_error: str | None = None
        if client is not None:  # from now: a request before its task runs waits in its queue
            self.set_state(State.STARTING, f"starting for client {client.owner!r}")

    def succeed(self, old: Server) -> None:
        """A changed entry replaces `old`: the same server with a new config, so its restart
        count goes on (this is one more, for "config") and its log lines stay."""
        self.book.carry_over(old.book)
        self.stderr.extend(old.stderr)

    def config_comments_changed(self, config: ServerConfig) -> None:
        """A reload whose entry has the same fingerprint (only comments or order differ): keep
        the new text of the config, change nothing else."""
        self.config = config

    # ---- what the parts keep, read by the fleet, the doors and the metrics ----------------------

    queue = Forward["Server", collections.deque[Queued]](lambda s: s.admission.queue)
    in_flight = Forward["Server", int](lambda s: s.admission.in_flight)
    calls_total = Forward["Server", int](lambda s: s.admission.calls_total)
    errors_total = Forward["Server", int](lambda s: s.admission.errors_total)
    timeouts_total = Forward["Server", int](lambda s: s.admission.timeouts_total)
    busy_total = Forward["Server", int](lambda s: s.admission.busy_total)
    latencies = Forward["Server", collections.deque[float]](lambda s: s.admission.latencies)
    last_active = Forward["Server", float](lambda s: s.admission.last_active)
    stats = Forward["Server", RequestStats](lambda s: s.admission.stats)
    restarts = Forward["Server", int](lambda s: s.book.restarts)
    restart_reasons = Forward["Server", collections.Counter[str]](lambda s: s.book.reasons)
    pins = Forward["Server", ToolPins](lambda s: s.tool_policy.pins)
    blocked = Forward["Server", set[str]](lambda s: s.tool_policy.blocked)
    policy_epoch = Forward["Server", int](lambda s: s.tool_policy.epoch)
    tool_changes_total = Forward["Server", int](lambda s: s.tool_policy.changes_total)
    autoscaler = Forward["Server", Autoscaler | None](lambda s: s.capacity.autoscaler)
    scale_events = Forward["Server", collections.Counter[str]](lambda s: s.capacity.scale_events)
    last_scale = Forward["Server", dict[str, Any] | None](lambda s: s.capacity.last_scale)
    floor = Forward["Server", int](lambda s: s.slots.floor)
    target_instances = Forward["Server", int](lambda s: s.slots.target)

    @property
    def awaiting_input(self) -> int:
        """Of `in_flight`, the calls parked for their client's input_required retry."""
        return sum(inst.parked for inst in self.instances)

    @property
    def all_instances(self) -> list[Instance]:
        """Every child of this server, per-client instances included."""
        if self.clients is None:
            return self.instances
        return [inst for server in self.clients.servers for inst in server.instances]

    @property
    def visible_tools(self) -> list[dict[str, Any]]:
        """The tools clients see (policy applied)."""
        return self.tool_policy.visible(self.tools)

    @property
    def sample_interval(self) -> float:
        """How often health.MemoryWatch samples this server: an autoscaled one at least three times
        per scale_up_window, so "stayed above for the window" means several samples agreed."""
        interval = self.config.memory_interval
        policy = self.capacity.policy
        if policy is not None:
            interval = min(interval, max(0.05, policy.up_window / 3))
        return interval

    # ---- tool policy and per-client instances ---------------------------------------------------

    def _tell_sessions(self, *kinds: str) -> None:
        for kind in kinds:
            message = {"jsonrpc": "2.0", "method": f"notifications/{kind}/list_changed"}
            for session in list(self.sessions):
                session.server_notification(self, message)

    def apply_policy(self, config: ServerConfig) -> None:
        """A reload changed only what clients see (`POLICY_KEYS`): no restart, and every attached
        client is told to list again."""
        self.config = config
        self.tool_policy.config = config
        self.tool_policy.rebuild()
        self._tell_sessions("tools", "prompts", "resources")
        if self.clients is not None:
            for server in self.clients.servers:
                server.apply_policy(dataclasses.replace(config, sharing="shared", max_instances=None,
                                                        start="eager", idle_stop_after=None))

    def approve_tools(self, tool: str | None = None) -> list[str]:
        """`mcpctl tools approve`: pin what the child offers now; held-back tools come back."""
        approved = self.tool_policy.approve(tool)
        if approved:
            self._tell_sessions("tools")
            for server in self.clients.servers if self.clients is not None else ():
                server.tool_policy.rebuild()  # the pins are shared; each instance's gate is its own
                server._tell_sessions("tools")
        return approved

    def _adopt(self, inst: Instance) -> None:
        """A per-client instance finished a handshake or re-read its tools: the configured server
        answers handshakes and lists from it."""
        self.handshake = inst
        self.tools = inst.tools
        self.tool_policy.sync()
        self.life.changed()

    def per_client_changed(self) -> None:
        """An instance came or went: the reason says how many (and publishes a state event)."""
        if self.clients is not None and self.state in SERVING:
            self.set_state(self.state, self.life.per_client_reason())

    # ---- what admission asks of its server (`intake.AdmissionHost`; `start_on_request`: lifecycle's)

    def refresh_serving(self) -> None:
        """The breaker changed: ready ⇄ degraded (only while serving)."""
        if self.state in SERVING:
            self.slots.derive()

    def probe_soon(self) -> None:
        self.probes.soon()

    # ---- what the children say ------------------------------------------------------------------

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
        answer_child_request(instance, message)

    def child_protocol_error(self, instance: Instance) -> None:
        self.protocol_errors_total += 1

    async def _refresh_tools(self, instance: Instance) -> None:
        try:
            tools = await instance.list_all("tools/list", self.config.request_timeout)
        except Exception as exc:  # a refresh failure must not take the server down
            log.warning("%s: re-reading tools after list_changed failed: %s", self.name, exc)
            return
        instance.tools = tools
        self._tools_from(instance)
        if self.cache is not None:
            self.cache.tools_changed(tools)

    def _tools_from(self, instance: Instance) -> None:
        self.tools = instance.tools
        self.tool_policy.seen(instance.tools)
        if self.owner_of is not None:
            self.owner_of._adopt(instance)

    def _spawn(self, func: Callable[[Instance], Any], instance: Instance) -> None:
        if self._tg is not None:
            self._tg.start_soon(self._in_domain, func, instance)

    async def _in_domain(self, func: Callable[[Instance], Any], instance: Instance) -> None:
        with domain("task", f"{self.name} {getattr(func, '__name__', 'task')}"):
            await func(instance)

    def memory_sample(self, inst: Instance, sample: tuple[int, int, bool], cpu_seconds: float | None,
                      now: float) -> None:
        """A sample of `inst`'s tree from health.MemoryWatch (see `probes`)."""
        self.probes.memory_sample(inst, sample, cpu_seconds, now)

    # ---- what the slots ask of their server (`slots.SlotHost`) ----------------------------------

    def new_child(self, index: int) -> Instance | None:
        return self.spawn_child(index, self)

    def child_ready(self, inst: Instance) -> None:
        eras = self.ctx.eras
        if eras is not None and eras.remember(self.config, "modern" if inst.modern else "legacy") \
                and self._tg is not None:
            self._tg.start_soon(anyio.to_thread.run_sync, eras.save)
        self.handshake = inst
        self._tools_from(inst)
        if self.cache is not None:
            self.cache.child_ready(inst)
        self.admission.last_active = self._monotonic()

    def child_ended(self, inst: Instance, ending: Ending) -> None:
        self.last_exit = ending.reason
        self.last_stderr = ending.last_stderr
        if ending.kind == Exit.START_FAILURE:
            self.book.reasons[str(Exit.START_FAILURE)] += 1  # not a restart: it never served
        else:
            self.book.count(str(ending.kind), ending.reason)
        if ending.replaced:
            self.breaker.reset()  # its failures were this child's

    def fail_queue(self, reason: str, *, only_unsafe: bool = False) -> None:
        self.admission.fail_queue(reason, only_unsafe=only_unsafe)

    def publish(self, event: dict[str, Any]) -> None:
        self.ctx.publish(event)

    # ---- lifecycle (see `lifecycle`) ----------------------------------------------------------

    @property
    def state(self) -> State:
        return self.life.state

    @property
    def reason(self) -> str:
        return self.life.reason

    @property
    def since(self) -> float:
        return self.life.since

    transitional = Forward["Server", bool](lambda s: s.life.transitional)
    stopping = Forward["Server", bool](lambda s: s.life.stopping)

    def start(self) -> None:
        self.life.start()

    def stop(self, reason: str = "stopped") -> None:
        self.life.stop(reason)

    def restart(self, reason: str = "manual") -> None:
        """Replace every child now: an operator's `restart` ("manual"), a reload ("config")."""
        self.life.restart(reason)

    def restart_instance(self, inst: Instance, kind: Exit, reason: str, *,
                         graceful: bool = False) -> None:
        """Replace one child the supervisor judged bad (see `Slots.replace`)."""
        self.slots.replace(inst, kind, reason, graceful=graceful)

    async def run(self) -> None:
        """The server's whole life: start when wanted, supervise, stop when told."""
        if self.clients is not None:
            await self.life.supervise()
            return
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(loop_domain, f"{self.name} sweeper", self.admission.sweeper.run)
            if self.cache is not None and self.cache.needs_worker:
                tg.start_soon(loop_domain, f"{self.name} cache worker", self.cache.worker)
            tg.start_soon(loop_domain, f"{self.name} health", self.probes.run)
            if self.config.idle_stop_after:
                after = self.config.idle_stop_after
                tg.start_soon(loop_domain, f"{self.name} idle watch",
                              lambda: self.capacity.idle_watch(after))
            await self.life.supervise()

    # ---- status ---------------------------------------------------------------------------------

    def detail(self) -> dict[str, Any]:
        """What `status` leaves out for size: recent history and the config (secrets masked)."""
        return status.detail(self.config, list(self.life.history), self.book)

    def status(self) -> dict[str, Any]:
        return status.status_row(self, self.clock.time(), self.admission, self.tool_policy,
                                 self.capacity, self.book, self.breaker,
                                 self.clients.status() if self.clients is not None else None)
