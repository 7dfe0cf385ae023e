"""What the autoscaler is shown of a server, and which instance a scale-down retires.

The policy itself (`policy.autoscale`) is pure and decides from an `Observation`; this module
builds that observation from the server's ready instances and picks the victim of a scale-down.
`Server.autoscale` applies the verdict (adds a slot, or drains one and stops it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from supervisor.policy.autoscale import Observation

if TYPE_CHECKING:
    from ..instance import Instance


def observation(ready: Sequence[Instance], target: int, queued: int, max_in_flight: int,
                fleet_memory: int | None, memory_limit: int | None) -> Observation:
    """`ready`: the serving instances that are not draining."""
    shares = [inst.cpu_share for inst in ready if inst.cpu_share is not None]
    sizes = [inst.memory_bytes for inst in ready if inst.memory_bytes]
    in_flight = sum(len(inst.pending) - inst.parked for inst in ready)  # parked: no load
    return Observation(
        instances=target, ready=len(ready), queue=queued,
        in_flight=in_flight, capacity=len(ready) * max_in_flight,
        cpu=sum(shares) / len(shares) if shares and len(shares) == len(ready) else None,
        fleet_memory=fleet_memory, memory_limit=memory_limit,
        instance_memory=sum(sizes) // len(sizes) if sizes else None)


def scale_down_victim(ready: Sequence[Instance]) -> Instance | None:
    """The instance a scale-down retires: the least busy (the newest on a tie), so the drain is
    short; None when fewer than two could serve (the floor is the policy's, this is a guard)."""
    candidates = [inst for inst in ready if inst.restart_kind is None]
    if len(candidates) <= 1:
        return None
    return min(candidates, key=lambda inst: (len(inst.pending), -inst.index))
