"""/healthz as a load balancer reads it, and the drain that makes a rolling restart lose nothing:
a real daemon, real HTTP, the real `mcpctl drain`."""

from __future__ import annotations

import signal
from typing import Any

import anyio
import httpx
import pytest

from .conftest import CHAOS, ECHO, MakeDaemon, free_port, server_toml, wait_for
from .test_http import ACCEPT, http_toml, legacy_session, modern_call, modern_headers

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    reply = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    return reply.status_code, reply.json()


def test_healthz_is_503_until_the_eager_servers_settle(make_daemon: MakeDaemon) -> None:
    port = free_port()
    daemon = make_daemon(http_toml(port) + server_toml("slow", CHAOS, "--slow-start", "2"))
    status, body = healthz(port)
    assert (status, body["status"]) == (503, "starting"), body
    daemon.wait_state("slow", "ready")
    assert healthz(port)[0] == 200


def test_healthz_is_503_when_no_server_is_ready(make_daemon: MakeDaemon) -> None:
    port = free_port()
    daemon = make_daemon(http_toml(port) + server_toml("echo", ECHO))
    daemon.wait_state("echo", "ready")
    assert healthz(port) [0] == 200
    assert daemon.ctl("stop", "echo").returncode == 0
    daemon.wait_state("echo", "stopped")
    status, body = healthz(port)
    assert (status, body["status"], body["ready"], body["total"]) == (503, "unready", 0, 1)


async def test_drain_finishes_calls_in_flight_refuses_new_sessions_then_exits(
        make_daemon: MakeDaemon) -> None:
    """`mcpctl drain` with a call in flight: /healthz turns 503 at once, a new legacy session is
    refused with 503 (a balancer retries it elsewhere), an open session and stateless calls are
    still served during the grace, the call in flight gets its real answer, the daemon exits 0."""
    port = free_port()
    daemon = make_daemon(http_toml(port) + server_toml("echo", ECHO),
                         supervisor_keys='drain_grace = "1s"\ndrain_timeout = "20s"\n')
    daemon.wait_state("echo", "ready")
    url = f"http://127.0.0.1:{port}/mcp/echo"
    async with httpx.AsyncClient(timeout=30) as http:
        session = await legacy_session(http, url)

        async def slow_call() -> httpx.Response:
            return await http.post(url, headers=modern_headers("tools/call", "sleep"),
                                   json=modern_call(7, "sleep", {"seconds": 2}))

        async with anyio.create_task_group() as tg:
            answers: list[httpx.Response] = []

            async def keep(call: Any) -> None:
                answers.append(await call())

            tg.start_soon(keep, slow_call)
            await anyio.to_thread.run_sync(
                lambda: wait_for(lambda: daemon.status("echo")["in_flight"] == 1, 10, what="call in flight"))
            drained = await anyio.to_thread.run_sync(lambda: daemon.ctl("drain", "--json"))
            assert drained.returncode == 0, drained.stderr
            status, body = await anyio.to_thread.run_sync(healthz, port)
            assert (status, body["status"]) == (503, "draining")
            refused = await http.post(url, headers={"accept": ACCEPT, "content-type": "application/json"},
                                      json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                                          "protocolVersion": "2025-06-18", "capabilities": {},
                                          "clientInfo": {"name": "late", "version": "1"}}})
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert refused.headers["connection"] == "close"
            served = await http.post(url, headers=session, json={
                "jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "still here"}}})
            assert served.json()["result"]["content"][0]["text"] == "still here"
        assert answers[0].status_code == 200
        assert answers[0].json()["result"]["content"][0]["text"] == "slept"
    assert daemon.proc is not None
    assert daemon.proc is not None
    assert await anyio.to_thread.run_sync(daemon.proc.wait, 30) == 0
    assert "drain: no call in flight" in daemon.log_text()


async def test_a_second_sigint_cuts_the_drain_short(make_daemon: MakeDaemon) -> None:
    """SIGTERM drains and a second SIGTERM changes nothing (systemd and Kubernetes may send more
    than one); SIGINT while draining (Ctrl-C twice) stops at once: the call in flight is answered
    with an error instead of being waited for."""
    port = free_port()
    daemon = make_daemon(http_toml(port) + server_toml("echo", ECHO),
                         supervisor_keys='drain_timeout = "60s"\n')
    daemon.wait_state("echo", "ready")
    url = f"http://127.0.0.1:{port}/mcp/echo"
    assert daemon.proc is not None
    async with httpx.AsyncClient(timeout=30) as http, anyio.create_task_group() as tg:
        answers: list[httpx.Response] = []

        async def slow_call() -> None:
            answers.append(await http.post(url, headers=modern_headers("tools/call", "sleep"),
                                           json=modern_call(7, "sleep", {"seconds": 30})))

        tg.start_soon(slow_call)
        await anyio.to_thread.run_sync(
            lambda: wait_for(lambda: daemon.status("echo")["in_flight"] == 1, 10, what="call in flight"))
        daemon.proc.send_signal(signal.SIGTERM)
        await anyio.to_thread.run_sync(
            lambda: wait_for(lambda: "draining" in daemon.log_text(), 10, what="the drain to begin"))
        daemon.proc.send_signal(signal.SIGTERM)
        await anyio.to_thread.run_sync(
            lambda: wait_for(lambda: "SIGTERM: already draining" in daemon.log_text(), 10, what="ignored"))
        assert daemon.proc.poll() is None
        daemon.proc.send_signal(signal.SIGINT)
        with anyio.fail_after(20):
            assert daemon.proc is not None
            assert await anyio.to_thread.run_sync(daemon.proc.wait, 20) == 0
    assert "SIGINT while draining: stopping now" in daemon.log_text()
    assert answers and "result" not in (answers[0].json() if answers[0].content else {})
