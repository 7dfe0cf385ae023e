"""Rate limits across a cluster (`[cluster]` + a real redis-server): two daemons stand for two
nodes behind a balancer; the call that exceeds a limit is refused whichever node gets it, and
Redis down makes each node fall back to its own bucket, never fail a call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from supervisor.client.control import call

from .conftest import ECHO, Daemon, MakeDaemon, free_port, server_toml, wait_for
from .redis_server import RedisServer
from .test_http import http_toml, modern_call, modern_headers

RATE_LIMITED = -32007


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


def node(make_daemon: MakeDaemon, name: str, url: str, port: int) -> Daemon:
    # A generous timeout: a loaded box must not make a node fall back to its own bucket here.
    text = (f'[cluster]\nnode = "{name}"\nurl = "{url}"\nrate_limit_timeout = "2s"\n' + http_toml(port)
            + '[clients.ci]\ntoken = "ci-token-0123456789"\nrate_limit = "3/min"\n'
            + server_toml("echo", ECHO, rate_limit="4/min"))
    daemon = make_daemon(text, subdir=name)
    daemon.wait_state("echo", "ready")
    return daemon


def tool_call(daemon: Daemon, text: str) -> dict[str, Any]:
    """One call through the control socket; the error (if any) as the daemon answered it."""
    try:
        result = call(daemon.socket, "supervisor/call",
                      {"server": "echo", "tool": "echo", "arguments": {"text": text}}, 30)
    except Exception as exc:  # the control client raises the daemon's JSON-RPC error
        return {"error": {"code": getattr(exc, "code", None), "message": str(exc)}}
    return {"result": result}


def test_a_server_limit_holds_for_the_whole_cluster(make_daemon: MakeDaemon,
                                                    redis_server: RedisServer) -> None:
    a = node(make_daemon, "a", redis_server.url, free_port())
    b = node(make_daemon, "b", redis_server.url, free_port())
    answers = [tool_call(a if n % 2 == 0 else b, f"call {n}") for n in range(6)]
    passed = [n for n, reply in enumerate(answers) if "result" in reply]
    assert passed == [0, 1, 2, 3], answers  # the burst of 4, spent on both nodes together
    for reply in answers[4:]:
        assert reply["error"]["code"] == RATE_LIMITED and "over 4/min" in reply["error"]["message"]
    assert a.status("echo")["rate_limited_total"] == 1 and b.status("echo")["rate_limited_total"] == 1
    assert a.status()["daemon"]["rate_limits"] == "cluster"


def test_a_client_limit_holds_whichever_node_the_client_reaches(
        make_daemon: MakeDaemon, redis_server: RedisServer) -> None:
    ports = [free_port(), free_port()]
    node(make_daemon, "a", redis_server.url, ports[0])
    node(make_daemon, "b", redis_server.url, ports[1])
    statuses = []
    with httpx.Client(timeout=30) as http:
        for n in range(5):
            url = f"http://127.0.0.1:{ports[n % 2]}/mcp/echo"
            reply = http.post(url, headers={**modern_headers("tools/call", "add"),
                                            "authorization": "Bearer ci-token-0123456789"},
                              json=modern_call(n, "add", {"a": n, "b": 0}))
            statuses.append(reply.status_code)
    assert statuses == [200, 200, 200, 429, 429], statuses


def test_redis_down_falls_back_to_each_nodes_own_bucket(make_daemon: MakeDaemon,
                                                        redis_server: RedisServer) -> None:
    a = node(make_daemon, "a", redis_server.url, free_port())
    assert "result" in tool_call(a, "shared bucket")
    redis_server.kill()
    answers = [tool_call(a, f"local {n}") for n in range(5)]
    # The local bucket was never spent while the shared one decided: a full burst of 4.
    assert ["result" in reply for reply in answers] == [True, True, True, True, False], answers
    wait_for(lambda: "each node enforces its own buckets" in a.log_text(), 10, what="the warning")
    assert a.log_text().count("cluster rate limits: Redis is unreachable") == 1
    assert a.status()["daemon"]["rate_limits"] == "local"
