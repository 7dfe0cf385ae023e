"""How many children a server runs for its load: autoscaling up and down, and idle stop.

The autoscaler's policy is pure (`policy.autoscale`) and `scaling` builds what it is shown; this
part applies its verdicts to the slots (add one; retire the least busy, which drains first) and
keeps what `status` shows of them. Idle stop is the other end of the same idea: a serving server
with nothing to do for `idle_stop_after` is stopped, and its next request starts it again.
"""

from __future__ import annotations

import collections
import logging
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from supervisor.policy.autoscale import DOWN, UP, Autoscaler, Policy, Verdict
from supervisor.policy.samples import idle_due
from supervisor.policy.states import SERVING, State
from supervisor.units import format_duration

from .scaling import observation, scale_down_victim

if TYPE_CHECKING:
    from supervisor.config import ServerConfig

    from ..clock import Clock
    from ..instance import Instance
    from .intake import Admission
    from .slots import Slots

log = logging.getLogger("mcp_supervisor.server")

IDLE_RECHECK = 30.0


class CapacityHost(Protocol):
    """The server whose children are counted: its state, and how it stops when idle."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> State: ...
    @property
    def stopping(self) -> bool:
        """A stop is under way: no scaling meanwhile."""
    def idle_stop(self, reason: str) -> None:
        """Stop until the next request."""
    def publish(self, event: dict[str, Any]) -> None: ...


class Capacity:
    def __init__(self, host: CapacityHost, config: ServerConfig, policy: Policy | None, slots: Slots,
                 admission: Admission, clock: Clock) -> None:
        self.host = host
        self.config = config
        self.slots = slots
        self.admission = admission
        self.clock = clock
        self.policy = policy
        self.autoscaler = Autoscaler(self.policy) if self.policy is not None else None
        self.scale_events: collections.Counter[str] = collections.Counter()
        self.last_scale: dict[str, Any] | None = None

    def autoscale(self, now: float, fleet_memory: int | None, memory_limit: int | None) -> None:
        """One observation for the autoscaler (from health.MemoryWatch, after a sample)."""
        scaler = self.autoscaler
        host = self.host
        if scaler is None or not self.slots.running or host.stopping or host.state not in SERVING:
            return
        ready = [inst for inst in self.admission.ready if not inst.draining]
        obs = observation(ready, self.slots.target, len(self.admission.queue),
                          self.config.max_in_flight, fleet_memory, memory_limit)
        verdict = scaler.observe(now, obs)
        if verdict is not None:
            self._apply(verdict, ready)

    def _apply(self, verdict: Verdict, ready: list[Instance]) -> None:
        name = self.host.name
        slots = self.slots
        before = slots.target
        if verdict.direction == UP:
            slots.add()
            log.info("%s: scaling up: %s", name, verdict.reason)
        elif verdict.direction == DOWN:
            victim = scale_down_victim(ready)
            if victim is None:
                return
            slots.retire(victim)
            log.info("%s: scaling down: %s; draining pid %s (%d in flight)", name,
                     verdict.reason, victim.pid, len(victim.pending))
        else:
            log.warning("%s: %s", name, verdict.reason)
        self.scale_events[verdict.direction] += 1
        self.last_scale = {"direction": verdict.direction, "reason": verdict.reason,
                           "from": before, "to": slots.target, "at": self.clock.time()}
        self.host.publish({"type": "scale", "server": name, **self.last_scale})
        if self.host.state in SERVING:
            slots.derive()

    async def idle_watch(self, after: float) -> None:
        check = max(0.05, min(after / 4, IDLE_RECHECK))
        while True:
            await anyio.sleep(check)
            self.idle_check(after)

    def idle_check(self, after: float) -> bool:
        """One look by the idle watch: stop a serving server with nothing to do for `after`
        seconds (the next request starts it again). True when it stopped it."""
        admission = self.admission
        if self.host.state in SERVING and idle_due(admission.last_active, self.clock.monotonic(), after,
                                                   admission.in_flight + len(admission.queue)):
            log.info("%s: idle for %s; stopping it until the next request", self.host.name,
                     format_duration(after))
            self.host.idle_stop(f"idle: no requests for {format_duration(after)}; "
                                "starts again on the next request")
            return True
        return False
