"""The node registry (`[cluster]`): nodes beat in a real Redis and `mcpctl status --cluster`
lists them; Redis down costs the listing, never a call or the daemon."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import ECHO, Daemon, MakeDaemon, free_port, server_toml, wait_for
from .redis_server import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


def cluster_toml(node: str, url: str) -> str:
    return f'[cluster]\nnode = "{node}"\nurl = "{url}"\nheartbeat = "200ms"\n' + server_toml("echo", ECHO)


def listed(daemon: Daemon) -> list[dict[str, Any]]:
    return list(daemon.rpc("supervisor/cluster")["nodes"])


def test_every_node_is_listed_with_its_servers_and_leaves_when_it_stops(
        make_daemon: MakeDaemon, redis_server: RedisServer) -> None:
    a = make_daemon(cluster_toml("a", redis_server.url), subdir="a")
    b = make_daemon(cluster_toml("b", redis_server.url), subdir="b")
    a.wait_state("echo", "ready")
    b.wait_state("echo", "ready")
    def both_ready() -> list[dict[str, Any]] | None:
        found = listed(a)
        return found if len(found) == 2 and all(e["ready"] == 1 for e in found) else None

    nodes = wait_for(both_ready, 10, what="both nodes ready in the registry")
    assert [n["node"] for n in nodes] == ["a", "b"]
    assert nodes[1]["servers"] == {"echo": "ready"} and nodes[1]["draining"] is False
    text = a.ctl("status", "--cluster").stdout
    assert text.startswith("2 nodes") and "a *" in text and "b " in text
    assert json.loads(a.ctl("status", "--cluster", "--json").stdout)["node"] == "a"
    b.stop()
    wait_for(lambda: [n["node"] for n in listed(a)] == ["a"], 10, what="b to leave the registry")


def test_redis_down_costs_the_listing_not_the_calls(make_daemon: MakeDaemon) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    daemon = make_daemon(cluster_toml("a", dead))
    daemon.wait_state("echo", "ready")
    done = daemon.ctl("status", "--cluster")
    assert done.returncode == 1 and "cannot read the cluster registry" in done.stderr
    called = daemon.ctl("call", "echo", "echo", '{"text": "fine"}')
    assert called.returncode == 0 and "fine" in called.stdout
    wait_for(lambda: "cluster registry: heartbeat failed" in daemon.log_text(), 10, what="the warning")
    assert daemon.log_text().count("cluster registry: heartbeat failed") == 1  # said once, not per beat


def test_a_daemon_outside_a_cluster_says_so(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("echo", ECHO))
    done = daemon.ctl("status", "--cluster")
    assert done.returncode == 1 and "not part of a cluster" in done.stderr
