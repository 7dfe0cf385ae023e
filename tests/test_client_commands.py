"""Client commands say plainly when a server cannot run, and the HTTP door says where it is."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from .conftest import MakeDaemon, free_port, server_toml


def test_commands_on_a_server_that_stays_unavailable_exit_1_with_the_reason(make_daemon: MakeDaemon) -> None:
    """Regression: `start`/`restart` of an unavailable server exited 0, `tools`/`logs` printed
    nothing with exit 0."""
    daemon = make_daemon(server_toml("echo") + server_toml("keyed", requires_env=["R17_MISSING_KEY"]))
    daemon.wait_state("keyed", "unavailable")
    for verb in ("start", "restart"):
        proc = daemon.ctl(verb, "keyed", "--timeout", "5")
        assert proc.returncode == 1, (verb, proc.stdout, proc.stderr)
        assert "keyed: unavailable (R17_MISSING_KEY is not set" in proc.stdout
    for verb in ("tools", "logs"):
        proc = daemon.ctl(verb, "keyed")
        assert proc.returncode == 1, (verb, proc.stdout, proc.stderr)
        assert "keyed: unavailable (R17_MISSING_KEY is not set" in proc.stderr
    daemon.wait_state("echo", "ready")
    assert daemon.ctl("start", "echo").returncode == 0
    assert daemon.ctl("tools", "echo").returncode == 0


def test_stop_does_not_repeat_the_state_as_its_reason(make_daemon: MakeDaemon) -> None:
    """Regression: `mcpctl stop` printed `echo: stopped (stopped)`."""
    daemon = make_daemon(server_toml("echo"))
    daemon.wait_state("echo", "ready")
    proc = daemon.ctl("stop", "echo")
    assert proc.returncode == 0
    assert proc.stdout.strip() == "echo: stopped"


def test_get_root_is_a_json_index_of_the_doors(make_daemon: MakeDaemon) -> None:
    port = free_port()
    make_daemon(f'[http]\nlisten = "127.0.0.1:{port}"\n' + server_toml("echo"))
    answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
    assert answer.status_code == 200
    index = answer.json()
    assert index["name"] == "mcp-supervisor"
    assert set(index["doors"]) == {"/mcp", "/mcp/{server}", "/healthz", "/metrics"}
    assert "echo" not in answer.text  # no server names before authentication


def test_a_taken_port_names_the_http_listen_setting(make_daemon: MakeDaemon) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        daemon = make_daemon(f'[http]\nlisten = "127.0.0.1:{port}"\n' + server_toml("echo"), start=False)
        proc = daemon.ctl("serve", timeout=30)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port} ([http] listen)" in proc.stderr
    assert 'listen = ""' in proc.stderr


def test_install_tells_the_running_daemon_which_starts_what_waited(make_daemon: MakeDaemon,
                                                                   workdir: Path) -> None:
    """Regression: after `mcpctl install NAME`, status kept saying "not installed" until
    `mcpctl start`. The install tells the daemon, and the waiting server starts."""
    import os
    import subprocess
    import sys

    from .conftest import ECHO, MCPCTL

    fake = workdir / "fakebin"
    fake.mkdir()
    npm = fake / "npm"
    npm.write_text(f"""#!{sys.executable}
import os, sys
argv = sys.argv[1:]
prefix = argv[argv.index("--prefix") + 1]
bin_path = os.path.join(prefix, "node_modules", ".bin")
os.makedirs(bin_path, exist_ok=True)
target = os.path.join(bin_path, "pkgd-server")
with open(target, "w") as fh:
    fh.write("#!/bin/sh\\nexec {sys.executable} {ECHO}\\n")
os.chmod(target, 0o755)
""")
    npm.chmod(0o755)
    daemon = make_daemon('[servers.pkgd]\npackage = "npm:pkgd-server@1.0.0"\ncommand = "pkgd-server"\n')
    waiting = daemon.wait_state("pkgd", "unavailable")
    assert "not installed: run 'mcpctl install pkgd'" in waiting["reason"]
    env = {**daemon.env, "PATH": f"{fake}:{os.environ['PATH']}"}
    proc = subprocess.run([MCPCTL, "--socket", str(daemon.socket), "--config", str(daemon.config),
                           "install", "pkgd"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pkgd: ready" in proc.stderr
    assert daemon.status("pkgd")["state"] == "ready"


def test_a_failed_install_is_the_unavailable_reason(make_daemon: MakeDaemon, workdir: Path) -> None:
    """The reason says why the install failed (a missing system package, say), not only
    "not installed"."""
    import os
    import subprocess

    from .conftest import MCPCTL

    fake = workdir / "fakebin"
    fake.mkdir()
    npm = fake / "npm"
    npm.write_text("#!/bin/sh\necho 'gyp ERR! keytar: Package libsecret-1 was not found'\nexit 1\n")
    npm.chmod(0o755)
    daemon = make_daemon('[servers.native]\npackage = "npm:native-thing@1.0.0"\ncommand = "native-thing"\n')
    daemon.wait_state("native", "unavailable")
    env = {**daemon.env, "PATH": f"{fake}:{os.environ['PATH']}"}
    proc = subprocess.run([MCPCTL, "--socket", str(daemon.socket), "--config", str(daemon.config),
                           "install", "native"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    reason = daemon.status("native")["reason"]
    assert reason.startswith("not installed: the last 'mcpctl install native' failed: ")
    assert "libsecret-1 was not found" in reason
