"""The tasks extension (io.modelcontextprotocol/tasks) run by the daemon on behalf of a legacy child.

Real daemon, real child (tests/servers/conformance_server.py, whose task-supporting tools say
`execution.taskSupport`), real HTTP requests, the real bridge (`mcpctl connect`), a real
redis-server for the shared store. The pure table is tested with a fake clock.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from supervisor.config import parse_config
from supervisor.core.tasks import EXTENSION
from supervisor.errors import ConfigError
from supervisor.policy.task_table import COMPLETED, INPUT_REQUIRED, WORKING, TableFull, TaskRecord, TaskTable

from .conftest import ECHO, MCPCTL, SERVERS, Daemon, MakeDaemon, free_port, server_toml, wait_for
from .redis_server import RedisServer
from .test_http import ACCEPT, MODERN, http_toml

CHILD = SERVERS / "conformance_server.py"
WITH_TASKS: dict[str, Any] = {"extensions": {EXTENSION: {}}, "elicitation": {}}


def envelope(capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities":
                WITH_TASKS if capabilities is None else capabilities,
            "io.modelcontextprotocol/clientInfo": {"name": "tasks-test", "version": "1"}}


_OPEN: list[Door] = []


@pytest.fixture(autouse=True)
def _close_doors() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().http.close()


class Door:
    """Raw 2026-07-28 requests to one daemon's HTTP door."""

    def __init__(self, port: int, path: str = "/mcp/conformance", token: str | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}{path}"
        self.http = httpx.Client(timeout=30, headers={"authorization": f"Bearer {token}"} if token else {})
        self.next_id = 0
        _OPEN.append(self)

    def request(self, method: str, params: dict[str, Any], name: str | None = None,
                capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        headers = {"accept": ACCEPT, "content-type": "application/json", "mcp-protocol-version": MODERN,
                   "mcp-method": method}
        if name is not None:
            headers["mcp-name"] = name
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": method,
                "params": {**params, "_meta": envelope(capabilities)}}
        reply = self.http.post(self.url, headers=headers, json=body)
        answer: dict[str, Any] = reply.json()
        return answer

    def call(self, tool: str, arguments: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return self.request("tools/call", {"name": tool, "arguments": arguments}, tool, **kw)

    def task(self, method: str, task_id: str, **extra: Any) -> dict[str, Any]:
        return self.request(method, {"taskId": task_id, **extra}, task_id)

    def created(self, tool: str, arguments: dict[str, Any]) -> str:
        reply = self.call(tool, arguments)
        assert reply.get("result", {}).get("resultType") == "task", reply
        return str(reply["result"]["taskId"])

    def status(self, task_id: str) -> dict[str, Any]:
        reply = self.task("tasks/get", task_id)
        assert "result" in reply, reply
        result: dict[str, Any] = reply["result"]
        return result

    def settled(self, task_id: str, timeout: float = 20) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            status = self.status(task_id)
            return status if status["status"] not in (WORKING, INPUT_REQUIRED) else None
        return wait_for(ended, timeout, what=f"task {task_id} to end")


def start(make_daemon: MakeDaemon, extra: str = "", subdir: str | None = None,
          **keys: Any) -> tuple[Daemon, Door]:
    port = free_port()
    daemon = make_daemon(http_toml(port) + extra + server_toml("conformance", CHILD, **keys),
                         subdir=subdir)
    daemon.wait_state("conformance", "ready")
    return daemon, Door(port)


# ---- the pure table ------------------------------------------------------------------------------

def record(task_id: str, created: float, ttl_ms: int = 1000) -> TaskRecord:
    return TaskRecord(task_id=task_id, server="s", tool="t", owner=None, created_at=created,
                      ttl_ms=ttl_ms, poll_ms=100)


def test_table_expires_a_task_at_its_ttl_and_not_before() -> None:
    """With a fake clock: a task is there until createdAt + ttlMs, and gone from then on."""
    table = TaskTable(max_tasks=10, max_bytes=10_000)
    table.add(record("a", 100.0, ttl_ms=1500), 100.0)
    assert table.get("a", 101.499) is not None
    assert table.next_expiry() == 101.5
    assert table.get("a", 101.5) is None
    assert table.stats()["expired"] == 1 and len(table) == 0


def test_table_refuses_a_task_beyond_max_tasks_unless_one_expired() -> None:
    table = TaskTable(max_tasks=2, max_bytes=10_000)
    table.add(record("a", 0.0, ttl_ms=1000), 0.0)
    table.add(record("b", 0.0, ttl_ms=5000), 0.0)
    with pytest.raises(TableFull):
        table.add(record("c", 0.5), 0.5)
    table.add(record("c", 2.0), 2.0)  # "a" expired at 1.0: its place is free
    assert set(table.tasks) == {"b", "c"} and table.stats()["refused"] == 1


def test_table_over_its_byte_bound_forgets_the_oldest_finished_tasks_first() -> None:
    table = TaskTable(max_tasks=10, max_bytes=300)
    running = record("running", 0.0, ttl_ms=10_000)
    table.add(running, 0.0)
    done = []
    for name in ("old", "new"):
        finished = record(name, 0.0, ttl_ms=10_000)
        table.add(finished, 0.0)
        finished.status = COMPLETED
        finished.result = {"content": [{"type": "text", "text": "x" * 100}]}
        assert table.changed(finished) == []
        done.append(finished)
    running.input_requests = {"k": {"method": "elicitation/create", "params": {"m": "y" * 80}}}
    evicted = table.changed(running)
    assert [r.task_id for r in evicted] == ["old"], "the oldest finished task goes, never a running one"
    assert "running" in table.tasks and table.bytes <= 300


def test_a_stored_record_that_is_not_one_is_refused() -> None:
    """Records read back from Redis are checked for shape: garbage is 'not found', never a crash."""
    good = record("a", 5.0)
    assert TaskRecord.from_blob(good.to_blob()) == good
    for blob in (b"not json", b"[]", b'{"id": 1}',
                 good.to_blob().replace(b'"working"', b'"exploded"')):
        assert TaskRecord.from_blob(blob) is None


def test_tasks_config_is_read_and_checked() -> None:
    config = parse_config('[tasks]\nttl = "10m"\npoll_interval = "250ms"\nmax_tasks = 5\n'
                          'max_bytes = "1MiB"\n' + server_toml("s", CHILD, tasks=["build_*"]))
    assert (config.tasks.ttl, config.tasks.poll_interval, config.tasks.max_tasks) == (600.0, 0.25, 5)
    assert config.tasks.max_bytes == 1024 * 1024 and config.servers["s"].tasks == ("build_*",)
    with pytest.raises(ConfigError) as info:
        parse_config("[tasks]\n\nmax_tasks = 0\n", path="fleet.toml")
    assert "fleet.toml:3: tasks.max_tasks" in str(info.value)
    with pytest.raises(ConfigError, match=r"tasks\.tll"):
        parse_config('[tasks]\ntll = "1h"\n')


# ---- through the daemon --------------------------------------------------------------------------

def test_discover_advertises_the_extension_and_only_task_supporting_tools_become_tasks(
        make_daemon: MakeDaemon) -> None:
    _, door = start(make_daemon)
    discovered = door.request("server/discover", {})
    assert EXTENSION in discovered["result"]["capabilities"]["extensions"]
    greet = door.call("greet", {"name": "World"})
    assert greet["result"]["resultType"] == "complete" and "taskId" not in greet["result"]
    # A task-supporting tool from a client that did not declare the extension runs synchronously.
    plain = door.call("slow_compute", {"seconds": 0, "label": "sync"}, capabilities={})
    assert plain["result"]["content"][0]["text"] == "computed sync after 0s"
    # ... and a required one is refused with the spec's -32021 and what is missing.
    refused = door.call("failing_job", {}, capabilities={})
    assert refused["error"]["code"] == -32021
    assert EXTENSION in refused["error"]["data"]["requiredCapabilities"]["extensions"]
    # tasks/* need the extension declared, a known id, and Mcp-Name carrying that id.
    for method in ("tasks/get", "tasks/update", "tasks/cancel"):
        reply = door.request(method, {"taskId": "x", "inputResponses": {}}, "x", capabilities={})
        assert reply["error"]["code"] == -32021, (method, reply)
    assert door.task("tasks/get", "no-such-task")["error"]["code"] == -32602
    assert door.request("tasks/list", {})["error"]["code"] == -32601  # removed by SEP-2663
    assert door.request("tasks/get", {"taskId": "a"}, name="b")["error"]["code"] == -32020
    # The aggregate: the same tasks under SERVER__tool names.
    aggregate = Door(door.port, "/mcp")
    task_id = aggregate.created("conformance__slow_compute", {"seconds": 0, "label": "agg"})
    assert aggregate.settled(task_id)["result"]["content"][0]["text"] == "computed agg after 0s"


def test_a_task_outlives_its_bridge_client_and_another_client_gets_the_result(
        make_daemon: MakeDaemon, workdir: Path) -> None:
    """The client that created the task goes away (its `mcpctl connect` is killed); a second
    client of the same user polls `tasks/get` and reads the child's result."""
    daemon, _ = start(make_daemon)

    def bridge() -> subprocess.Popen[bytes]:
        return subprocess.Popen([MCPCTL, "--socket", str(daemon.socket), "connect", "conformance"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=daemon.env)

    def ask(proc: subprocess.Popen[bytes], msg_id: int, method: str, params: dict[str, Any]) -> Any:
        assert proc.stdin is not None and proc.stdout is not None
        line = {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": {**params, "_meta": envelope()}}
        proc.stdin.write(json.dumps(line).encode() + b"\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    first = bridge()
    created = ask(first, 1, "tools/call", {"name": "slow_compute",
                                           "arguments": {"seconds": 1, "label": "outlived"}})
    task_id = created["result"]["taskId"]
    assert created["result"]["status"] == WORKING
    first.kill()
    first.wait(10)
    first.communicate()  # closes its pipes
    second = bridge()
    try:
        result = wait_for(lambda: (r := ask(second, 2, "tasks/get", {"taskId": task_id})["result"])
                          ["status"] == COMPLETED and r, 20, interval=0.2, what="the task to complete")
        assert result["result"]["content"][0]["text"] == "computed outlived after 1s"
        assert result["resultType"] == "complete"
    finally:
        second.communicate(timeout=10)  # closes its input: the bridge ends


def test_a_task_expires_at_its_ttl(make_daemon: MakeDaemon) -> None:
    """`[tasks] ttl`: the task and its result are there, then `tasks/get` says not found (-32602)."""
    _, door = start(make_daemon, '[tasks]\nttl = "2s"\npoll_interval = "50ms"\n')
    task_id = door.created("slow_compute", {"seconds": 0, "label": "short"})
    first = door.status(task_id)
    assert first["ttlMs"] == 2000 and first["pollIntervalMs"] == 50
    wait_for(lambda: door.task("tasks/get", task_id).get("error", {}).get("code") == -32602, 10,
             interval=0.1, what="the task to expire")


def test_cancel_reaches_the_child(make_daemon: MakeDaemon) -> None:
    """tasks/cancel acks at once, the task reads cancelled, and the child hears
    notifications/cancelled for its call (it says so on stderr and stops its work)."""
    daemon, door = start(make_daemon)
    task_id = door.created("slow_compute", {"seconds": 60, "label": "doomed"})
    ack = door.task("tasks/cancel", task_id)
    assert ack["result"] == {"resultType": "complete"}
    assert door.status(task_id)["status"] == "cancelled"
    wait_for(lambda: "slow_compute doomed stopped: cancelled" in daemon.ctl("logs", "conformance").stdout,
             10, what="the child to hear the cancellation")
    assert door.task("tasks/cancel", task_id)["result"] == {"resultType": "complete"}  # idempotent


def test_input_requests_of_a_task_are_answered_by_tasks_update(make_daemon: MakeDaemon) -> None:
    _, door = start(make_daemon)
    task_id = door.created("confirm_delete", {"filename": "a.txt"})
    asking = wait_for(lambda: (s := door.status(task_id))["status"] == "input_required" and s, 10,
                      what="the child's question")
    assert list(asking["inputRequests"]) == ["confirm_delete"]
    assert asking["inputRequests"]["confirm_delete"]["method"] == "elicitation/create"
    ack = door.task("tasks/update", task_id, inputResponses={
        "confirm_delete": {"action": "accept", "content": {"confirm": True}}, "unknown": {}})
    assert ack["result"] == {"resultType": "complete"}
    assert door.settled(task_id)["result"]["content"][0]["text"] == "a.txt: deleted"


def test_too_many_tasks_are_refused_with_a_clear_error(make_daemon: MakeDaemon) -> None:
    daemon, door = start(make_daemon, "[tasks]\nmax_tasks = 2\n")
    kept = [door.created("slow_compute", {"seconds": 60, "label": str(i)}) for i in range(2)]
    refused = door.call("slow_compute", {"seconds": 60, "label": "third"})
    assert refused["error"]["code"] == -32000, refused
    assert "too many tasks" in refused["error"]["message"]
    assert refused["error"]["data"]["max_tasks"] == 2
    # The same busy refusal as every other (errors.busy): the server, and when to retry.
    assert refused["error"]["data"]["server"] == "conformance"
    assert refused["error"]["data"]["retry_after_ms"] >= 10
    listed = json.loads(daemon.ctl("tasks", "--json").stdout)
    assert {row["task_id"] for row in listed["tasks"]} == set(kept)
    assert listed["stats"]["refused"] == 1
    table = daemon.ctl("tasks").stdout
    assert "slow_compute" in table and kept[0] in table
    for task_id in kept:
        door.task("tasks/cancel", task_id)


def test_a_second_daemon_answers_tasks_get_from_redis(make_daemon: MakeDaemon) -> None:
    """Two daemons share one redis-server (`[cache] backend = "redis"`): a task created on the first
    is read, running and then finished, through the second; a tasks/cancel sent to the second
    reaches the first (through Redis) and the child's call there."""
    redis = RedisServer().start()
    try:
        shared = f'[cache]\nbackend = "redis"\nurl = "{redis.url}"\ntimeout = "1s"\n'
        node_a, first = start(make_daemon, shared + '[cluster]\nnode = "node-a"\n', subdir="a")
        _, second = start(make_daemon, shared + '[cluster]\nnode = "node-b"\n', subdir="b")
        task_id = first.created("slow_compute", {"seconds": 1, "label": "shared"})
        seen = second.status(task_id)  # durable before the CreateTaskResult: visible at once
        assert seen["taskId"] == task_id and seen["status"] == WORKING
        done = second.settled(task_id)
        assert done["result"]["content"][0]["text"] == "computed shared after 1s"
        assert second.task("tasks/get", "unknown-everywhere")["error"]["code"] == -32602
        doomed = first.created("slow_compute", {"seconds": 60, "label": "far"})
        assert second.task("tasks/cancel", doomed)["result"] == {"resultType": "complete"}
        assert second.settled(doomed)["status"] == "cancelled"
        wait_for(lambda: "slow_compute far stopped: cancelled" in node_a.ctl("logs", "conformance").stdout,
                 10, what="the first daemon's child to hear the cancel")
    finally:
        redis.cleanup()


def test_a_child_that_runs_its_own_tasks_gets_tasks_get_from_the_instance_that_made_them(
        make_daemon: MakeDaemon) -> None:
    """Passthrough: a modern child declaring the extension answers its own CreateTaskResult, and
    with two instances each task's tasks/get reaches the process that created it (a task id of
    the other process would be unknown to it)."""
    port = free_port()
    daemon = make_daemon(http_toml(port) + server_toml("own", ECHO, "--era", "modern", "--own-tasks",
                                                       instances=2))
    daemon.wait_state("own", "ready")
    door = Door(port, "/mcp/own")
    discovered = door.request("server/discover", {})
    assert EXTENSION in discovered["result"]["capabilities"]["extensions"]
    replies: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: replies.append(door.call("job", {"seconds": 0.5})))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    ids = [reply["result"]["taskId"] for reply in replies]
    assert len({task_id.split("-")[1] for task_id in ids}) == 2, f"both instances made one: {ids}"
    for task_id in ids:
        done = door.status(task_id)
        assert done["result"]["content"][0]["text"] == f"done by {task_id.split('-')[1]}"


def test_a_listen_stream_gets_notifications_tasks_until_the_task_ends(make_daemon: MakeDaemon) -> None:
    """subscriptions/listen with taskIds: the acknowledgement names the task, and a
    notifications/tasks carrying the completed task (its result inlined) arrives on the stream
    (at once if it ended before the stream opened)."""
    _, door = start(make_daemon)
    task_id = door.created("slow_compute", {"seconds": 1, "label": "watched"})
    headers = {"accept": ACCEPT, "content-type": "application/json", "mcp-protocol-version": MODERN,
               "mcp-method": "subscriptions/listen"}
    body = {"jsonrpc": "2.0", "id": "listen-1", "method": "subscriptions/listen",
            "params": {"notifications": {"taskIds": [task_id, "unknown"]}, "_meta": envelope()}}
    events: list[dict[str, Any]] = []
    with door.http.stream("POST", door.url, headers=headers, json=body, timeout=20) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            events.append(event)
            if event.get("method") == "notifications/tasks" and event["params"]["status"] == COMPLETED:
                break
    ack = events[0]
    assert ack["method"] == "notifications/subscriptions/acknowledged"
    assert ack["params"]["notifications"]["taskIds"] == [task_id]
    final = events[-1]["params"]
    assert final["taskId"] == task_id and final["result"]["content"][0]["text"] == "computed watched after 1s"
    assert final["_meta"]["io.modelcontextprotocol/subscriptionId"] == "listen-1"
    refused = door.request("subscriptions/listen", {"notifications": {"taskIds": [task_id]}},
                           capabilities={})
    assert refused["error"]["code"] == -32021


def test_tasks_globs_make_a_modern_childs_tool_a_task_and_an_oversized_result_fails_it(
        make_daemon: MakeDaemon) -> None:
    """`tasks = [...]` in a server entry: the echo server (a 2026-07-28 child that knows nothing of
    tasks) has its `big` calls run as tasks; a result larger than `[tasks] max_bytes` is not kept
    (it would push out every other result): the task fails and says why."""
    port = free_port()
    daemon = make_daemon(http_toml(port) + '[tasks]\nmax_bytes = "2KiB"\n'
                         + server_toml("echo", ECHO, tasks=["big", "ec*"]))
    daemon.wait_state("echo", "ready")
    door = Door(port, "/mcp/echo")
    small = door.created("echo", {"text": "kept"})
    assert door.settled(small)["result"]["content"][0]["text"] == "kept"
    big = door.created("big", {"bytes": 5000})
    failed = door.settled(big)
    assert failed["status"] == "failed" and "max_bytes" in failed["error"]["message"]
    assert door.call("add", {"a": 1, "b": 2})["result"]["resultType"] == "complete"  # not listed


def test_a_task_made_with_one_client_token_is_unknown_to_another(make_daemon: MakeDaemon) -> None:
    """Auth binding (SEP-2663 security): with `[clients.NAME] token`s, a task belongs to the client
    that created it; another client's tasks/get, tasks/update and tasks/cancel say not found, and
    it cannot follow the task's notifications."""
    clients = ('[clients.alice]\ntoken = "alice-token-0123456789"\n'
               '[clients.bob]\ntoken = "bob-token-0123456789"\n')
    _, anonymous = start(make_daemon, clients)
    alice = Door(anonymous.port, token="alice-token-0123456789")
    bob = Door(anonymous.port, token="bob-token-0123456789")
    task_id = alice.created("slow_compute", {"seconds": 0, "label": "private"})
    assert alice.settled(task_id)["result"]["content"][0]["text"] == "computed private after 0s"
    for method in ("tasks/get", "tasks/cancel"):
        assert bob.task(method, task_id)["error"]["code"] == -32602, method
    assert bob.task("tasks/update", task_id, inputResponses={})["error"]["code"] == -32602
    assert alice.status(task_id)["status"] == COMPLETED  # bob's cancel changed nothing
