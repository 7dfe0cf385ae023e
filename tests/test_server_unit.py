"""`Server` in-process: a fake clock and fake children, no subprocess, no sleeping for time.

Admission, deadlines, restart decisions, derived state, probes, idle stop and autoscaling, each
decided at an instant the test sets (see tests/server_fakes.py). The subprocess tests
(test_admission, test_health, test_autoscale, ...) stay for the end-to-end behaviour.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from supervisor.core.server import Server
from supervisor.core.server.admission import retry_after_ms
from supervisor.core.server.derived import derive_state
from supervisor.errors import CIRCUIT_OPEN, REQUEST_TIMEOUT, SERVER_BUSY, SERVER_UNAVAILABLE, UPSTREAM_GONE
from supervisor.policy.states import State

from .server_fakes import Children, FakeClock, Sink, call, make_server, ready, running, until


def made_and_ready(server: Server, children: Children, count: int) -> bool:
    """`count` children were made and the server is ready on the last one."""
    return len(children.made) == count and ready(server)()


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---- admission --------------------------------------------------------------------------------

async def test_admission_forwards_then_queues_then_refuses_busy(tmp_path: Path, clock: FakeClock,
                                                                 children: Children) -> None:
    """One slot in flight, one in the queue, the third is refused at once with retry_after_ms; an
    answer lets the queued one through to the child."""
    server = make_server(tmp_path, clock, children, max_in_flight=1, max_queue=1)
    async with running(server):
        await until(ready(server), "ready")
        child = children.made[0]
        sink = Sink()
        for request_id in (1, 2, 3):
            call(server, sink, request_id)
        assert len(server.queue) == 1 and server.in_flight == 1
        [busy] = sink.errors
        assert busy["code"] == SERVER_BUSY and busy["data"]["retry_after_ms"] >= 10
        assert server.busy_total == 1
        await until(lambda: len(child.requests()) == 1, "the first call reaches the child")
        clock.advance(0.2)
        child.answer(0, result={"content": []})
        assert [m["id"] for m in sink.messages if "result" in m] == [1]  # under the client's id
        assert not server.queue and server.in_flight == 1  # the queued one went to the child
        assert server.latencies[-1] == pytest.approx(0.2)  # measured on the injected clock


async def test_a_lazy_server_starts_on_the_first_request_and_serves_it(tmp_path: Path, clock: FakeClock,
                                                                       children: Children) -> None:
    server = make_server(tmp_path, clock, children, start="lazy")
    async with running(server):
        await until(lambda: server.state == State.STOPPED, "stopped")
        assert not children.made
        sink = Sink()
        call(server, sink, 7)
        await until(lambda: children.made and children.made[0].requests(), "the call reaches the child")
        children.made[0].answer(0)
        assert sink.messages[-1]["id"] == 7 and "result" in sink.messages[-1]


async def test_a_stopped_server_refuses_unavailable_with_its_state(tmp_path: Path, clock: FakeClock,
                                                                   children: Children) -> None:
    server = make_server(tmp_path, clock, children)
    async with running(server):
        await until(ready(server), "ready")
        server.stop("maintenance")
        await until(lambda: server.state == State.STOPPED, "stopped")
        sink = Sink()
        call(server, sink, 1)
        [error] = sink.errors
        assert error["code"] == SERVER_UNAVAILABLE
        assert error["data"] == {"server": "fake", "state": "stopped", "reason": "maintenance"}


# ---- deadlines --------------------------------------------------------------------------------

async def test_a_call_past_its_deadline_is_answered_timeout_and_cancelled_in_the_child(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children, request_timeout=5.0)
    async with running(server):
        await until(ready(server), "ready")
        child = children.made[0]
        sink = Sink()
        call(server, sink, 1)
        clock.advance(4.9)
        server.expire(clock.monotonic())
        assert not sink.messages and server.in_flight == 1
        clock.advance(0.2)
        server.expire(clock.monotonic())
        [error] = sink.errors
        assert error["code"] == REQUEST_TIMEOUT and error["data"]["timeout_s"] == pytest.approx(5.1)
        assert server.timeouts_total == 1 and server.in_flight == 0
        await until(lambda: child.requests("notifications/cancelled") or any(
            m.get("method") == "notifications/cancelled" for m in child.received), "the cancel")


async def test_a_queued_call_past_its_deadline_times_out_in_the_queue(tmp_path: Path, clock: FakeClock,
                                                                      children: Children) -> None:
    server = make_server(tmp_path, clock, children, request_timeout=5.0, max_in_flight=1, max_queue=4)
    async with running(server):
        await until(ready(server), "ready")
        first, second = Sink(), Sink()
        call(server, first, 1)
        clock.advance(1.0)
        call(server, second, 2)  # queued: its deadline is 1 s after the first's
        clock.advance(4.5)
        server.expire(clock.monotonic())
        assert first.errors and first.errors[0]["code"] == REQUEST_TIMEOUT
        assert second.messages == [] and not server.queue  # the freed slot took it to the child
        clock.advance(1.0)
        server.expire(clock.monotonic())
        assert second.errors[0]["code"] == REQUEST_TIMEOUT


async def test_a_per_tool_timeout_overrides_the_request_timeout(tmp_path: Path, clock: FakeClock,
                                                                children: Children) -> None:
    server = make_server(tmp_path, clock, children, request_timeout=60.0, tool_timeouts={"slow": 2.0})
    async with running(server):
        await until(ready(server), "ready")
        sink = Sink()
        call(server, sink, 1, tool="slow")
        call(server, sink, 2, tool="echo")
        clock.advance(2.5)
        server.expire(clock.monotonic())
        assert [m["id"] for m in sink.messages] == [1] and server.in_flight == 1


# ---- restart decisions ------------------------------------------------------------------------

async def test_a_crash_fails_the_calls_it_took_and_the_child_is_started_again(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children, backoff_initial=0.0, backoff_max=0.01)
    async with running(server):
        await until(ready(server), "ready")
        sink = Sink()
        call(server, sink, 1)
        call(server, sink, 2)
        children.made[0].crash(3)
        await until(lambda: len(children.made) == 2 and ready(server)(), "a new child")
        assert [e["code"] for e in sink.errors] == [UPSTREAM_GONE, UPSTREAM_GONE]
        assert server.restarts == 1 and server.restart_reasons["crash"] == 1
        assert server.last_exit is not None and server.last_exit.startswith("crashed")
        # One crash is one breaker failure, however many calls it took along.
        assert server.breaker.recent_failures() == 1


async def test_more_crashes_than_max_restarts_within_the_window_give_up(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children, backoff_initial=0.0, backoff_max=0.01, max_restarts=1,
                         restart_window=60.0)
    async with running(server):
        await until(ready(server), "ready")
        children.made[0].crash()
        await until(lambda: len(children.made) == 2 and ready(server)(), "the second child")
        clock.advance(10.0)
        children.made[1].crash()
        await until(lambda: server.state == State.FAILED, "failed")
        assert "crash loop" in server.reason and len(children.made) == 2


async def test_crashes_spread_wider_than_the_window_never_give_up(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children, backoff_initial=0.0, backoff_max=0.01, max_restarts=1,
                         restart_window=60.0)
    async with running(server):
        for round_ in range(3):
            await until(functools.partial(made_and_ready, server, children, round_ + 1), "a child")
            clock.advance(61.0)
            children.made[round_].crash()
        await until(lambda: len(children.made) == 4 and ready(server)(), "the fourth child")
        assert server.restarts == 3


# ---- derived state ----------------------------------------------------------------------------

async def test_state_is_ready_with_a_count_until_every_instance_is_ready(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    children.hold_start = True
    server = make_server(tmp_path, clock, children, instances=2)
    async with running(server):
        await until(lambda: len(children.made) == 2, "two slots")
        assert server.state == State.STARTING
        children.made[0].may_start.set()
        await until(ready(server), "one ready")
        assert server.reason == "1/2 instances ready"
        children.made[1].may_start.set()
        await until(ready(server, 2), "both ready")
        assert server.reason == ""


async def test_an_open_breaker_makes_the_server_degraded_and_fails_fast(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children, breaker_errors=2, breaker_window=30.0,
                         breaker_cooldown=10.0, request_timeout=1.0)
    async with running(server):
        await until(ready(server), "ready")
        sink = Sink()
        call(server, sink, 1)
        call(server, sink, 2)
        clock.advance(1.5)
        server.expire(clock.monotonic())
        assert server.state == State.DEGRADED and "circuit breaker open" in server.reason
        call(server, sink, 3)
        assert sink.errors[-1]["code"] == CIRCUIT_OPEN
        assert sink.errors[-1]["data"]["retry_after_ms"] == 10_000  # on the fake clock
        clock.advance(10.0)  # the cooldown: one trial call goes through, and its answer closes it
        call(server, sink, 4)
        child = children.made[0]
        await until(lambda: len(child.requests()) == 3, "the trial call")
        child.answer(2)
        now: State = server.state  # read again: the trial call's answer changed it
        assert now == State.READY and server.breaker.state == "closed"


# ---- probes -----------------------------------------------------------------------------------

async def test_a_child_that_misses_unhealthy_after_probes_is_replaced(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    children.hung = True
    server = make_server(tmp_path, clock, children, unhealthy_after=2, ping_timeout=0.25,
                         health_interval=3600.0, backoff_initial=0.0, backoff_max=0.01)
    async with running(server):
        await until(ready(server), "ready")
        hung = children.made[0]
        children.hung = False
        await server.probes.probe(hung)  # two probes in a row, each given ping_timeout
        assert hung.restart_kind == "unresponsive"
        await until(lambda: len(children.made) == 2 and ready(server)(), "its replacement")
        assert server.restart_reasons["unresponsive"] == 1
        await server.probes.probe(children.made[1])  # it answers: nothing happens
        assert children.made[1].restart_kind is None and children.made[1].unhealthy.count == 0


# ---- memory -----------------------------------------------------------------------------------

async def test_memory_over_the_limit_for_consecutive_samples_replaces_the_child(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children, memory_limit="100MB", backoff_initial=0.0,
                         backoff_max=0.01)
    async with running(server):
        await until(ready(server), "ready")
        child = children.made[0]
        big = 200 * 1000 * 1000
        for sample in range(3):
            assert child.restart_kind is None, sample
            server.memory_sample(child, (big, 2, False), None, clock.monotonic())
        assert child.restart_kind == "memory" and child.memory_bytes == big
        await until(lambda: len(children.made) == 2 and ready(server)(), "its replacement")


async def test_a_sample_that_dips_under_the_limit_starts_the_count_over(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children, memory_limit="100MB")
    async with running(server):
        await until(ready(server), "ready")
        child = children.made[0]
        for size in (200, 200, 50, 200, 200):
            server.memory_sample(child, (size * 1000 * 1000, 1, False), None, clock.monotonic())
        assert child.restart_kind is None and child.over_memory.count == 2


async def test_cpu_samples_become_a_share_of_a_core(tmp_path: Path, clock: FakeClock,
                                                    children: Children) -> None:
    server = make_server(tmp_path, clock, children)
    async with running(server):
        await until(ready(server), "ready")
        child = children.made[0]
        server.memory_sample(child, (1000, 1, False), 10.0, clock.monotonic())
        assert child.cpu_share is None
        clock.advance(2.0)
        server.memory_sample(child, (1000, 1, False), 11.0, clock.monotonic())
        assert child.cpu_share == pytest.approx(0.5)
        assert server.status()["cpu_percent"] == pytest.approx(50.0)


# ---- idle stop --------------------------------------------------------------------------------

async def test_idle_stop_waits_for_quiet_then_stops_and_the_next_request_starts_it(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children, idle_stop_after=60.0)
    async with running(server):
        await until(ready(server), "ready")
        sink = Sink()
        call(server, sink, 1)
        clock.advance(120.0)
        assert not server.idle_check(60.0)  # a call in flight is not idle, however long ago
        await until(lambda: children.made[0].requests(), "the call reaches the child")
        children.made[0].answer(0)
        clock.advance(59.0)
        assert not server.idle_check(60.0)
        clock.advance(1.0)
        assert server.idle_check(60.0)
        await until(lambda: server.state == State.STOPPED, "stopped")
        assert server.reason.startswith("idle: no requests for")
        call(server, sink, 2)
        await until(lambda: len(children.made) == 2 and children.made[1].requests(), "started again")


# ---- autoscaling ------------------------------------------------------------------------------

async def test_a_queue_deeper_than_scale_up_queue_for_the_window_adds_an_instance(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children, stateless=True, min_instances=1, max_instances=2,
                         scale_up_queue=1, scale_up_window=5.0, max_in_flight=1, max_queue=10)
    async with running(server):
        await until(ready(server), "ready")
        sink = Sink()
        for request_id in range(1, 5):
            call(server, sink, request_id)
        assert len(server.queue) == 3
        server.autoscale(clock.monotonic(), None, None)
        clock.advance(4.0)
        server.autoscale(clock.monotonic(), None, None)
        assert server.target_instances == 1  # not for the whole window yet
        clock.advance(1.5)
        server.autoscale(clock.monotonic(), None, None)
        assert server.target_instances == 2 and server.scale_events["up"] == 1
        await until(ready(server, 2), "the added instance")
        assert len(server.queue) == 2 and server.in_flight == 2  # it took one from the queue
        assert server.last_scale is not None
        assert (server.last_scale["from"], server.last_scale["to"]) == (1, 2)


async def test_a_scale_up_that_would_cross_the_fleet_memory_limit_is_refused(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children, stateless=True, min_instances=1, max_instances=2,
                         scale_up_queue=1, scale_up_window=1.0, max_in_flight=1, max_queue=10)
    async with running(server):
        await until(ready(server), "ready")
        server.memory_sample(children.made[0], (600, 1, False), None, clock.monotonic())
        sink = Sink()
        for request_id in range(1, 5):
            call(server, sink, request_id)
        server.autoscale(clock.monotonic(), 600, 1000)
        clock.advance(1.5)
        server.autoscale(clock.monotonic(), 600, 1000)
        assert server.target_instances == 1 and server.scale_events["refused"] == 1


async def test_a_quiet_server_scales_down_to_its_floor_draining_the_least_busy(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children, stateless=True, min_instances=1, max_instances=2,
                         instances=1, scale_down_window=10.0)
    async with running(server):
        await until(ready(server), "ready")
        server.slots.add()  # as a scale-up would
        await until(ready(server, 2), "two ready")
        for child in children.made:
            server.memory_sample(child, (1000, 1, False), 0.0, clock.monotonic())
        for _ in range(3):
            clock.advance(6.0)
            for child in children.made:  # idle: no CPU used between samples
                server.memory_sample(child, (1000, 1, False), 0.0, clock.monotonic())
            server.autoscale(clock.monotonic(), None, None)
        assert server.scale_events["down"] == 1 and server.target_instances == 1
        await until(lambda: len(server.instances) == 1, "the retired one stopped")
        assert server.instances[0] is children.made[0]  # the newest went on a tie


# ---- the pure parts, as tables ----------------------------------------------------------------

@pytest.mark.parametrize(("slots", "breaker", "ready_count", "target", "expected"), [
    ([], None, 0, 1, None),
    ([(State.BACKOFF, "next start in 1.0s")], None, 0, 1, (State.BACKOFF, "next start in 1.0s")),
    ([(State.BACKOFF, "b"), (State.STARTING, "s")], None, 0, 2, (State.STARTING, "s")),
    ([(State.STARTING, "s"), (State.READY, "")], None, 1, 2, (State.READY, "1/2 instances ready")),
    ([(State.READY, ""), (State.READY, "")], None, 2, 2, (State.READY, "")),
    ([(State.READY, "")], "circuit breaker open", 1, 1, (State.DEGRADED, "circuit breaker open")),
    ([(State.STARTING, "s")], "circuit breaker open", 0, 1, (State.STARTING, "s")),
])
def test_derive_state(slots: list[tuple[State, str]], breaker: str | None, ready_count: int, target: int,
                      expected: tuple[State, str] | None) -> None:
    assert derive_state(slots, breaker, ready_count, target) == expected


@pytest.mark.parametrize(("max_in_flight", "ready_count", "queued", "latencies", "expected"), [
    (4, 1, 0, [], 50),  # no calls yet: 50 ms is the typical call
    (4, 1, 8, [0.1, 0.1, 0.1], 300),  # two capacities' worth ahead of it: three calls' time
    (4, 2, 8, [0.1], 200),
    (1, 1, 0, [0.001], 10),  # never under 10 ms
])
def test_retry_after_ms(max_in_flight: int, ready_count: int, queued: int, latencies: list[float],
                        expected: int) -> None:
    assert retry_after_ms(max_in_flight, ready_count, queued, latencies) == expected
