"""Autoscaling policy for `stateless = true` servers: when to add an instance, when to remove one.

Pure: it is fed explicit times and observations and answers with a verdict, so it is tested as
tables (tests/test_autoscale_policy.py). The server applies verdicts (core.server.Server.autoscale),
and core.health.MemoryWatch feeds it one observation per sample of the server's trees (memory and CPU
are read in the watch's worker thread, never on the event loop).

Rules:
- Up: the queue deeper than `scale_up_queue`, or the ready instances' mean CPU (1.0 = one core) at
  or above `scale_up_cpu`, in every sample for `scale_up_window`. Never past `max_instances`, and
  never while an added instance is still starting (it is about to take the queue).
- Memory: an added instance is estimated at the mean size of the running ones; if that would
  take the fleet past `[supervisor] memory_limit`, the scale-up is refused (said once per window).
- Down: an empty queue, mean CPU below `scale_down_cpu` and in-flight calls under `scale_down_cpu`
  of the ready instances' capacity, in every sample for `scale_down_window`. Never below
  `min_instances`. (A server whose calls wait on I/O uses little CPU while every slot is busy; the
  in-flight share keeps it from shrinking under load.)
- Any action starts both windows over: the next step needs fresh evidence about the new size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor.units import format_duration, format_size

if TYPE_CHECKING:
    from supervisor.config import ServerConfig

UP = "up"
DOWN = "down"
REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Policy:
    min_instances: int
    max_instances: int
    up_queue: int = 50
    up_cpu: float = 0.8
    down_cpu: float = 0.3
    up_window: float = 5.0
    down_window: float = 60.0

    @classmethod
    def for_config(cls, config: ServerConfig) -> Policy | None:
        """The server's policy, or None when it does not autoscale (not stateless, or max = min)."""
        if not config.stateless:
            return None
        low = config.min_instances or config.instances
        high = config.max_instances or low
        if high <= low:
            return None
        return cls(low, high, config.scale_up_queue, config.scale_up_cpu, config.scale_down_cpu,
                   config.scale_up_window, config.scale_down_window)


@dataclass(frozen=True, slots=True)
class Observation:
    """One sample of a server. `instances` counts every slot that is not being removed (starting
    ones too); `ready` those that serve; `capacity` is ready × max_in_flight."""

    instances: int
    ready: int
    queue: int
    in_flight: int
    capacity: int
    cpu: float | None = None  # mean CPU share per ready instance; None before two samples
    fleet_memory: int | None = None  # bytes the whole fleet uses now
    memory_limit: int | None = None  # [supervisor] memory_limit
    instance_memory: int | None = None  # mean bytes of this server's ready instances


@dataclass(frozen=True, slots=True)
class Verdict:
    direction: str  # UP, DOWN or REFUSED
    reason: str


def memory_refusal(obs: Observation) -> str | None:
    """Why one more instance would cross the fleet memory limit, or None when it fits."""
    if not obs.memory_limit or obs.fleet_memory is None or not obs.instance_memory:
        return None
    after = obs.fleet_memory + obs.instance_memory
    if after <= obs.memory_limit:
        return None
    return (f"one more instance (~{format_size(obs.instance_memory)}, the mean of the running ones) "
            f"would take the fleet to {format_size(after)}, over its "
            f"{format_size(obs.memory_limit)} memory_limit")


class Autoscaler:
    """One server's autoscaling state: since when each condition has held."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.up_since: float | None = None
        self.down_since: float | None = None

    def reset(self) -> None:
        self.up_since = None
        self.down_since = None

    def pressure(self, obs: Observation) -> str | None:
        p = self.policy
        if obs.queue > p.up_queue:
            return f"queue depth {obs.queue} > scale_up_queue {p.up_queue}"
        if obs.cpu is not None and obs.cpu >= p.up_cpu:
            return f"CPU {obs.cpu:.0%} per instance >= scale_up_cpu {p.up_cpu:.0%}"
        return None

    def quiet(self, obs: Observation) -> str | None:
        p = self.policy
        if obs.queue or obs.cpu is None or obs.cpu >= p.down_cpu:
            return None
        if obs.capacity and obs.in_flight >= p.down_cpu * obs.capacity:
            return None
        return (f"queue empty, CPU {obs.cpu:.0%} per instance < scale_down_cpu {p.down_cpu:.0%}, "
                f"{obs.in_flight} of {obs.capacity} slots busy")

    def observe(self, now: float, obs: Observation) -> Verdict | None:
        p = self.policy
        if obs.ready < obs.instances:
            # An instance is starting (added, or restarting): judge the new size once it serves.
            self.reset()
            return None
        why = self.pressure(obs)
        if why is not None:
            self.down_since = None
            if obs.instances >= p.max_instances:
                self.up_since = None
                return None
            if self.up_since is None:
                self.up_since = now
            if now - self.up_since < p.up_window:
                return None
            self.reset()
            held = f"{why} for {format_duration(p.up_window)}"
            refusal = memory_refusal(obs)
            if refusal is not None:
                return Verdict(REFUSED, f"scale-up refused: {refusal} ({held})")
            return Verdict(UP, f"{obs.instances} → {obs.instances + 1} instances: {held}")
        self.up_since = None
        calm = self.quiet(obs)
        if calm is None or obs.instances <= p.min_instances:
            self.down_since = None
            return None
        if self.down_since is None:
            self.down_since = now
        if now - self.down_since < p.down_window:
            return None
        self.reset()
        return Verdict(DOWN, f"{obs.instances} → {obs.instances - 1} instances: {calm} for "
                             f"{format_duration(p.down_window)}")


__all__ = ["DOWN", "REFUSED", "UP", "Autoscaler", "Observation", "Policy", "Verdict", "memory_refusal"]
