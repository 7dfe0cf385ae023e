"""Operations that used to end the daemon or harm another one: one daemon per socket, a non-socket
at the socket path, bookkeeping files that cannot be written.

Regression tests for issue 14, each against a real `mcpctl serve`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psutil

from .conftest import MCPCTL, MakeDaemon, alive_pids, server_toml, wait_for


def test_second_serve_refuses_with_the_first_pid_even_without_the_socket_file(
        make_daemon: MakeDaemon) -> None:
    """Regression: with the socket file removed, a second `mcpctl serve` found no daemon, read the
    first one's pid registry as leftovers and ended its live children. The lock beside the socket
    refuses it, naming the first daemon's pid, and the first daemon's children live on."""
    daemon = make_daemon(server_toml("echo"))
    child = daemon.wait_state("echo", "ready")["pid"]
    assert daemon.proc is not None
    daemon.socket.unlink()
    second = subprocess.run(
        [MCPCTL, "--config", str(daemon.config), "--socket", str(daemon.socket), "serve"],
        capture_output=True, text=True, timeout=30, env=daemon.env, cwd=daemon.workdir)
    assert second.returncode == 1, second.stderr
    assert f"pid {daemon.proc.pid}" in second.stderr and "already running" in second.stderr
    assert alive_pids({child, daemon.proc.pid}) == {child, daemon.proc.pid}


def test_a_regular_file_at_the_socket_path_is_refused_not_deleted(make_daemon: MakeDaemon) -> None:
    """Regression: whatever was at the socket path was deleted silently (a user's file included)."""
    daemon = make_daemon(server_toml("echo"), start=False)
    daemon.socket.write_text("my notes\n")
    daemon.start(wait=False)
    assert daemon.proc is not None
    assert daemon.proc.wait(30) == 1
    assert "is a file, not a socket" in daemon.log_text()
    assert daemon.socket.read_text() == "my notes\n"


def test_an_uncreatable_log_directory_only_costs_the_log_files(make_daemon: MakeDaemon,
                                                               workdir: Path) -> None:
    """Regression: when STATE_DIR/logs could not be created, the first child stderr line ended the
    daemon. Now the log files are dropped (and counted) with one warning; all else keeps going."""
    state = workdir / "state"
    state.mkdir()
    (state / "logs").write_text("not a directory")
    daemon = make_daemon(server_toml("echo"))
    daemon.wait_state("echo", "ready")
    called = daemon.ctl("call", "echo", "stderr", json.dumps({"text": "to the log", "lines": 3}))
    assert called.returncode == 0, called.stderr
    wait_for(lambda: "cannot create the log directory" in daemon.log_text(), 10, what="the warning")
    again = daemon.ctl("call", "echo", "echo", json.dumps({"text": "alive"}))
    assert again.returncode == 0 and "alive" in again.stdout
    assert daemon.proc is not None and daemon.proc.poll() is None
    logs = daemon.ctl("logs", "echo")
    assert "to the log" in logs.stdout  # the in-memory ring still has them
    assert daemon.log_text().count("cannot create the log directory") == 1


def test_an_unwritable_pid_registry_degrades_with_one_warning(make_daemon: MakeDaemon, workdir: Path) -> None:
    """Regression: a pid registry that could not be written raised out of the child's spawn. Now
    the daemon warns once and supervises as before (restarts included)."""
    daemon = make_daemon(server_toml("echo"), start=False)
    registry = daemon.socket.with_name(daemon.socket.name + ".pids")
    registry.mkdir()  # the atomic rename onto it fails
    daemon.start()
    first = daemon.wait_state("echo", "ready")["pid"]
    restarted = daemon.ctl("restart", "echo")
    assert restarted.returncode == 0, restarted.stderr
    entry = wait_for(lambda: (s := daemon.status("echo"))["state"] == "ready" and s["pid"] != first and s,
                     20, what="a new child")
    assert psutil.pid_exists(entry["pid"])
    assert daemon.log_text().count("cannot write the pid registry") == 1
