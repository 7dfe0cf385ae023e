"""Health end to end: every fault path driven by a real misbehaving child through the real daemon.

Short intervals ("200ms") keep each case to a few seconds; every wait polls status with a deadline.
Each test keeps a well-behaved neighbour busy throughout and asserts it never missed an answer, and
the make_daemon fixture fails the test if any process is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.client.control import call
from supervisor.client.errors import RemoteError

from .conftest import CHAOS, ECHO, Daemon, MakeDaemon, alive_pids, server_toml, wait_for

FAST = {"health_interval": "200ms", "ping_timeout": "200ms", "unhealthy_after": 2,
        "backoff_initial": "50ms", "stop_timeout": "2s"}


@contextlib.contextmanager
def neighbour_keeps_answering(daemon: Daemon, name: str = "steady") -> Iterator[list[str]]:
    """Call `name` every 50 ms in a thread; yields the list of failures (asserted empty after)."""
    failures: list[str] = []
    calls = [0]
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            try:
                result = call(daemon.socket, "supervisor/call",
                              {"server": name, "tool": "echo", "arguments": {"text": "hi"}}, 10)
                if result["content"][0]["text"] != "hi":
                    failures.append(repr(result))
            except Exception as exc:  # collected and asserted by the caller
                failures.append(repr(exc))
            calls[0] += 1
            done.wait(0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield failures
    finally:
        done.set()
        thread.join(15)
    assert calls[0] > 0
    assert not failures, failures[:5]


def tool(daemon: Daemon, server: str, name: str, arguments: dict[str, Any] | None = None,
         timeout: float = 10) -> Any:
    return call(daemon.socket, "supervisor/call",
                {"server": server, "tool": name, "arguments": arguments or {}}, timeout)


def tool_error(daemon: Daemon, server: str, name: str, arguments: dict[str, Any] | None = None
               ) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        tool(daemon, server, name, arguments)
    return info.value


def replaced(daemon: Daemon, name: str, old_pid: int, timeout: float = 20) -> dict[str, Any]:
    """Wait for `name` to be ready again under a new pid."""
    def check() -> dict[str, Any] | None:
        s = daemon.status(name)
        return s if s["state"] == "ready" and s["pid"] not in (None, old_pid) else None
    return wait_for(check, timeout, what=f"{name} replaced")


# ---- hang detection ---------------------------------------------------------------------------------

def test_hung_child_is_replaced_as_unresponsive(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("hangs", CHAOS, "--hang-after", "1", **FAST)
                         + server_toml("steady"))
    first = daemon.wait_state("hangs", "ready")
    daemon.wait_state("steady", "ready")
    with neighbour_keeps_answering(daemon):
        assert tool(daemon, "hangs", "echo", {"text": "last words"})["content"][0]["text"] == "last words"
        after = replaced(daemon, "hangs", first["pid"])
    assert after["restart_reasons"] == {"unresponsive": 1}
    assert after["restarts"] == 1
    assert after["last_exit"] == "unresponsive: 2 server/discover probes in a row got no answer within 0.2s"
    assert not alive_pids({first["pid"]})
    assert tool(daemon, "hangs", "echo", {"text": "new child"})["content"][0]["text"] == "new child"


def test_a_timed_out_request_probes_at_once_instead_of_waiting_for_the_interval(
        make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("hangs", CHAOS, "--hang-after", "1", health_interval="1h",
                                     ping_timeout="200ms", request_timeout="300ms"))
    first = daemon.wait_state("hangs", "ready")
    tool(daemon, "hangs", "echo", {"text": "then silence"})
    started = time.monotonic()
    assert tool_error(daemon, "hangs", "echo", {"text": "lost"}).code == -32001
    after = replaced(daemon, "hangs", first["pid"], timeout=15)
    assert time.monotonic() - started < 10  # not an hour
    assert after["restart_reasons"] == {"unresponsive": 1}


def test_answers_probes_but_times_out_calls_is_degraded_and_the_breaker_fails_fast(
        make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(
        server_toml("sulky", CHAOS, "--hang-tools", request_timeout="200ms", breaker_errors=2,
                    breaker_window="30s", breaker_cooldown="1s", **FAST)
        + server_toml("steady"))
    daemon.wait_state("sulky", "ready")
    daemon.wait_state("steady", "ready")
    with neighbour_keeps_answering(daemon):
        for _ in range(2):
            assert tool_error(daemon, "sulky", "echo", {"text": "x"}).code == -32001
        degraded = daemon.wait_state("sulky", "degraded", timeout=5)
        assert degraded["breaker"]["state"] == "open"
        assert "circuit breaker open after 2 failures within 30s" in degraded["reason"]
        started = time.monotonic()
        fast = tool_error(daemon, "sulky", "echo", {"text": "x"})
        assert time.monotonic() - started < 0.15  # fails at once, no 200 ms timeout
        assert fast.code == -32004
        assert "server 'sulky' is failing fast" in fast.message
        assert 0 < fast.data["retry_after_ms"] <= 1000
        # After the cooldown one trial call goes through; it times out, so the breaker reopens.
        wait_for(lambda: daemon.status("sulky")["breaker"]["state"] == "half-open", 5)
        assert tool_error(daemon, "sulky", "echo", {"text": "trial"}).code == -32001
        entry = daemon.status("sulky")
        assert entry["breaker"]["state"] == "open" and entry["breaker"]["opened"] == 2
    # It answers its probes, so it was never restarted: the breaker decides, not the health check.
    assert entry["restarts"] == 0 and entry["state"] == "degraded"


def test_internal_errors_open_the_breaker_and_a_good_trial_closes_it(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("flaky", CHAOS, breaker_errors=3, breaker_cooldown="300ms"))
    daemon.wait_state("flaky", "ready")
    # Errors that are the caller's business never count.
    assert tool_error(daemon, "flaky", "no-such-tool").code == -32602
    assert tool(daemon, "flaky", "fail")["isError"] is True
    assert daemon.status("flaky")["breaker"]["failures"] == 0
    for _ in range(3):
        assert tool_error(daemon, "flaky", "error").code == -32603
    assert daemon.status("flaky")["state"] == "degraded"
    assert tool_error(daemon, "flaky", "echo", {"text": "x"}).code == -32004
    wait_for(lambda: daemon.status("flaky")["breaker"]["state"] == "half-open", 5)
    assert tool(daemon, "flaky", "echo", {"text": "trial"})["content"][0]["text"] == "trial"
    entry = daemon.status("flaky")
    assert entry["state"] == "ready" and entry["breaker"]["state"] == "closed"


# ---- the restart matrix, end to end: policy x exit reason -----------------------------------------

def matrix_fleet(policy: dict[str, Any], marker_dir: str) -> str:
    common = {**FAST, **policy}
    return (
        server_toml("clean", CHAOS, "--crash-after", "1", "--crash-code", "0", **common)
        + server_toml("error", CHAOS, "--crash-after", "1", **common)
        + server_toml("signal", CHAOS, **common)
        + server_toml("hang", CHAOS, "--hang-after", "1", **common)
        + server_toml("memory", CHAOS, "--leak-mb-per-s", "60", memory_limit="80MiB",
                      memory_interval="200ms", **common)
        + server_toml("nokey", CHAOS, "--exit-before-handshake", "Error: API_KEY is required",
                      **common)
        + server_toml("steady"))


def trigger(daemon: Daemon, name: str, pid: int) -> None:
    if name in ("clean", "error"):
        with contextlib.suppress(RemoteError):  # the child dies under the call: -32003
            tool(daemon, name, "echo", {"text": "bye"})
    elif name == "signal":
        os.kill(pid, signal.SIGKILL)
    elif name == "hang":
        tool(daemon, name, "echo", {"text": "then silence"})
    # memory leaks on its own; nokey never gets that far


KINDS = {"clean": "crash", "error": "crash", "signal": "crash", "hang": "unresponsive",
         "memory": "memory"}
LAST_EXIT = {"clean": "crashed: exited with code 0", "error": "crashed: exited with code 3",
             "signal": "crashed: killed by signal 9", "hang": "unresponsive: 2 server/discover",
             "memory": "memory: "}


def test_restart_matrix_lenient_policy_restarts_each_reason_once(make_daemon: MakeDaemon,
                                                                 workdir: Path) -> None:
    daemon = make_daemon(matrix_fleet({"max_restarts": 10, "restart_window": "60s",
                                       "max_start_failures": 2}, str(workdir)))
    pids = {name: daemon.wait_state(name, "ready")["pid"] for name in (*KINDS, "steady")}
    with neighbour_keeps_answering(daemon):
        for name in KINDS:
            trigger(daemon, name, pids[name])
        for name, kind in KINDS.items():
            after = replaced(daemon, name, pids[name])
            assert after["restart_reasons"].get(kind, 0) >= 1, (name, after)
            assert set(after["restart_reasons"]) == {kind}, (name, after)
            assert after["last_exit"].startswith(LAST_EXIT[name]), (name, after["last_exit"])
            assert not alive_pids({pids[name]}), name
        nokey = daemon.wait_state("nokey", "failed")
    assert nokey["reason"] == ("exited with code 1 before answering the handshake: "
                               "Error: API_KEY is required (gave up after 2 failed starts)")
    assert nokey["restart_reasons"] == {"start-failure": 2}
    assert nokey["last_stderr"] == ["Error: API_KEY is required"]
    assert daemon.status("memory")["memory_limit"] == 80 * 2**20


def test_restart_matrix_strict_policy_gives_up_at_the_first_exit(make_daemon: MakeDaemon,
                                                                 workdir: Path) -> None:
    daemon = make_daemon(matrix_fleet({"max_restarts": 0, "max_start_failures": 1}, str(workdir)))
    pids = {name: daemon.wait_state(name, "ready")["pid"] for name in (*KINDS, "steady")}
    with neighbour_keeps_answering(daemon):
        for name in KINDS:
            trigger(daemon, name, pids[name])
        failed = {name: daemon.wait_state(name, "failed") for name in (*KINDS, "nokey")}
    for name, kind in KINDS.items():
        entry = failed[name]
        loop = "crash loop" if kind == "crash" else "restart loop"
        assert entry["reason"].startswith(f"{loop}: 1 restarts within 300s; last: {LAST_EXIT[name]}"), \
            entry["reason"]
        assert entry["restart_reasons"] == {kind: 1} and entry["pid"] is None
    assert failed["error"]["last_stderr"][-1].endswith("crashing on tools/call #1")
    assert "gave up after 1 failed starts" in failed["nokey"]["reason"]
    # `mcpctl restart NAME` revives a failed server, and says it was manual.
    revived = daemon.ctl("restart", "error")
    assert revived.returncode == 0, revived.stderr
    entry = daemon.status("error")
    assert entry["state"] == "ready" and entry["restart_reasons"] == {"crash": 1, "manual": 1}


# ---- memory --------------------------------------------------------------------------------------

def test_memory_restart_is_graceful_and_counts_the_whole_tree(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(
        server_toml("leaky", CHAOS, "--leak-mb-per-s", "40", memory_limit="90MiB",
                    memory_interval="200ms", drain_timeout="10s", **FAST)
        + server_toml("tree", CHAOS, "--grandchild-leak-mb", "80", memory_limit="64MiB",
                      memory_interval="200ms", max_restarts=1, restart_window="60s", **FAST)
        + server_toml("steady"))
    first = daemon.wait_state("leaky", "ready")
    with neighbour_keeps_answering(daemon):
        # A long call in flight when the limit is crossed is allowed to finish (drain).
        started = time.monotonic()
        slept = tool(daemon, "leaky", "sleep", {"seconds": 3})
        assert slept["content"][0]["text"] == "slept"
        assert time.monotonic() - started >= 2.9
        after = replaced(daemon, "leaky", first["pid"])
        # The child itself stays small; its grandchild holds the memory: still a loop, then failed.
        tree = daemon.wait_state("tree", "failed", timeout=30)
    assert after["restart_reasons"]["memory"] >= 1
    assert after["last_exit"].startswith("memory: ") and after["last_exit"].endswith(" > 90MiB limit")
    assert tree["reason"].startswith("restart loop: 2 restarts within 60s; last: memory: ")
    assert tree["restart_reasons"] == {"memory": 2}


def test_fleet_memory_limit_restarts_the_largest_first(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(
        server_toml("big", CHAOS, "--grandchild-leak-mb", "120", memory_interval="200ms", **FAST)
        + server_toml("small", ECHO, memory_interval="200ms", **FAST)
        + server_toml("steady"),
        supervisor_keys='memory_limit = "140MiB"\n')
    big = daemon.wait_state("big", "ready")
    daemon.wait_state("small", "ready")
    with neighbour_keeps_answering(daemon):
        wait_for(lambda: daemon.status("big")["restart_reasons"].get("memory"), 20,
                 what="the largest server restarted")
    entry = daemon.status("big")
    assert entry["last_exit"].startswith("memory: fleet ")
    assert "> 140MiB limit; 'big' is the largest" in entry["last_exit"]
    assert daemon.status("small")["restarts"] == 0
    assert daemon.status("steady")["restarts"] == 0
    assert daemon.rpc("supervisor/status")["daemon"]["memory_limit"] == 140 * 2**20
    assert big["pid"] != daemon.status("big")["pid"]


# ---- lazy start, idle stop -----------------------------------------------------------------------

def test_lazy_server_starts_on_first_request_and_stops_when_idle(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(server_toml("lazy", ECHO, start="lazy", idle_stop_after="600ms")
                         + server_toml("eager"))
    daemon.wait_state("eager", "ready")
    entry = daemon.status("lazy")
    assert entry["state"] == "stopped" and entry["pid"] is None
    assert entry["reason"] == "lazy: starts on first request"
    # The first request waits for the spawn and handshake.
    assert tool(daemon, "lazy", "echo", {"text": "wake"})["content"][0]["text"] == "wake"
    pid = daemon.status("lazy")["pid"]
    assert pid is not None
    stopped = daemon.wait_state("lazy", "stopped", timeout=10)
    assert stopped["reason"].startswith("idle: no requests for 600ms")
    wait_for(lambda: not alive_pids({pid}), 10, what="idle child gone")
    assert tool(daemon, "lazy", "echo", {"text": "again"})["content"][0]["text"] == "again"
    assert daemon.status("lazy")["pid"] not in (None, pid)
    assert daemon.status("eager")["state"] == "ready"  # eager servers never idle-stop by default
