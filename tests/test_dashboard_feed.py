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

from tests.conftest import CHAOS, server_toml, wait_for


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


def test_cpu_percent_is_sampled_for_every_server_not_only_autoscaled_ones(make_daemon):
    """The dashboard's CPU column: before, only autoscaled servers had their CPU sampled, so a
    plain server's `cpu_percent` stayed None forever. A child that keeps allocating (and touching)
    memory uses CPU, and its whole tree's share of a core shows up in `status`."""
    daemon = make_daemon(server_toml("busy", CHAOS, "--leak-mb-per-s", "20", memory_interval="200ms"))
    daemon.wait_state("busy", "ready")
    entry = wait_for(lambda: (s := daemon.status("busy"))["cpu_percent"] and s, 15,
                     what="a CPU figure for a server without autoscaling")
    assert isinstance(entry["cpu_percent"], float) and 0 < entry["cpu_percent"] < 400


def test_log_lines_carry_the_time_they_arrived(make_daemon):
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
