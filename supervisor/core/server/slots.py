"""A running server's slots: one task per child, each starting, serving and restarting its own.

`Slots.run` is one run of the server (until stopped or restarted): it opens the run scope and a
task group, and starts `floor` slots. Each slot spawns its child (the `SlotHost` makes it), waits
for it to end, then follows the restart decision (`restarts`): start again at once, back off, or
give up; `replace` ends one child the probes judged bad, so that its slot starts another. The
autoscaler `add`s slots and `retire`s them (drain, then stop; the slot then ends).

The server's state is derived from its slots' (`derived`): `set` records a slot's state and, unless
the server is failed, unavailable or stopping, derives the server's from all of them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.abc

from supervisor.domains import domain
from supervisor.errors import SpawnError
from supervisor.policy.breaker import CLOSED, CircuitBreaker
from supervisor.policy.states import SERVING, Exit, RestartTracker, State

from ..instance import ExitInfo, Instance
from .derived import derive_state
from .restarts import Ending, ending_of, next_step

if TYPE_CHECKING:
    from supervisor.config import ServerConfig

    from ..clock import Clock

log = logging.getLogger("mcp_supervisor.server")


class SlotHost(Protocol):
    """What the slots need of their server: its children made, and told about."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> State: ...
    def set_state(self, state: State, reason: str) -> None: ...
    async def load_secrets(self) -> None: ...
    def check_prerequisites(self) -> str | None: ...
    def new_child(self, index: int) -> Instance | None:
        """The child for slot `index`, or None when its command cannot be found."""
    def child_ready(self, inst: Instance) -> None: ...
    def child_ended(self, inst: Instance, ending: Ending) -> None: ...
    def give_up(self, reason: str, state: State = ...) -> None: ...
    def fail_queue(self, reason: str, *, only_unsafe: bool = False) -> None: ...
    def slot_freed(self) -> None:
        """An instance may have room now: let the queue move."""


class Slots:
    """The slots of one server, and the run scope they live in."""

    def __init__(self, host: SlotHost, config: ServerConfig, floor: int, instances: list[Instance],
                 ready: list[Instance], breaker: CircuitBreaker, clock: Clock) -> None:
        self.host = host
        self.floor = floor
        self.instances = instances  # the server's lists, shared: changed only here
        self.ready = ready
        self.breaker = breaker
        self.clock = clock
        self._drain_timeout = config.drain_timeout
        self.tracker = RestartTracker(
            max_restarts=config.max_restarts, restart_window=config.restart_window,
            max_start_failures=config.max_start_failures, backoff_initial=config.backoff_initial,
            backoff_max=config.backoff_max, stable_after=config.stable_after)
        self.states: dict[int, tuple[State, str]] = {}
        self.scope: anyio.CancelScope | None = None  # the run scope, while running
        self._group: anyio.abc.TaskGroup | None = None
        self._indices: set[int] = set()
        self._retiring: set[int] = set()

    @property
    def running(self) -> bool:
        """Slots can be added and retired (a run is under way)."""
        return self._group is not None

    @property
    def target(self) -> int:
        """Slots that are not being retired (starting ones included); the floor when not running."""
        if self._group is None:
            return self.floor
        return len(self._indices) - len(self._retiring)

    async def run(self) -> None:
        """One run: `floor` slots until the run scope is cancelled (stop, restart, give up)."""
        with anyio.CancelScope() as scope:
            self.scope = scope
            async with anyio.create_task_group() as group:
                self._group = group
                for _ in range(self.floor):
                    self.add()
        self._group = None
        self._indices.clear()
        self._retiring.clear()
        self.scope = None
        self.states.clear()

    def cancel(self) -> bool:
        """End the run (every child); False when none is under way."""
        if self.scope is None:
            return False
        self.scope.cancel()
        return True

    def add(self) -> int:
        assert self._group is not None
        index = 0
        while index in self._indices:
            index += 1
        self._indices.add(index)
        self._group.start_soon(self._slot, index)
        return index

    def retire(self, inst: Instance) -> None:
        """Scale down by one: `inst` takes no new requests, finishes what it has (never cut: each
        call still has its own deadline), then is stopped and its slot ends."""
        assert self._group is not None
        self._retiring.add(inst.index)
        inst.draining = True
        self._group.start_soon(self._stop_retired, inst)
        self.host.slot_freed()

    def replace(self, inst: Instance, kind: Exit, reason: str, *, graceful: bool = False) -> None:
        """Replace one child the supervisor judged bad (unresponsive, over its memory limit).

        Graceful: the child takes no new requests (they queue for its replacement), the ones it
        has get up to `drain_timeout` to finish, then it is stopped and a new one started.
        """
        if inst.restart_kind is not None or inst.scope is None:
            return  # already on its way out
        inst.restart_kind = str(kind)
        inst.restart_reason = reason
        inst.draining = True
        log.warning("%s: replacing pid %s: %s", self.host.name, inst.pid, reason)
        if graceful and inst.pending and self._group is not None:
            self._group.start_soon(self._drain_then_stop, inst)
        else:
            inst.scope.cancel()

    async def _drain_then_stop(self, inst: Instance) -> None:
        with anyio.move_on_after(self._drain_timeout):
            await inst.drained.wait()
        if inst.scope is not None:
            inst.scope.cancel()

    async def _stop_retired(self, inst: Instance) -> None:
        if inst.pending:
            await inst.drained.wait()
        inst.request_stop()
        if inst.scope is not None:
            inst.scope.cancel()

    async def _slot(self, index: int) -> None:
        try:
            await self._life(index)
        finally:
            self._indices.discard(index)
            if index in self._retiring:
                self._retiring.discard(index)
                self.states.pop(index, None)
                if self.host.state in SERVING:
                    self.derive()

    async def _life(self, index: int) -> None:
        host = self.host
        respawn = False
        while True:
            if index in self._retiring:
                return
            if respawn:
                await host.load_secrets()  # the server's run read them for the first spawn
            respawn = True
            inst = host.new_child(index)
            if inst is None:
                host.give_up(host.check_prerequisites() or "command not found", State.UNAVAILABLE)
                return
            self.instances.append(inst)
            self.set(index, State.STARTING, "waiting for the MCP handshake")
            info, spawn_error = await self._serve(index, inst)
            if index in self._retiring:
                log.info("%s: pid %s stopped (autoscaled down)", host.name, inst.pid)
                return
            now = self.clock.monotonic()
            uptime = self.clock.time() - (inst.started_at or self.clock.time())
            ending = ending_of(inst.restart_kind, inst.restart_reason, inst.stderr_tail.tail(5), info,
                               spawn_error, uptime)
            host.child_ended(inst, ending)
            step = next_step(ending, self.tracker.exited(ending.kind, now, ending.uptime))
            if step.give_up is not None:
                host.give_up(step.give_up)
                return
            if ending.replaced:  # on purpose (unresponsive, memory): at once
                self.set(index, State.STARTING, step.slot_reason)
                continue
            if not self.ready:
                host.fail_queue(f"server '{host.name}' {ending.reason}", only_unsafe=True)
            self.set(index, State.BACKOFF, step.slot_reason)
            await anyio.sleep(step.delay)

    async def _serve(self, index: int, inst: Instance) -> tuple[ExitInfo | None, str | None]:
        """Run one child until it ends: how it ended, or why it could not be spawned."""
        info: ExitInfo | None = None
        spawn_error = None
        try:
            # Cancelling this scope (restart_instance) ends just this child; cancelling the
            # run scope (stop, restart) ends every slot and propagates through here. The
            # instance is a failure domain: a bug while serving it counts as its crash (its
            # process is already ended: teardown runs shielded) and the policy decides.
            with anyio.CancelScope() as inst.scope, domain(
                    "instance", f"{self.host.name} slot {index}") as outcome:
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
            if inst in self.ready:
                self.ready.remove(inst)
        return info, spawn_error

    def _on_ready(self, inst: Instance) -> None:
        self.ready.append(inst)
        self.tracker.ready()
        self.host.child_ready(inst)
        self.set(inst.index, State.READY, "")
        self.host.slot_freed()

    def set(self, index: int, state: State, reason: str) -> None:
        """Slot `index` is now `state`: the server's state follows (see the module docstring)."""
        self.states[index] = (state, reason)
        if self.host.state in (State.FAILED, State.UNAVAILABLE, State.STOPPING) and state != State.READY:
            return
        self.derive()

    def derive(self) -> None:
        """The server's state from its slots' (best first) and its breaker's (see `derived`)."""
        breaker = self.breaker
        derived = derive_state(self.states.values(),
                               None if breaker.state is CLOSED else breaker.describe(),
                               len(self.ready), self.target)
        if derived is not None:
            self.host.set_state(*derived)
