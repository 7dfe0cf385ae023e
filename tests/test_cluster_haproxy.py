"""Several daemons behind a real HAProxy (contrib/haproxy/haproxy.cfg, the shipped file) and one
real redis-server, on loopback: what a team gets when it outgrows one machine.

Every answer a client gets is checked against its request (the echo tool returns the text it was
sent), so "lost" and "misrouted" are counted, not guessed. A node is identified by its child's
private HOME (under that daemon's state directory): the fleet entries are byte-identical on every
node, as they must be for the nodes to share cached results.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from .conftest import ECHO, PY, REPO, Daemon, daemon_env, free_port, none_alive, wait_for
from .redis_server import RedisServer
from .sdk import text_of

pytestmark = pytest.mark.anyio

HAPROXY_CFG = REPO / "contrib" / "haproxy" / "haproxy.cfg"
MODERN = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "lb-test", "version": "1"}}
NODES = ("a", "b", "c")
SECRET = "the-cluster-secret-of-this-test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def fleet(node: str, port: int, redis_url: str) -> str:
    return f"""
drain_grace = "2s"
drain_timeout = "20s"
[cluster]
node = "{node}"
secret = "{SECRET}"
rate_limit_timeout = "2s"  # this module is about sharing: a loaded box must not fall back
[http]
listen = "127.0.0.1:{port}"
[cache]
backend = "redis"
url = "{redis_url}"
timeout = "1s"
[servers.echo]
command = "{PY}"
args = ["{ECHO}"]
stateless = true
[servers.echo.cache]
tools = ["echo"]
[servers.limited]
command = "{PY}"
args = ["{ECHO}"]
rate_limit = "5/min"
"""


class Haproxy:
    def __init__(self, ports: dict[str, int]) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.access(binary, os.X_OK):
            pytest.fail("haproxy is not installed: `make test` installs it (Debian package haproxy)")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mcps-haproxy-"))
        env = {"PATH": os.environ.get("PATH", ""), "MCP_LB_BIND": f"127.0.0.1:{self.port}"}
        env.update({f"MCP_NODE_{name.upper()}": f"127.0.0.1:{port}" for name, port in ports.items()})
        self.log = open(self.dir / "haproxy.log", "wb")  # noqa: SIM115 - closed in stop()
        # -db: stay in the foreground, so the test owns the process and nothing is left behind.
        self.proc = subprocess.Popen([binary, "-db", "-f", str(HAPROXY_CFG)], env=env, cwd=self.dir,
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._listening, 10, what="haproxy to listen")
        self.url = f"http://127.0.0.1:{self.port}/mcp/echo"

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"haproxy exited: {(self.dir / 'haproxy.log').read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5):
            return True
        return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Cluster:
    def __init__(self, daemons: dict[str, Daemon], ports: dict[str, int], lb: Haproxy,
                 redis: RedisServer) -> None:
        self.daemons = daemons
        self.ports = ports
        self.lb = lb
        self.redis = redis

    def node_of(self, home: str) -> str:
        for name, daemon in self.daemons.items():
            if home.startswith(str(daemon.workdir)):
                return name
        raise AssertionError(f"a HOME of no node: {home}")

    def child_calls(self, node: str, tool: str) -> int:
        result = self.daemons[node].rpc("supervisor/call", {"server": "echo", "tool": "calls",
                                                            "arguments": {"tool": tool}})
        return int(result["structuredContent"]["calls"])

    def healthy(self, node: str) -> bool:
        try:
            reply = httpx.get(f"http://127.0.0.1:{self.ports[node]}/healthz", timeout=2)
        except httpx.HTTPError:
            return False
        return reply.status_code == 200


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """One cluster for the module (three daemons, HAProxy, Redis take seconds to start); the
    tests that restart or kill a node bring it back before they end."""
    workdir = Path(tempfile.mkdtemp(prefix="mcps-lb-", dir="/tmp"))
    redis = RedisServer().start()
    ports = {name: free_port() for name in NODES}
    daemons: dict[str, Daemon] = {}
    lb: Haproxy | None = None
    try:
        for name in NODES:
            (workdir / name).mkdir(mode=0o700)  # the socket directory: the daemon refuses wider
            daemons[name] = Daemon(workdir / name, fleet(name, ports[name], redis.url),
                                   daemon_env(workdir / name)).start(wait=False)
        for daemon in daemons.values():
            wait_for(daemon.socket_answers, 30, what="daemon socket")
            daemon.wait_state("echo", "ready", timeout=60)
            daemon.wait_state("limited", "ready", timeout=60)
        lb = Haproxy(ports)
        found = Cluster(daemons, ports, lb, redis)
        wait_for(lambda: all(found.healthy(n) for n in NODES), 30, what="every node healthy")
        yield found
    finally:
        if lb is not None:
            lb.stop()
        stop_all(list(daemons.values()))
        redis.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def stop_all(daemons: list[Daemon]) -> None:
    """SIGTERM every node at once (each drains for drain_grace), then check nothing is left."""
    for daemon in daemons:
        with contextlib.suppress(Exception):
            daemon.status()
        daemon.seen_pids |= daemon.descendants()
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.send_signal(signal.SIGTERM)
    for daemon in daemons:
        daemon.stop()
    left: set[int] = set()
    for daemon in daemons:
        try:
            wait_for(functools.partial(none_alive, daemon.seen_pids), 10, what="children to exit")
        except AssertionError:
            left |= daemon.kill_leftovers()
    assert not left, f"processes left behind: {sorted(left)}"


def modern_call(msg_id: int, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments, "_meta": ENVELOPE}}


def modern_headers(tool: str) -> dict[str, str]:
    return {"accept": "application/json, text/event-stream", "content-type": "application/json",
            "mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": tool}


async def home_of_answer(http: httpx.AsyncClient, url: str, msg_id: int) -> str:
    reply = await http.post(url, headers=modern_headers("env"),
                            json=modern_call(msg_id, "env", {"name": "HOME"}))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["id"] == msg_id, body
    return str(body["result"]["content"][0]["text"])


async def test_stateless_sdk_calls_spread_over_every_node(cluster: Cluster) -> None:
    """Round robin: the official SDK's default (2026-07-28, stateless) calls reach all three nodes,
    every answer is the right one, and HAProxy's health checks see every node up."""
    seen: Counter[str] = Counter()
    with anyio.fail_after(60):
        async with Client(cluster.lb.url) as client:
            for n in range(12):
                result = await client.call_tool("env", {"name": "HOME"})
                seen[cluster.node_of(text_of(result))] += 1
                echoed = await client.call_tool("add", {"a": n, "b": 1})
                assert text_of(echoed) == str(n + 1)
    assert set(seen) == set(NODES), seen


async def test_legacy_sdk_session_sticks_to_the_node_that_opened_it(cluster: Cluster) -> None:
    """A 2025-era session lives on one node: the shipped config's stick table on Mcp-Session-Id
    keeps every request of it there, so a legacy client works behind round robin."""
    with anyio.fail_after(60):
        async with Client(cluster.lb.url, mode="legacy") as client:
            homes = {text_of(await client.call_tool("env", {"name": "HOME"})) for _ in range(6)}
            assert len({cluster.node_of(h) for h in homes}) == 1
            assert text_of(await client.call_tool("echo", {"text": "sticky"})) == "sticky"


async def test_a_cached_result_is_served_by_a_node_that_did_not_compute_it(cluster: Cluster) -> None:
    """One Redis behind every node: the first call computes, the next two (on the other nodes, by
    round robin) are answered from the shared cache; the children were asked once in all."""
    before = {node: cluster.child_calls(node, "echo") for node in NODES}
    async with httpx.AsyncClient(timeout=30) as http:
        for n in range(3):
            reply = await http.post(cluster.lb.url, headers=modern_headers("echo"),
                                    json=modern_call(n, "echo", {"text": "shared across nodes"}))
            assert reply.status_code == 200, reply.text
            assert reply.json()["result"]["content"][0]["text"] == "shared across nodes"
    calls = {node: cluster.child_calls(node, "echo") - before[node] for node in NODES}
    assert sum(calls.values()) == 1, calls


async def test_a_rate_limit_holds_for_the_cluster_whichever_node_gets_the_call(cluster: Cluster) -> None:
    """`limited` allows 5 calls a minute: through round robin, calls 1-5 pass (on all three nodes)
    and the 6th and 7th are refused, on whichever node they land, from the one shared bucket."""
    statuses = []
    async with httpx.AsyncClient(timeout=30) as http:
        for n in range(7):
            reply = await http.post(cluster.lb.url.replace("/echo", "/limited"),
                                    headers=modern_headers("add"),
                                    json=modern_call(n, "add", {"a": n, "b": 0}))
            body = reply.json()
            statuses.append("ok" if "result" in body else body["error"]["code"])
    assert statuses == ["ok"] * 5 + [-32007, -32007], statuses
    refused = {node: cluster.daemons[node].status("limited")["rate_limited_total"] for node in NODES}
    assert sum(refused.values()) == 2, refused


class Load:
    """Stateless calls through the balancer from `workers` clients at once, each answer checked."""

    def __init__(self, url: str, workers: int = 6) -> None:
        self.url = url
        self.workers = workers
        self.ok = 0
        self.failed: list[str] = []
        self.failed_started: list[float] = []  # when each failed call was sent (monotonic)
        self.misrouted = 0
        self.stop = anyio.Event()

    def answered(self, count: int) -> bool:
        return self.ok >= count

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=30) as http, anyio.create_task_group() as tg:
            for worker in range(self.workers):
                tg.start_soon(self._worker, http, worker)

    async def _worker(self, http: httpx.AsyncClient, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            text = f"w{worker}-{n}"
            started = time.monotonic()
            try:
                # `add` is not cached: every call reaches a child.
                reply = await http.post(self.url, headers=modern_headers("add"),
                                        json=modern_call(n, "add", {"a": worker, "b": n}))
            except httpx.HTTPError as exc:
                self._fail(started, f"{text}: {exc!r}")
                continue
            if reply.status_code != 200:
                self._fail(started, f"{text}: HTTP {reply.status_code} {reply.text[:200]}")
                continue
            body = reply.json()
            answer = body.get("result", {}).get("content", [{}])[0].get("text")
            if body.get("id") != n or answer != str(worker + n):
                self.misrouted += 1
                continue
            self.ok += 1

    def _fail(self, started: float, what: str) -> None:
        self.failed.append(what)
        self.failed_started.append(started)


async def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    with anyio.fail_after(timeout):
        while not await anyio.to_thread.run_sync(predicate):
            await anyio.sleep(0.05)


async def test_rolling_restart_under_load_fails_no_call(cluster: Cluster) -> None:
    """Each node in turn: `mcpctl drain` (it answers 503 on /healthz, HAProxy takes it out, it
    finishes what it has and exits), then it starts again and rejoins. Under continuous load no
    call fails and no answer is wrong."""
    load = Load(cluster.lb.url)
    async with anyio.create_task_group() as tg:
        tg.start_soon(load.run)
        await wait_until(lambda: load.ok >= 30, 30, "the load to run")
        for node in NODES:
            daemon = cluster.daemons[node]
            before = load.ok
            drained = await anyio.to_thread.run_sync(functools.partial(daemon.ctl, "drain", "--json"))
            assert drained.returncode == 0, drained.stderr
            assert daemon.proc is not None
            await anyio.to_thread.run_sync(daemon.proc.wait, 40)
            assert daemon.proc.returncode == 0, daemon.log_text()[-2000:]
            daemon.stop()  # closes its log file; the process has exited
            await anyio.to_thread.run_sync(daemon.start)
            await wait_until(functools.partial(cluster.healthy, node), 60, f"{node} healthy again")
            await wait_until(functools.partial(load.answered, before + 30), 30, "calls to go on")
        load.stop.set()
    assert load.failed == [], load.failed[:5]
    assert load.misrouted == 0
    assert load.ok > 100


async def test_sigkill_of_a_node_costs_only_its_calls_in_flight(cluster: Cluster) -> None:
    """The node that holds a legacy SDK session is killed outright under stateless load: calls in
    flight on it fail at once (the connection drops), every call sent afterwards succeeds on the
    other nodes, no answer is wrong, and the legacy session goes on where the balancer sends it
    next (that node resumes it from its signed id). Then the node comes back."""
    load = Load(cluster.lb.url, workers=4)
    with anyio.fail_after(120):
        async with Client(cluster.lb.url, mode="legacy") as legacy, anyio.create_task_group() as tg:
            home = text_of(await legacy.call_tool("env", {"name": "HOME"}))
            name = cluster.node_of(home)
            victim = cluster.daemons[name]
            tg.start_soon(load.run)
            await wait_until(lambda: load.ok >= 30, 30, "the load to run")
            assert victim.proc is not None
            victim.seen_pids |= victim.descendants()
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(10)
            dead = time.monotonic()  # every call sent from now on was sent to a cluster without it
            settled = load.ok
            await wait_until(lambda: load.ok >= settled + 100, 60, "calls to go on without it")
            moved = text_of(await legacy.call_tool("env", {"name": "HOME"}))
            assert cluster.node_of(moved) != name
            echoed = await legacy.call_tool("echo", {"text": "same session, another node"})
            assert text_of(echoed) == "same session, another node"
            load.stop.set()
    # At most the calls that were on it when it died (one per worker), and none sent after.
    assert len(load.failed) <= load.workers, load.failed
    assert all(started < dead for started in load.failed_started), load.failed
    assert load.misrouted == 0
    victim.stop()
    victim.start()  # the new daemon ends the killed one's leftovers from its pid registry
    await wait_until(lambda: cluster.healthy(name), 60, f"{name} healthy again")
