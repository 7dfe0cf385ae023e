"""The parts of `Server` (supervisor/core/server/), each on its own or through the facade in-process.

Restart decisions and the answer to an undeclared capability are pure and tested as tables; the
tool policy runs on real pins in a temporary directory; the sweeper runs against a fake target; the
lifecycle, admission's cancel/drop, graceful replacement, retirement, per-client instances, a
child's requests and the status row run a real `Server` on a fake clock with fake children
(tests/server_fakes.py). No subprocess, no sleeping for time.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from supervisor.config import parse_config
from supervisor.core.instance import ExitInfo
from supervisor.core.pins import ToolPins
from supervisor.core.server import ClientInstance, Server
from supervisor.core.server.admission import undeclared_answer
from supervisor.core.server.forward import Forward
from supervisor.core.server.restarts import Ending, RestartBook, Step, ending_of, next_step
from supervisor.core.server.tools import ToolPolicy
from supervisor.errors import METHOD_NOT_FOUND, SERVER_UNAVAILABLE, UPSTREAM_GONE
from supervisor.policy.states import Decision, Exit, State

from .server_fakes import Children, FakeClock, Sink, call, make_server, ready, running, until

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---- restart decisions, as tables -------------------------------------------------------------

def _exit(code: int | None, before_ready: bool, stderr: list[str]) -> ExitInfo:
    return ExitInfo(code, before_ready, stderr, 0)


@pytest.mark.parametrize(("kind", "reason", "info", "spawn_error", "expected"), [
    # Replaced on purpose: the kind and reason the supervisor set, the tail it saw.
    ("unresponsive", "unresponsive: 3 ping probes", _exit(-15, False, []), None,
     Ending(Exit.UNRESPONSIVE, "unresponsive: 3 ping probes", ["tail"])),
    ("memory", None, None, None, Ending(Exit.MEMORY, "memory", ["tail"])),
    # Never got through the handshake: a start failure, with the last stderr line.
    (None, None, _exit(1, True, ["boom \n"]), None,
     Ending(Exit.START_FAILURE, "exited with code 1 before answering the handshake: boom",
            ["boom \n"])),
    (None, None, None, "No such file", Ending(Exit.START_FAILURE, "No such file", [])),
    (None, None, None, None, Ending(Exit.START_FAILURE, "did not start", [])),
    # Served, then went away: a crash, with its uptime.
    (None, None, _exit(-9, False, []), None, Ending(Exit.CRASH, "crashed: killed by signal 9", [], 12.5)),
    (None, None, _exit(2, False, ["a", "last words"]), None,
     Ending(Exit.CRASH, "crashed: exited with code 2: last words", ["a", "last words"], 12.5)),
])
def test_ending_of_names_how_a_child_ended(kind: str | None, reason: str | None, info: ExitInfo | None,
                                          spawn_error: str | None, expected: Ending) -> None:
    assert ending_of(kind, reason, ["tail"], info, spawn_error, 12.5) == expected


@pytest.mark.parametrize(("ending", "decision", "expected"), [
    (Ending(Exit.MEMORY, "memory: 2 GiB", []), Decision(False, 0.0),
     Step(None, "restarting: memory: 2 GiB", 0.0)),
    (Ending(Exit.UNRESPONSIVE, "unresponsive", []), Decision(True, 0.0, "5 restarts within 60s"),
     Step("restart loop: 5 restarts within 60s; last: unresponsive", "restarting: unresponsive", 0.0)),
    (Ending(Exit.START_FAILURE, "no key", []), Decision(False, 2.0),
     Step(None, "no key; next start in 2.0s", 2.0)),
    (Ending(Exit.START_FAILURE, "no key", []), Decision(True, 0.0, "gave up after 3 failed starts"),
     Step("no key (gave up after 3 failed starts)", "", 0.0)),
    (Ending(Exit.CRASH, "crashed: exited with code 1", [], 3.0), Decision(False, 0.25),
     Step(None, "crashed: exited with code 1; next start in 0.2s", 0.25)),
    (Ending(Exit.CRASH, "crashed: x", [], 3.0), Decision(True, 0.0, "4 restarts within 60s"),
     Step("crash loop: 4 restarts within 60s; last: crashed: x", "", 0.0)),
])
def test_next_step_after_an_ending(ending: Ending, decision: Decision, expected: Step) -> None:
    assert next_step(ending, decision) == expected


def test_only_a_supervisor_replacement_is_replaced() -> None:
    assert [Ending(kind, "", []).replaced for kind in Exit] == [False, True, True, False]


def test_the_restart_book_counts_publishes_and_carries_over() -> None:
    events: list[dict[str, Any]] = []
    book = RestartBook("fake", events.append, lambda: 5.0)
    book.count("crash", "crashed: exited with code 1")
    assert book.restarts == 1 and book.reasons == {"crash": 1}
    assert events == [{"type": "restart", "server": "fake", "reason": "crash",
                       "detail": "crashed: exited with code 1", "at": 5.0}]
    assert list(book.history) == [{"at": 5.0, "kind": "crash", "detail": "crashed: exited with code 1"}]
    successor = RestartBook("fake", events.append, lambda: 6.0)
    successor.carry_over(book)
    assert successor.restarts == 2 and successor.reasons == {"crash": 1, "config": 1}


# ---- the answer to an undeclared capability ---------------------------------------------------

def test_an_undeclared_list_method_gets_an_empty_list() -> None:
    answer = undeclared_answer("fake", {"jsonrpc": "2.0", "id": 3, "method": "prompts/list"}, "prompts",
                               False)
    assert answer == {"jsonrpc": "2.0", "id": 3, "result": {"prompts": []}}


def test_any_other_undeclared_method_is_method_not_found() -> None:
    answer = undeclared_answer("fake", {"jsonrpc": "2.0", "id": 4, "method": "prompts/get"}, "prompts",
                               False)
    assert answer["error"]["code"] == METHOD_NOT_FOUND
    assert "does not declare the 'prompts' capability" in answer["error"]["message"]


# ---- tool policy ------------------------------------------------------------------------------

def _policy(tmp_path: Path, **settings: str) -> tuple[ToolPolicy, list[dict[str, Any]]]:
    lines = "".join(f'{key} = "{value}"\n' for key, value in settings.items())
    config = parse_config(f'[servers.fake]\ncommand = "/bin/true"\n{lines}', environ={}).servers["fake"]
    events: list[dict[str, Any]] = []
    return ToolPolicy("fake", config, ToolPins(tmp_path / "pins.json"), events.append, lambda: 1.0), events


def _tool(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "description": description, "inputSchema": {"type": "object"}}


def test_a_changed_tool_is_held_back_until_approved_when_blocking(tmp_path: Path) -> None:
    policy, events = _policy(tmp_path, on_tool_change="block")
    first = [_tool("a", "one"), _tool("b", "two")]
    policy.seen(first)
    assert policy.visible(first) == first and not events  # first sight: pinned, nothing to say
    changed = [_tool("a", "one, changed"), _tool("b", "two")]
    epoch = policy.epoch
    policy.seen(changed)
    assert policy.blocked == {"a"} and policy.epoch > epoch and policy.changes_total == 1
    assert [t["name"] for t in policy.visible(changed)] == ["b"]
    assert events[-1]["action"] == "blocked" and events[-1]["tool"] == "a"
    assert policy.approve("a") == ["a"]
    assert policy.blocked == set() and policy.visible(changed) == changed
    assert events[-1]["action"] == "approved"


def test_a_changed_tool_is_still_served_when_warning(tmp_path: Path) -> None:
    policy, events = _policy(tmp_path)  # on_tool_change = "warn"
    policy.seen([_tool("a", "one")])
    changed = [_tool("a", "two")]
    policy.seen(changed)
    assert policy.visible(changed) == changed and policy.blocked == set()
    assert [e["action"] for e in events] == ["warned"]


def test_visible_tools_are_computed_once_per_list_and_epoch(tmp_path: Path) -> None:
    policy, _ = _policy(tmp_path, on_tool_change="block")
    tools = [_tool("a", "one")]
    policy.seen(tools)
    policy.seen([_tool("a", "two")])  # a gate now exists: "a" is held back
    assert policy.visible(tools) is policy.visible(tools)
    before = policy.visible(tools)
    policy.rebuild()
    assert policy.visible(tools) is not before  # a new epoch: looked at again


# ---- the facade's forwarded figures -----------------------------------------------------------

def test_a_forwarded_figure_reads_the_part_and_cannot_be_written(tmp_path: Path, clock: FakeClock,
                                                                children: Children) -> None:
    server = make_server(tmp_path, clock, children)
    server.admission.calls_total = 7
    assert server.calls_total == 7
    assert isinstance(Server.calls_total, Forward)
    with pytest.raises(AttributeError):
        server.calls_total = 8  # type: ignore[assignment]  # proving the figure is read-only


# ---- lifecycle --------------------------------------------------------------------------------

async def test_stop_then_start_goes_through_stopping_and_starts_a_new_child(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children)
    async with running(server):
        await until(ready(server), "ready")
        server.stop("maintenance")
        assert server.state == State.STOPPING
        await until(lambda: server.state == State.STOPPED, "stopped")
        assert server.reason == "maintenance" and not server.instances
        server.start()
        await until(lambda: len(children.made) == 2 and ready(server)(), "a new child")
        states = [entry["state"] for entry in server.detail()["state_history"]]
        changes = [state for i, state in enumerate(states) if i == 0 or states[i - 1] != state]
        assert changes == ["starting", "ready", "stopping", "stopped", "starting", "ready"]


async def test_restart_counts_the_operator_and_replaces_every_child(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children, instances=2)
    async with running(server):
        await until(ready(server, 2), "both ready")
        server.restart()
        assert server.state == State.STOPPING and server.transitional
        await until(lambda: len(children.made) == 4 and ready(server, 2)(), "two new children")
        assert server.restarts == 1 and server.restart_reasons == {"manual": 1}
        assert [entry["kind"] for entry in server.detail()["restart_history"]] == ["manual"]


async def test_a_missing_prerequisite_is_unavailable_and_refuses_requests_with_the_fix(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children, requires_env=["FAKE_API_KEY"])
    async with running(server):
        await until(lambda: server.state == State.UNAVAILABLE, "unavailable")
        assert "mcpctl secret set fake FAKE_API_KEY" in server.reason and not children.made
        sink = Sink()
        call(server, sink, 1)
        [refused] = sink.errors
        assert refused["code"] == SERVER_UNAVAILABLE and "FAKE_API_KEY" in refused["message"]


# ---- admission: taking requests back ----------------------------------------------------------

async def test_cancel_takes_a_queued_request_out_and_cancels_one_in_the_child(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children, max_in_flight=1)
    async with running(server):
        await until(ready(server), "ready")
        child = children.made[0]
        sink = Sink()
        call(server, sink, 1)
        call(server, sink, 2)
        assert len(server.queue) == 1
        assert server.cancel(sink, 2) and not server.queue
        await until(lambda: child.requests(), "the first reaches the child")
        assert server.cancel(sink, 1) and server.in_flight == 0
        await until(lambda: child.requests("notifications/cancelled") or any(
            m.get("method") == "notifications/cancelled" for m in child.received), "the child is told")
        assert not server.cancel(sink, 99)  # nothing of that id: False


async def test_a_client_that_goes_away_loses_its_queued_and_in_flight_requests_only(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children, max_in_flight=1)
    async with running(server):
        await until(ready(server), "ready")
        gone, staying = Sink(), Sink()
        call(server, gone, 1)
        call(server, staying, 1)
        call(server, gone, 2)
        assert server.drop_sink(gone) == 2  # one in the child, one queued
        assert not server.queue and server.in_flight == 1  # the staying call took the freed slot
        child = children.made[0]
        await until(lambda: len(child.requests()) == 2, "it reaches the child")
        child.answer(1)
        assert [m["id"] for m in staying.messages] == [1] and not gone.messages


# ---- slots: graceful replacement and retirement -----------------------------------------------

async def test_a_graceful_replacement_waits_for_the_call_in_flight(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children, drain_timeout=60.0, backoff_initial=0.0)
    async with running(server):
        await until(ready(server), "ready")
        child = children.made[0]
        sink = Sink()
        call(server, sink, 1)
        await until(lambda: child.requests(), "the call reaches the child")
        server.restart_instance(child, Exit.MEMORY, "memory: test", graceful=True)
        call(server, sink, 2)
        assert len(server.queue) == 1  # a draining child takes nothing new
        assert len(children.made) == 1  # still serving its call
        child.answer(0)
        await until(lambda: len(children.made) == 2 and ready(server)(), "its replacement")
        assert [m["id"] for m in sink.messages if "result" in m] == [1]
        assert server.restart_reasons == {"memory": 1} and server.last_exit == "memory: test"
        await until(lambda: children.made[1].requests(), "the queued call goes to the new child")


async def test_retiring_a_slot_drains_its_child_then_ends_the_slot(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children, instances=2)
    async with running(server):
        await until(ready(server, 2), "two ready")
        victim = children.made[1]
        sink = Sink()
        call(server, sink, 1)
        call(server, sink, 2)
        await until(lambda: victim.requests(), "a call on the victim")
        server.slots.retire(victim)
        assert server.target_instances == 1 and victim.draining
        victim.answer(0)
        await until(lambda: server.instances == [children.made[0]], "the victim stopped")
        assert len(children.made) == 2 and server.restarts == 0  # not restarted, not counted
        assert server.state == State.READY and server.reason == ""


# ---- per-client instances ---------------------------------------------------------------------

async def test_a_client_instance_is_made_by_its_constructor(tmp_path: Path, clock: FakeClock,
                                                           children: Children) -> None:
    parent = make_server(tmp_path, clock, children)
    config = dataclasses.replace(parent.config, start="eager")
    instance = Server(config, parent.ctx, client=ClientInstance(parent, "alice", "fake@alice", None))
    assert instance.name == "fake@alice" and instance.owner == "alice" and instance.owner_of is parent
    assert instance.pins is parent.pins  # one set of pinned definitions per configured server
    assert instance.state == State.STARTING and "alice" in instance.reason  # at once, before it runs
    async with running(instance):
        await until(ready(instance), "ready")
        assert parent.handshake is children.made[0] and parent.tools == children.made[0].tools


# ---- status -----------------------------------------------------------------------------------

async def test_the_status_row_shows_what_each_part_keeps(tmp_path: Path, clock: FakeClock,
                                                          children: Children) -> None:
    server = make_server(tmp_path, clock, children, backoff_initial=0.0, backoff_max=0.01)
    async with running(server):
        await until(ready(server), "ready")
        sink = Sink()
        call(server, sink, 1)
        await until(lambda: children.made[0].requests(), "the call")
        clock.advance(2.0)
        children.made[0].answer(0)
        call(server, sink, 2)
        children.made[0].crash(1)
        await until(lambda: len(children.made) == 2 and ready(server)(), "started again")
        row = server.status()
    assert sink.errors[-1]["code"] == UPSTREAM_GONE
    assert row["name"] == "fake" and row["state"] == "ready" and row["pid"] == children.made[1].pid
    assert row["calls_total"] == 2 and row["errors_total"] == 1 and row["in_flight"] == 0
    assert row["restarts"] == 1 and row["restart_reasons"] == {"crash": 1}
    assert row["last_exit"].startswith("crashed") and row["tools"] == 1 and row["tools_hidden"] == 0
    assert (row["instances"], row["target_instances"], row["autoscale"]) == (1, 1, False)
    assert row["breaker"]["state"] == "closed" and row["era"] == "legacy"
    assert row["uptime_s"] == 0.0  # on the fake clock: the new child started just now
    assert server.detail()["config"]["command"] == "/bin/true"


# ---- deadlines: the sweeper -------------------------------------------------------------------

class _Expiring:
    def __init__(self) -> None:
        self.busy = True
        self.expired: list[float] = []

    def expire(self, now: float) -> None:
        self.expired.append(now)
        self.busy = len(self.expired) < 2  # two sweeps, then nothing left to watch


async def test_the_sweeper_expires_while_busy_then_sleeps_until_woken(clock: FakeClock) -> None:
    import anyio

    from supervisor.core.server.deadlines import Sweeper

    target = _Expiring()
    sweeper = Sweeper(target, clock.monotonic)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sweeper.run)
        sweeper.wake()
        await until(lambda: sweeper.idle, "idle once nothing is left")
        assert target.expired == [clock.now, clock.now]  # on the injected clock
        target.busy = True
        clock.advance(5.0)
        sweeper.wake()
        await until(lambda: len(target.expired) == 3, "swept again once woken")
        assert target.expired[-1] == clock.now
        tg.cancel_scope.cancel()


# ---- a child's requests to its client ---------------------------------------------------------

class _Asking(Sink):
    """A client session that takes the child's requests."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[dict[str, Any]] = []

    def forward_server_request(self, instance: object, message: dict[str, Any]) -> bool:
        self.asked.append(message)
        return True


async def test_a_child_request_goes_to_the_one_client_that_can_have_caused_it(
        tmp_path: Path, clock: FakeClock, children: Children) -> None:
    server = make_server(tmp_path, clock, children)
    async with running(server):
        await until(ready(server), "ready")
        child = children.made[0]
        ask = {"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage", "params": {}}
        server.child_request(child, ask)  # nobody has a call in flight: the child is told
        roots = {"jsonrpc": "2.0", "id": "s2", "method": "roots/list"}
        server.child_request(child, roots)  # a legacy caller is never asked: the entry's roots
        def answers() -> dict[str, dict[str, Any]]:
            return {m["id"]: m for m in child.received if m.get("id") in ("s1", "s2")}

        await until(lambda: len(answers()) == 2, "both answered")
        answered = answers()
        assert answered["s1"]["error"]["code"] == -32603
        assert answered["s2"]["result"] == {"roots": []}
        client = _Asking()
        call(server, client, 1)
        server.child_request(child, {**ask, "id": "s3"})
        assert client.asked == [{**ask, "id": "s3"}]
