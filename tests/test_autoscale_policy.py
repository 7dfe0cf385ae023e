"""The autoscaling policy as tables: explicit times and observations, no daemon, no sleeps."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.config import ServerConfig
from supervisor.policy.autoscale import DOWN, REFUSED, UP, Autoscaler, Observation, Policy, memory_refusal

POLICY = Policy(min_instances=1, max_instances=3, up_queue=10, up_cpu=0.8, down_cpu=0.3,
                up_window=1.0, down_window=5.0)
MIB = 2**20


def obs(instances: int = 1, ready: int | None = None, queue: int = 0, in_flight: int = 0,
        cpu: float | None = 0.0, capacity: int | None = None, **memory: int | None) -> Observation:
    ready = instances if ready is None else ready
    return Observation(instances=instances, ready=ready, queue=queue, in_flight=in_flight,
                       capacity=ready * 8 if capacity is None else capacity, cpu=cpu, **memory)


def run(samples: list[tuple[float, Observation]], policy: Policy = POLICY) -> list[str | None]:
    scaler = Autoscaler(policy)
    out = []
    for now, sample in samples:
        verdict = scaler.observe(now, sample)
        out.append(verdict.direction if verdict else None)
    return out


@pytest.mark.parametrize(("samples", "expected"), [
    # The queue stays deep for the window: one step up, then the window starts over.
    ([(0, obs(queue=11)), (0.5, obs(queue=20)), (1.0, obs(queue=15)), (1.5, obs(queue=15))],
     [None, None, UP, None]),
    # One shallow sample in the middle restarts the window.
    ([(0, obs(queue=11)), (0.5, obs(queue=3)), (1.0, obs(queue=15)), (1.9, obs(queue=15)),
      (2.0, obs(queue=15))],
     [None, None, None, None, UP]),
    # Exactly at the threshold is not above it.
    ([(0, obs(queue=10)), (2, obs(queue=10))], [None, None]),
    # CPU at or above scale_up_cpu for the window.
    ([(0, obs(cpu=0.85)), (1.0, obs(cpu=0.9))], [None, UP]),
    ([(0, obs(cpu=0.85)), (0.5, obs(cpu=0.5)), (1.0, obs(cpu=0.9))], [None, None, None]),
    # Already at max_instances: never up.
    ([(0, obs(instances=3, queue=99)), (9, obs(instances=3, queue=99))], [None, None]),
    # An instance still starting: wait for it, and the window starts over once it serves.
    ([(0, obs(queue=50)), (1.0, obs(instances=2, ready=1, queue=50)), (1.5, obs(instances=2, queue=50)),
      (2.0, obs(instances=2, queue=50)), (2.5, obs(instances=2, queue=50))],
     [None, None, None, None, UP]),
])
def test_scale_up(samples: list[tuple[float, Observation]], expected: list[str | None]) -> None:
    assert run(samples) == expected


@pytest.mark.parametrize(("samples", "expected"), [
    # Quiet for the whole (longer) down window: one step down.
    ([(0, obs(instances=3, cpu=0.1)), (2.5, obs(instances=3, cpu=0.1)), (5.0, obs(instances=3, cpu=0.0))],
     [None, None, DOWN]),
    # Never below min_instances.
    ([(0, obs(instances=1, cpu=0.0)), (60, obs(instances=1, cpu=0.0))], [None, None]),
    # A queued request, or CPU at scale_down_cpu, breaks the quiet.
    ([(0, obs(instances=2, cpu=0.1)), (3, obs(instances=2, queue=1, cpu=0.1)),
      (5, obs(instances=2, cpu=0.1)), (9, obs(instances=2, cpu=0.1)), (10, obs(instances=2, cpu=0.1))],
     [None, None, None, None, DOWN]),
    ([(0, obs(instances=2, cpu=0.1)), (3, obs(instances=2, cpu=0.3)), (6, obs(instances=2, cpu=0.1))],
     [None, None, None]),
    # Low CPU but the slots are busy (calls waiting on I/O): not quiet.
    ([(0, obs(instances=2, cpu=0.01, in_flight=10)), (9, obs(instances=2, cpu=0.01, in_flight=10))],
     [None, None]),
    # No CPU reading yet: no evidence of quiet.
    ([(0, obs(instances=2, cpu=None)), (9, obs(instances=2, cpu=None))], [None, None]),
    # Pressure in between resets the quiet window.
    ([(0, obs(instances=2, cpu=0.1)), (4, obs(instances=2, queue=20)), (6, obs(instances=2, cpu=0.1)),
      (10, obs(instances=2, cpu=0.1)), (11, obs(instances=2, cpu=0.1))],
     [None, None, None, None, DOWN]),
])
def test_scale_down(samples: list[tuple[float, Observation]], expected: list[str | None]) -> None:
    assert run(samples) == expected


def test_a_scale_up_that_would_cross_the_fleet_memory_limit_is_refused_with_the_numbers() -> None:
    scaler = Autoscaler(POLICY)
    tight = {"fleet_memory": 150 * MIB, "memory_limit": 200 * MIB, "instance_memory": 60 * MIB}
    assert scaler.observe(0, obs(queue=50, **tight)) is None
    verdict = scaler.observe(1, obs(queue=50, **tight))
    assert verdict is not None and verdict.direction == REFUSED
    assert "60MiB" in verdict.reason and "210MiB" in verdict.reason and "200MiB" in verdict.reason
    assert "queue depth 50 > scale_up_queue 10" in verdict.reason
    # Said once per window, not on every sample.
    assert scaler.observe(1.5, obs(queue=50, **tight)) is None
    fits = {"fleet_memory": 100 * MIB, "memory_limit": 200 * MIB, "instance_memory": 60 * MIB}
    up = scaler.observe(2.5, obs(queue=50, **fits))
    assert up is not None and up.direction == UP


@pytest.mark.parametrize(("fleet", "limit", "each", "refused"), [
    (100, 200, 60, False),
    (140, 200, 60, False),  # exactly at the limit fits
    (141, 200, 60, True),
    (500, None, 60, False),  # no fleet limit
    (100, 200, None, False),  # nothing measured yet
])
def test_memory_refusal(fleet: int, limit: int | None, each: int | None, refused: bool) -> None:
    sample = obs(fleet_memory=fleet * MIB, memory_limit=limit and limit * MIB,
                 instance_memory=each and each * MIB)
    assert (memory_refusal(sample) is not None) == refused


def test_reasons_say_what_held_and_for_how_long() -> None:
    scaler = Autoscaler(POLICY)
    scaler.observe(0, obs(cpu=0.95))
    up = scaler.observe(1, obs(cpu=0.95))
    assert up is not None and up.reason == "1 → 2 instances: CPU 95% per instance >= scale_up_cpu 80% for 1s"
    scaler.observe(10, obs(instances=2, cpu=0.05, in_flight=1))
    down = scaler.observe(15, obs(instances=2, cpu=0.05, in_flight=1))
    assert down is not None and down.reason == (
        "2 → 1 instances: queue empty, CPU 5% per instance < scale_down_cpu 30%, 1 of 16 slots busy for 5s")


@pytest.mark.parametrize(("keys", "expected"), [
    ({}, None),  # not stateless
    ({"stateless": True}, None),  # stateless, but nothing to scale between
    ({"stateless": True, "instances": 3}, None),  # a fixed three
    ({"stateless": True, "max_instances": 4}, (1, 4)),
    ({"stateless": True, "instances": 2, "max_instances": 4}, (2, 4)),
    ({"stateless": True, "min_instances": 2, "max_instances": 10}, (2, 10)),
    ({"stateless": True, "min_instances": 3}, None),  # max defaults to min
])
def test_policy_from_config(keys: dict[str, Any], expected: tuple[int, int] | None) -> None:
    policy = Policy.for_config(ServerConfig(name="s", command="x", **keys))
    assert (None if policy is None else (policy.min_instances, policy.max_instances)) == expected
