"""What the daemon publishes for `mcpctl top`, end to end against a real daemon and real children:
whole-tree CPU, log line times, state and restart history, and a masked config summary."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import CHAOS, ECHO, MakeDaemon, daemon_env, server_toml, wait_for


@contextlib.contextmanager
def subscription(path: Path, logs: list[str], timeout: float = 10.0) -> Iterator[Iterator[dict[str, Any]]]:
    """`supervisor/events` on a plain socket: yields an iterator of the pushed events' params."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    request = {"jsonrpc": "2.0", "id": 1, "method": "supervisor/events", "params": {"logs": logs}}
    sock.sendall(json.dumps(request).encode() + b"\n")
    reader = sock.makefile("rb")

    def events() -> Iterator[dict[str, Any]]:
        for line in reader:
            message = json.loads(line)
            if message.get("method") == "supervisor/event":
                yield message["params"]

    try:
        assert "result" in json.loads(reader.readline())
        yield events()
    finally:
        reader.close()
        sock.close()


def test_cpu_percent_is_sampled_for_every_server_not_only_autoscaled_ones(make_daemon: MakeDaemon) -> None:
    """The dashboard's CPU column: before, only autoscaled servers had their CPU sampled, so a
    plain server's `cpu_percent` stayed None forever. A child that keeps allocating (and touching)
    memory uses CPU, and its whole tree's share of a core shows up in `status`."""
    daemon = make_daemon(server_toml("busy", CHAOS, "--leak-mb-per-s", "20", memory_interval="200ms"))
    daemon.wait_state("busy", "ready")
    entry = wait_for(lambda: (s := daemon.status("busy"))["cpu_percent"] and s, 15,
                     what="a CPU figure for a server without autoscaling")
    assert isinstance(entry["cpu_percent"], float) and 0 < entry["cpu_percent"] < 400


def test_log_lines_carry_the_time_they_arrived(make_daemon: MakeDaemon) -> None:
    """The dashboard's log view shows when each stderr line came: `supervisor/logs` gives a time
    per line and every pushed `log` event its `at`."""
    daemon = make_daemon(server_toml("echo"))
    daemon.wait_state("echo", "ready")
    before = time.time()
    with subscription(daemon.socket, ["echo"]) as events:
        daemon.rpc("supervisor/call", {"server": "echo", "tool": "stderr",
                                       "arguments": {"text": "stamped", "lines": 1}})
        pushed = next(e for e in events if e.get("type") == "log" and "stamped" in e["line"])
    after = time.time()
    assert before <= pushed["at"] <= after
    reply = daemon.rpc("supervisor/logs", {"server": "echo", "lines": 50})
    assert len(reply["times"]) == len(reply["lines"])
    at = reply["times"][next(i for i, line in enumerate(reply["lines"]) if "stamped" in line)]
    assert at == pushed["at"]


def test_status_detail_has_state_and_restart_history_and_a_masked_config(make_daemon: MakeDaemon,
                                                                         workdir: Path) -> None:
    """`supervisor/status {detail: true}`, for the dashboard's detail screen: the state changes
    and restarts with their times and reasons, and the config with every credential masked (a
    literal token is `***`, a `${VAR}` reference is shown as the reference)."""
    secret = "sk-literal-secret-0123456789"
    daemon = make_daemon(server_toml("echo", ECHO, "--name", secret)
                         + f'env = {{ API_TOKEN = "{secret}", GITHUB_KEY = "${{GH}}", MODE = "fast" }}\n',
                         env=daemon_env(workdir, GH="gh-value-that-is-secret"))
    first = daemon.wait_state("echo", "ready")
    daemon.rpc("supervisor/restart", {"servers": ["echo"], "wait": 20})
    wait_for(lambda: daemon.status("echo")["pid"] not in (None, first["pid"])
             and daemon.status("echo")["state"] == "ready", 20, what="a restarted echo")
    reply = daemon.rpc("supervisor/status", {"servers": ["echo"], "detail": True})
    entry = reply["servers"][0]
    states = [(h["state"], h["reason"]) for h in entry["state_history"]]
    assert states[0][0] == "starting" and states[-1][0] == "ready"
    assert states.index(("stopping", "restarting (manual)")) > [s for s, _ in states].index("ready")
    assert all(isinstance(h["at"], float) for h in entry["state_history"])
    assert [(r["kind"], r["detail"]) for r in entry["restart_history"]] == [("manual", "manual")]
    config = entry["config"]
    assert config["env"] == {"API_TOKEN": "***", "GITHUB_KEY": "${GH}", "MODE": "fast"}
    assert config["args"][-2:] == ["--name", "***"]
    assert secret not in json.dumps(reply) and "gh-value-that-is-secret" not in json.dumps(reply)
    assert "state_history" not in daemon.status("echo")  # only when asked: stats stay small
