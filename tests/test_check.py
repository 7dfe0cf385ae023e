"""`mcpctl check` (validation and --prerequisites) and `mcpctl config-snippet`, through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.config import parse_config
from supervisor.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
MCPCTL = str(Path(sys.executable).with_name("mcpctl"))


def mcpctl(*args: str, tmp: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in {"MCP_NEEDED_TOKEN", "MCP_SUPERVISOR_CONFIG", "MCP_SUPERVISOR_SOCKET",
                         "XDG_RUNTIME_DIR"}}
    full = {**base, "PYTHONPATH": str(REPO), "MCP_SUPERVISOR_DATA": str(tmp / "data"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "supervisor.cli", *args], cwd=tmp, capture_output=True,
                          text=True, env=full, timeout=60, check=False)


VALID = """
[servers.echo]
command = "sh"
args = ["-c", "cat"]
"""


def test_valid_file_exits_0(tmp_path: Path) -> None:
    (tmp_path / "fleet.toml").write_text(VALID)
    proc = mcpctl("check", tmp=tmp_path)  # ./fleet.toml, by the usual lookup
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "fleet.toml: OK (1 server)"


@pytest.mark.parametrize("where", ["before", "after"])
def test_invalid_file_exits_1_with_the_precise_error(tmp_path: Path, where: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(VALID + 'max_inflight = 4\n')
    with pytest.raises(ConfigError) as expected:
        parse_config(bad.read_text(), path=str(bad))
    args = ["--config", str(bad), "check"] if where == "before" else ["check", "--config", str(bad)]
    proc = mcpctl(*args, tmp=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == str(expected.value)
    assert proc.stderr.startswith(f"{bad}:5: servers.echo.max_inflight: unknown key")
    assert "did you mean 'max_in_flight'" in proc.stderr


def test_invalid_file_as_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[servers.x]\nargs = []\n")
    proc = mcpctl("check", "--config", str(bad), "--json", tmp=tmp_path)
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["valid"] is False and out["key"] == "servers.x.command" and out["line"] == 1


def test_missing_file(tmp_path: Path) -> None:
    proc = mcpctl("check", "--config", str(tmp_path / "nope.toml"), tmp=tmp_path)
    assert proc.returncode == 1 and "nope.toml: cannot read" in proc.stderr


PREREQS = """
[servers.ready]
package = "npm:some-server@1.0.0"
command = "some-server"

[servers.stale]
package = "npm:some-server@2.0.0"
command = "some-server"

[servers.fresh]
package = "pypi:mcp-server-time==2026.10.19"
command = "mcp-server-time"

[servers.needs-key]
command = "sh"
env = { KEY = "${MCP_NEEDED_TOKEN}" }
requires_env = ["MCP_NEEDED_TOKEN"]

[servers.absent]
command = "surely-not-installed-anywhere"

[servers.pathed]
command = "/nonexistent/bin/server"
"""


def fake_install(data: Path, name: str, package: str, command: str) -> None:
    prefix = data / "servers" / name
    (prefix / "node_modules/.bin").mkdir(parents=True)
    exe = prefix / "node_modules/.bin" / command
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (prefix / ".installed.json").write_text(json.dumps({"package": package, "extra_requires": []}))


def test_prerequisites_table(tmp_path: Path) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text(PREREQS)
    fake_install(tmp_path / "data", "ready", "npm:some-server@1.0.0", "some-server")
    fake_install(tmp_path / "data", "stale", "npm:some-server@1.0.0", "some-server")

    proc = mcpctl("check", "--prerequisites", tmp=tmp_path)

    assert proc.returncode == 1, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:-1]}
    assert rows["ready"].split()[1] == "ok"
    assert str(tmp_path / "data/servers/ready/node_modules/.bin/some-server") in rows["ready"]
    assert "not installed" in rows["stale"]
    assert "npm:some-server@2.0.0 (found npm:some-server@1.0.0): run 'mcpctl install stale'" in rows["stale"]
    assert "run 'mcpctl install fresh'" in rows["fresh"]
    assert "env var unset  env var MCP_NEEDED_TOKEN unset" in rows["needs-key"]
    assert "binary absent  surely-not-installed-anywhere not found on PATH" in rows["absent"]
    assert "binary absent  /nonexistent/bin/server is not an executable file" in rows["pathed"]
    assert proc.stdout.splitlines()[-1] == "1 of 6 servers can start"

    with_key = mcpctl("check", "--prerequisites", "--json", tmp=tmp_path, env={"MCP_NEEDED_TOKEN": "t"})
    statuses = {s["name"]: s["status"] for s in json.loads(with_key.stdout)["servers"]}
    assert statuses == {"ready": "ok", "stale": "not installed", "fresh": "not installed",
                        "needs-key": "ok", "absent": "binary absent", "pathed": "binary absent"}


def test_config_snippet(tmp_path: Path) -> None:
    (tmp_path / "fleet.toml").write_text('[http]\nlisten = "127.0.0.1:9911"\n' + VALID)
    proc = mcpctl("config-snippet", "echo", tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "mcpServers": {"echo": {"command": MCPCTL, "args": ["connect", "echo"]}}}
    assert "Streamable HTTP: http://127.0.0.1:9911/mcp/echo" in proc.stderr

    http = mcpctl("config-snippet", "echo", "--http", tmp=tmp_path)
    assert json.loads(http.stdout) == {"mcpServers": {"echo": {"type": "http",
                                                                "url": "http://127.0.0.1:9911/mcp/echo"}}}
    aggregate = mcpctl("config-snippet", "--all", tmp=tmp_path)
    assert json.loads(aggregate.stdout)["mcpServers"]["mcp-supervisor"]["args"] == ["connect", "--all"]
    assert "http://127.0.0.1:9911/mcp\n" in aggregate.stderr

    unknown = mcpctl("config-snippet", "nope", tmp=tmp_path)
    assert unknown.returncode == 2 and "no server named 'nope'" in unknown.stderr


@pytest.mark.parametrize(("env", "socket"), [
    ({"XDG_RUNTIME_DIR": "/tmp/elsewhere-run"}, "/tmp/elsewhere-run/mcp-supervisor/control.sock"),
    ({"MCP_SUPERVISOR_SOCKET": "/tmp/custom.sock"}, "/tmp/custom.sock"),
])
def test_config_snippet_names_the_socket_a_scrubbed_client_would_miss(tmp_path: Path, env: dict[str, str],
                                                                      socket: str) -> None:
    """A client starts the bridge without XDG_RUNTIME_DIR or MCP_SUPERVISOR_SOCKET: when the
    daemon's socket comes from either, the snippet passes it as `--socket` (regression: the
    bridge said the daemon was not running while it ran)."""
    (tmp_path / "fleet.toml").write_text(VALID)
    proc = mcpctl("config-snippet", "echo", tmp=tmp_path, env=env)
    entry = json.loads(proc.stdout)["mcpServers"]["echo"]
    assert entry == {"command": MCPCTL, "args": ["--socket", socket, "connect", "echo"]}
    explicit = mcpctl("--socket", "/tmp/x/ctl.sock", "config-snippet", "--all", tmp=tmp_path)
    assert json.loads(explicit.stdout)["mcpServers"]["mcp-supervisor"]["args"] == [
        "--socket", "/tmp/x/ctl.sock", "connect", "--all"]


def test_config_snippet_default_url(tmp_path: Path) -> None:
    (tmp_path / "fleet.toml").write_text(VALID)
    proc = mcpctl("config-snippet", "echo", tmp=tmp_path)
    assert "http://127.0.0.1:8765/mcp/echo" in proc.stderr
