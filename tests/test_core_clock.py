"""Core parts beside the `Server` read the injected clock, so a fake one decides their time.

Sessions (client rate limits), the input-required table (state expiry), tool pins (a change's
"since"), the task book (TTL expiry), the fleet and its memory watch (when a sample is due), the
installer (an install's seconds) and the leftover-process cleanup (the SIGTERM grace), each driven
in-process by `FakeClock` (tests/server_fakes.py): the decision happens at the instant the test
sets, and no test sleeps for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from supervisor.config import RateLimit, parse_config
from supervisor.config.model import TaskSettings
from supervisor.core import process
from supervisor.core.fleet import Fleet
from supervisor.core.health import MemoryWatch
from supervisor.core.input_required import Ask, InputRequired
from supervisor.core.pins import ToolPins
from supervisor.core.server import FleetContext
from supervisor.core.sessions import Session
from supervisor.core.tasks import EXTENSION, TaskBook
from supervisor.errors import INVALID_PARAMS, RATE_LIMITED
from supervisor.policy.ratelimit import ClientLimits
from supervisor.wire import protocol
from supervisor.wire.outbox import Outbox

from .server_fakes import TOOLS, Children, FakeClock, Sink, make_server, ready, running, until

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def tools_call(request_id: int, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {}, **params}}


# ---- sessions ---------------------------------------------------------------------------------

async def test_a_sessions_client_rate_limit_refills_on_the_injected_clock(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    """A burst of two at 1/s: the third call is refused with its wait, and one fake second later
    (no real time passing) the bucket lets the next one through."""
    server = make_server(tmp_path, clock, children)
    limits = ClientLimits({"alice": RateLimit.parse("1/s", burst=2)})
    session = Session(server, Outbox(), max_message=1 << 20, client="alice", limits=limits, clock=clock)
    async with running(server):
        await until(ready(server), "ready")
        sink = Sink()
        for request_id in (1, 2, 3):
            session.on_message(tools_call(request_id), sink)
        [refused] = sink.errors
        assert refused["code"] == RATE_LIMITED
        assert refused["data"]["retry_after_ms"] == 1000  # one token at 1/s, on the fake clock
        clock.advance(0.5)
        session.on_message(tools_call(4), sink)
        assert len(sink.errors) == 2  # half a token: still refused
        clock.advance(0.5)
        session.on_message(tools_call(5), sink)
        assert len(sink.errors) == 2
        await until(lambda: len(children.made[0].requests()) == 3, "calls 1, 2 and 5 reach the child")


# ---- input-required -----------------------------------------------------------------------------

class Waiting:
    """The door's per-request sink: its answer, and whether it was woken (a question came)."""

    def __init__(self, client_id: Any) -> None:
        self.client_id = client_id
        self.response: dict[str, Any] | None = None
        self.woken = False
        self.translates_input = True

    def deliver(self, message: dict[str, Any]) -> None:
        self.response = message

    def set(self) -> None:
        self.woken = True


async def test_a_request_state_expires_with_the_childs_call_on_the_injected_clock(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    """The state an input_required answer carries lives as long as the child's call
    (`request_timeout` from when it was sent): a retry a fake second before that resumes the
    call, one a fake second after is refused as expired."""
    server = make_server(tmp_path, clock, children, request_timeout=30, max_in_flight=4)
    table = InputRequired(clock=clock)
    capabilities: dict[str, Any] = {"elicitation": {}}
    async with running(server):
        await until(ready(server), "ready")
        child = children.made[0]

        def ask_once(request_id: int) -> tuple[Waiting, str]:
            call = Waiting(request_id)
            ask = Ask("tools/call", {"name": "echo"}, capabilities)
            server.submit(call, tools_call(request_id), True)
            question = {"jsonrpc": "2.0", "id": f"name#{request_id}", "method": "elicitation/create",
                        "params": {"message": "your name?"}}
            assert table.child_asks(ask, call, child, question)
            assert call.woken
            parked = ask.parked
            assert parked is not None
            parked.input_required(call)
            assert call.response is not None
            return call, call.response["result"]["requestState"]

        def retry(request_id: int, state: str) -> Waiting:
            again = Waiting(request_id)
            params = {"name": "echo", "inputResponses": {"name": {"action": "accept"}},
                      "requestState": state}
            assert table.retry(tools_call(request_id), params, Ask("tools/call", params, capabilities), again)
            return again

        _, fresh = ask_once(1)
        clock.advance(29)
        resumed = retry(1, fresh)
        assert resumed.response is None  # no refusal: the answer goes to the child
        answer = {"jsonrpc": "2.0", "id": "name#1", "result": {"action": "accept"}}
        await until(lambda: answer in child.received, "the child gets its answer")

        _, stale = ask_once(2)
        clock.advance(31)
        refused = retry(2, stale)
        assert refused.response is not None
        assert refused.response["error"]["code"] == INVALID_PARAMS
        assert "expired" in refused.response["error"]["message"]


# ---- tool pins ----------------------------------------------------------------------------------

async def test_a_changed_tool_is_stamped_with_the_servers_clock(tmp_path: Path, clock: FakeClock,
                                                                children: Children) -> None:
    """A server's pins take its `FleetContext` clock: a tool seen changed carries that clock's
    wall time as `since`."""
    server = make_server(tmp_path, clock, children)
    server.tool_policy.seen(list(TOOLS))  # first sight: pinned
    clock.advance(42)
    server.tool_policy.seen([{**TOOLS[0], "description": "now it deletes files"}])
    assert server.pins.changes["echo"]["since"] == clock.time() == 1_700_001_042.0


def test_pins_stamp_each_new_change_and_keep_a_known_ones_time(tmp_path: Path, clock: FakeClock) -> None:
    """A change seen again keeps its first `since`; a further change is stamped anew."""
    pins = ToolPins(tmp_path / "pins.json", clock)
    pins.observe([{"name": "t", "description": "a"}])
    clock.advance(10)
    assert pins.observe([{"name": "t", "description": "b"}]) == ["t"]
    first = clock.time()
    clock.advance(10)
    assert pins.observe([{"name": "t", "description": "b"}]) == []
    assert pins.changes["t"]["since"] == first
    clock.advance(10)
    assert pins.observe([{"name": "t", "description": "c"}]) == ["t"]
    assert pins.changes["t"]["since"] == clock.time() == first + 20


# ---- tasks ----------------------------------------------------------------------------------------

async def test_a_finished_task_is_kept_for_its_ttl_on_the_injected_clock(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    """A task's record answers tasks/get until `ttl` fake seconds after it was created, and is
    forgotten (not found) once the clock passes it."""
    server = make_server(tmp_path, clock, children, tasks=["echo"])
    book = TaskBook(TaskSettings(ttl=60), clock=clock)
    meta: dict[str, Any] = {protocol.META_CLIENT_CAPABILITIES: {"extensions": {EXTENSION: {}}}}
    async with running(server):
        await until(ready(server), "ready")
        sink = Sink()
        created = tools_call(1, _meta=meta)
        assert book.intercept(server, created, created["params"], sink, None)
        task = sink.messages[0]["result"]
        assert task["createdAt"].startswith("2023-11-14T22:30:00")  # the fake wall clock, not today
        await until(lambda: children.made[0].requests(), "the task's call reaches the child")
        children.made[0].answer(0, result={"content": []})

        def get(request_id: int) -> dict[str, Any]:
            params = {"taskId": task["taskId"], "_meta": meta}
            msg = {"jsonrpc": "2.0", "id": request_id, "method": "tasks/get", "params": params}
            before = len(sink.messages)
            assert book.intercept(server, msg, params, sink, None)
            [answer] = sink.messages[before:]
            return answer

        clock.advance(59)
        assert book.expire() == 0
        assert get(2)["result"]["status"] == "completed"
        clock.advance(2)
        assert book.expire() == 1
        assert "Task not found" in get(3)["error"]["message"]


# ---- the fleet and its memory watch -------------------------------------------------------------

def test_the_fleet_and_its_memory_watch_read_the_contexts_clock(tmp_path: Path, clock: FakeClock) -> None:
    """The fleet's start is the context clock's wall time, and a server's sample is due again one
    `memory_interval` later on that clock, not on the system's."""
    config = parse_config('[servers.a]\ncommand = "/bin/true"\nmemory_interval = 10\n',
                          environ={"PATH": "/usr/bin:/bin"})
    ctx = FleetContext(environ={}, state_dir=tmp_path / "state", data_dir=tmp_path / "data", clock=clock,
                       new_instance=Children())
    fleet = Fleet(config, ctx)
    assert fleet.started == clock.time()
    watch = MemoryWatch(fleet)
    servers = fleet.supervised()
    assert [s.name for s in watch.due(servers)] == ["a"]
    clock.advance(9.9)
    assert watch.due(servers) == []
    clock.advance(0.1)
    assert [s.name for s in watch.due(servers)] == ["a"]
    assert watch.next_due["a"] == clock.monotonic() + 10


# ---- leftover processes ---------------------------------------------------------------------------

@contextmanager
def leftover(ignore_term: bool) -> Iterator[tuple[subprocess.Popen[str], process.ProcessRecord]]:
    """A real process in its own group, as a previous daemon's child is, once it is running;
    killed and reaped on the way out whatever the test did."""
    code = ("import signal, sys, time\n"
            + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
            + "print('ready', flush=True)\ntime.sleep(120)\n")
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            record = process.identify(proc.pid, "old")
            assert record is not None
            yield proc, record
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_leftover_that_ignores_sigterm_is_killed_when_its_grace_ends_on_the_clock(
        clock: FakeClock) -> None:
    """`end_leftovers` waits `grace` seconds of its clock between SIGTERM and SIGKILL: with a
    clock its `sleep` advances, the grace passes at once and the process ends by SIGKILL."""
    with leftover(ignore_term=True) as (proc, record):
        began = clock.monotonic()
        assert process.end_leftovers([record], grace=5.0, clock=clock, sleep=clock.advance) == [record]
        assert 5.0 <= clock.monotonic() - began < 5.1
        assert proc.wait(timeout=10) == -signal.SIGKILL


def test_a_leftover_that_obeys_sigterm_is_not_waited_on_for_the_whole_grace(clock: FakeClock) -> None:
    """A process that ends on SIGTERM ends the wait: less than its grace passes on the clock."""

    def sleep(seconds: float) -> None:  # the process needs real time to die; the grace is fake
        clock.advance(seconds)
        time.sleep(0.01)

    with leftover(ignore_term=False) as (proc, record):
        began = clock.monotonic()
        assert process.end_leftovers([record], grace=30.0, clock=clock, sleep=sleep) == [record]
        assert proc.wait(timeout=10) == -signal.SIGTERM
        assert clock.monotonic() - began < 30.0
