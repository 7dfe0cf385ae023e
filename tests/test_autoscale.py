"""Autoscaling end to end: a real daemon, a slow test server, queues that build and drain.

Every wait is a poll with a deadline on what the daemon reports (status) and what the children
answer (`pid`); nothing asserts on timing. The fixture checks that no process is left behind.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import psutil

from .conftest import CHAOS, Daemon, MakeDaemon, alive_pids, server_toml, wait_for
from .mcp_raw import RawSession

# Windows short enough for a test; max_in_flight = 1 so a handful of calls makes a queue.
SCALED = {"stateless": True, "min_instances": 1, "max_instances": 3, "max_in_flight": 1,
          "scale_up_queue": 2, "scale_up_window": "200ms", "scale_down_window": "400ms",
          "memory_interval": "1s"}


class Load:
    """One session keeping `depth` calls outstanding: `sleep` calls, and every third a `pid`
    call, whose answers say which children served."""

    def __init__(self, socket: Path, server: str, depth: int = 8, seconds: float = 0.2) -> None:
        self.session = RawSession(socket, server)
        self.session.initialize()
        self.depth = depth
        self.seconds = seconds
        self.pids: set[int] = set()
        self.errors: list[dict[str, Any]] = []
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{server}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sent = 0
        outstanding = 0
        while True:
            while outstanding < self.depth and not self._stop.is_set():
                sent += 1
                name, args = ("pid", {}) if sent % 3 == 0 else ("sleep", {"seconds": self.seconds})
                self.session.send({"jsonrpc": "2.0", "id": sent, "method": "tools/call",
                                   "params": {"name": name, "arguments": args}})
                outstanding += 1
            if not outstanding:
                return
            reply = self.session.response()
            outstanding -= 1
            if "error" in reply:
                self.errors.append(reply)
                continue
            self.answered += 1
            text = reply["result"]["content"][0]["text"]
            if text.isdigit():
                self.pids.add(int(text))

    def stop(self) -> None:
        """Stop sending and wait for every outstanding answer."""
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "outstanding calls never answered"
        self.session.close()


def scale_log(daemon: Daemon) -> list[str]:
    return [line for line in daemon.log_text().splitlines() if "scaling" in line or "scale-up" in line]


def test_queue_builds_instances_join_and_share_then_drain_back_to_min(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("pool", CHAOS, **SCALED)
                         + server_toml("solo", CHAOS, max_in_flight=1, scale_up_queue=2,
                                       scale_up_window="200ms", memory_interval="1s"))
    first = daemon.wait_state("pool", "ready")
    assert (first["instances"], first["min_instances"], first["max_instances"]) == (1, 1, 3)
    assert first["autoscale"] is True
    solo_pid = daemon.wait_state("solo", "ready")["pid"]

    pool = Load(daemon.socket, "pool")
    solo = Load(daemon.socket, "solo")
    try:
        def three_serving() -> bool:
            status = daemon.status("pool")
            return status["instances"] == 3 and len(pool.pids) == 3 and pool.pids <= set(status["pids"])
        wait_for(three_serving, 30, what="three pool instances answering")
        grown = daemon.status("pool")
        assert grown["scale_events"].get("up") == 2, grown
        assert grown["last_scale"]["direction"] == "up"
        assert "queue depth" in grown["last_scale"]["reason"], grown["last_scale"]
        # The stateful neighbour had the same deep queue all along, and one child.
        solo_status = daemon.status("solo")
        assert solo_status["autoscale"] is False and solo_status["max_instances"] == 1
        assert solo_status["queued"] > 2 or solo.answered, solo_status
    finally:
        pool.stop()
        solo.stop()
    serving = set(grown["pids"])
    assert pool.pids == serving

    def back_to_one() -> dict[str, Any] | None:
        status = daemon.status("pool")
        return status if status["instances"] == 1 and len(status["pids"]) == 1 else None
    shrunk = wait_for(back_to_one, 30, what="pool back to one instance")
    assert shrunk["scale_events"].get("down") == 2, shrunk
    assert shrunk["last_scale"]["direction"] == "down" and "queue empty" in shrunk["last_scale"]["reason"]
    retired = serving - set(shrunk["pids"])
    assert len(retired) == 2
    wait_for(lambda: not alive_pids(retired), 10, what="retired children to exit")
    # Drained, never cut: every call that was sent got its real answer.
    assert pool.errors == [] and solo.errors == []
    solo_status = daemon.status("solo")
    assert solo_status["pids"] == [solo_pid] and not solo_status["scale_events"]
    assert solo.pids == {solo_pid}
    metrics = daemon.rpc("supervisor/metrics")["text"]
    assert 'mcp_supervisor_scale_events_total{direction="up",server="pool"} 2.0' in metrics, metrics
    assert 'mcp_supervisor_scale_events_total{direction="down",server="pool"} 2.0' in metrics
    assert 'mcp_supervisor_instances{server="pool"} 1.0' in metrics
    assert 'server="solo"} ' not in "".join(m for m in metrics.splitlines() if "scale_events" in m)
    lines = scale_log(daemon)
    assert sum("pool: scaling up" in line for line in lines) == 2, lines
    assert sum("pool: scaling down" in line for line in lines) == 2, lines
    assert not any("solo" in line for line in lines), lines


def test_the_fleet_memory_limit_stops_a_scale_up_and_says_why(make_daemon: MakeDaemon) -> None:
    # Measure one serving child first, then run with a fleet limit that holds one such child but
    # not two (the child's tree is just itself).
    probe = make_daemon(server_toml("pool", CHAOS), subdir="probe")
    pid = probe.wait_state("pool", "ready")["pid"]
    with RawSession(probe.socket, "pool") as session:
        session.initialize()
        assert "result" in session.call_tool("sleep", {"seconds": 0.01})
    size = psutil.Process(pid).memory_info().rss
    probe.stop()

    daemon = make_daemon(server_toml("pool", CHAOS, **SCALED), subdir="limited",
                         supervisor_keys=f"memory_limit = {int(size * 1.5)}\n")
    daemon.wait_state("pool", "ready")
    load = Load(daemon.socket, "pool")
    try:
        def refused() -> dict[str, Any] | None:
            status = daemon.status("pool")
            last = status["last_scale"]
            return status if last and last["direction"] == "refused" else None
        status = wait_for(refused, 30, what="a refused scale-up")
    finally:
        load.stop()
    assert "memory_limit" in status["last_scale"]["reason"], status["last_scale"]
    assert status["target_instances"] == 1 and "up" not in status["scale_events"], status
    assert len(status["pids"]) == 1
    assert any("scale-up refused" in line and "memory_limit" in line for line in scale_log(daemon))
    assert load.errors == []
