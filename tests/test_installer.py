"""`mcpctl install` and `resolve_command`: real npm and PyPI installs into a temporary data dir,
plus fast tests of the pieces with a fake `npm` on PATH."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor.config import ServerConfig, parse_config
from supervisor.config.package import PackageSpec
from supervisor.core.installer import (
    MARKER,
    Installer,
    Progress,
    ProgressDisplay,
    _error_line,
    format_summary,
    install_steps,
    installer_env,
    is_installed,
    resolve_command,
    server_prefix,
)

from .server_fakes import FakeClock

REPO = Path(__file__).resolve().parent.parent

SEQ = "npm:@modelcontextprotocol/server-sequential-thinking@2026.8.31"
TIME = "pypi:mcp-server-time==2026.10.19"


def mcpctl(*args: str, config: Path, data: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MCP_SUPERVISOR_DATA": str(data), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "supervisor.cli", "--config", str(config), *args],
                          capture_output=True, text=True, env=env, timeout=timeout, check=False)


def results_by_name(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    return {r["name"]: r for r in json.loads(proc.stdout)["results"]}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_install_real_npm_and_pypi_servers(tmp_path: Path) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text(f"""
[servers.seq]
package = "{SEQ}"
command = "mcp-server-sequential-thinking"

[servers.time]
package = "{TIME}"
command = "mcp-server-time"
args = ["--local-timezone", "UTC"]

# A real package at a version that does not exist: must fail without stopping the others.
[servers.broken]
package = "npm:@modelcontextprotocol/server-sequential-thinking@0.0.1"
command = "mcp-server-sequential-thinking"
""")
    data = tmp_path / "data"

    first = mcpctl("install", "--json", config=config, data=data)
    assert first.returncode == 1, first.stderr
    got = results_by_name(first)
    assert got["seq"]["outcome"] == "installed", got["seq"]
    assert got["time"]["outcome"] == "installed", got["time"]
    assert got["broken"]["outcome"] == "failed"
    assert "No matching version found for @modelcontextprotocol/server-sequential-thinking@0.0.1" in str(
        got["broken"]["detail"])
    assert not (data / "servers" / "broken" / MARKER).exists()

    fleet = parse_config(config.read_text())
    seq = resolve_command(fleet.servers["seq"], data)
    time_argv = resolve_command(fleet.servers["time"], data)
    assert seq == [str(data / "servers/seq/node_modules/.bin/mcp-server-sequential-thinking")]
    assert time_argv == [str(data / "servers/time/venv/bin/mcp-server-time"), "--local-timezone", "UTC"]
    assert resolve_command(fleet.servers["broken"], data) is None
    # The venv's bin really runs (and has its own interpreter, not the supervisor's).
    help_run = subprocess.run([time_argv[0], "--help"], capture_output=True, text=True, timeout=60,
                              check=False)
    assert help_run.returncode == 0 and "timezone" in help_run.stdout

    # Second run: same pins → skipped; the failure is retried and fails again; the table says so.
    second = mcpctl("install", "seq", "time", config=config, data=data)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("already installed") == 2
    assert "0 installed, 2 skipped, 0 failed" in second.stdout


def write_fake_npm(bin_dir: Path) -> None:
    """An `npm` that installs a bin named after the package, or fails like npm for `*-missing`."""
    bin_dir.mkdir(parents=True)
    script = bin_dir / "npm"
    script.write_text(f"""#!{sys.executable}
import os, sys
argv = sys.argv[1:]
prefix = argv[argv.index("--prefix") + 1]
spec = argv[-1]
name = spec.rsplit("@", 1)[0].rsplit("/", 1)[-1]
print("npm http fetch GET 200 https://registry.npmjs.org/" + name)
if name.endswith("-missing"):
    print("npm error code E404")
    print("npm error 404 Not Found - GET https://registry.npmjs.org/" + name + " - Not found")
    print("npm error A complete log of this run can be found in: /x.log")
    sys.exit(1)
assert os.environ.get("PUPPETEER_SKIP_DOWNLOAD") == "1"
assert "SECRET_TOKEN" not in os.environ, "credentials must not reach install scripts"
bin_path = os.path.join(prefix, "node_modules", ".bin")
os.makedirs(bin_path, exist_ok=True)
target = os.path.join(bin_path, name)
with open(target, "w") as fh:
    fh.write("#!/bin/sh\\necho " + name + "\\n")
os.chmod(target, 0o755)
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


@dataclass(frozen=True)
class Entry:
    name: str
    command: str
    package: str | None
    args: tuple[str, ...] = ()
    extra_requires: tuple[str, ...] = ()


def test_one_failure_never_stops_the_others_and_reruns_skip(tmp_path: Path) -> None:
    fake = tmp_path / "fakebin"
    write_fake_npm(fake)
    environ = {"PATH": f"{fake}:{os.environ['PATH']}", "HOME": str(tmp_path), "SECRET_TOKEN": "x"}
    entries = [Entry("a", "pkg-a", "npm:pkg-a@1.0.0"), Entry("gone", "pkg-missing", "npm:pkg-missing@1.0.0"),
               Entry("b", "pkg-b", "npm:@scope/pkg-b@2.0.0"), Entry("local", "sh", None)]
    installer = Installer(tmp_path / "data", jobs=2, environ=environ)

    results = anyio.run(installer.install_all, entries)

    outcome = {r.name: (r.outcome, r.detail) for r in results}
    assert outcome["a"][0] == "installed" and outcome["b"][0] == "installed"
    assert outcome["gone"] == (
        "failed", "404 Not Found - GET https://registry.npmjs.org/pkg-missing - Not found")
    assert outcome["local"] == ("skipped", "no package: runs as written")
    assert [r.name for r in results] == ["a", "gone", "b", "local"]  # config order, not finish order
    marker = json.loads((tmp_path / "data/servers/a" / MARKER).read_text())
    assert marker["package"] == "npm:pkg-a@1.0.0" and marker["extra_requires"] == []

    again = anyio.run(installer.install_all, entries)
    assert {r.name: r.outcome for r in again} == {"a": "skipped", "gone": "failed", "b": "skipped",
                                                  "local": "skipped"}
    summary = format_summary(again)
    assert "0 installed, 3 skipped, 1 failed" in summary

    # A changed pin is not "already installed": it reinstalls from a clean prefix.
    bumped = Entry("a", "pkg-a", "npm:pkg-a@1.0.1")
    assert not is_installed(bumped, tmp_path / "data")
    (tmp_path / "data/servers/a/stale-file").write_text("old")
    [result] = anyio.run(installer.install_all, [bumped])
    assert result.outcome == "installed"
    assert not (tmp_path / "data/servers/a/stale-file").exists()


def test_a_package_without_the_configured_command_fails_clearly(tmp_path: Path) -> None:
    fake = tmp_path / "fakebin"
    write_fake_npm(fake)
    installer = Installer(tmp_path / "data", environ={"PATH": f"{fake}:{os.environ['PATH']}"})
    [result] = anyio.run(installer.install_all, [Entry("x", "wrong-bin", "npm:pkg-x@1.0.0")])
    assert result.outcome == "failed"
    assert result.detail == "installed, but the package has no command 'wrong-bin' (it provides: pkg-x)"
    assert not (tmp_path / "data/servers/x" / MARKER).exists()


def test_install_times_are_read_from_the_injected_clock(tmp_path: Path, clock: FakeClock) -> None:
    """An install's seconds, the live display's elapsed column and the marker's `installed_at`
    come from the installer's clock: seven fake seconds during `npm install` read as 7.0 s."""
    fake = tmp_path / "fakebin"
    write_fake_npm(fake)
    out = io.StringIO()
    display = ProgressDisplay(["a"], out, live=True, clock=clock)

    def on_change(progress: Progress) -> None:
        display.update(progress)
        if progress.state == "npm install" and not display.drawn:  # the step starts (once)
            clock.advance(7)
            display.redraw()

    installer = Installer(tmp_path / "data", environ={"PATH": f"{fake}:{os.environ['PATH']}"},
                          on_change=on_change, clock=clock)
    [result] = anyio.run(installer.install_all, [Entry("a", "pkg-a", "npm:pkg-a@1.0.0")])
    assert (result.outcome, result.seconds) == ("installed", 7.0)
    assert "npm install   7.0s" in out.getvalue()
    marker = json.loads((tmp_path / "data/servers/a" / MARKER).read_text())
    assert marker["installed_at"] == time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(clock.time()))


def test_install_steps_are_argv_lists_never_shell(tmp_path: Path) -> None:
    npm = install_steps(PackageSpec.parse("npm:@scope/name@1.2.3"), (), tmp_path, npm="/usr/bin/npm")
    assert npm == [("npm install", ["/usr/bin/npm", "install", "--prefix", str(tmp_path), "--no-audit",
                                    "--no-fund", "--omit=dev", "--no-progress", "--loglevel=warn",
                                    "--", "@scope/name@1.2.3"])]
    pypi = install_steps(PackageSpec.parse("pypi:grype-mcp==0.4.0"), ("mcp<2",), tmp_path, python="/py")
    assert pypi[0][1] == ["/py", "-m", "venv", str(tmp_path / "venv")]
    assert pypi[1][1][-3:] == ["--", "grype-mcp==0.4.0", "mcp<2"]
    assert pypi[1][1][0] == str(tmp_path / "venv/bin/python")


def test_parse_package() -> None:
    assert str(PackageSpec.parse("npm:@a/b@1.0.0")) == "npm:@a/b@1.0.0"
    assert PackageSpec.parse("pypi:mcp-server-time==2026.10.19").requirement == "mcp-server-time==2026.10.19"
    assert PackageSpec.parse("pypi:mcp[cli] == 1.2").requirement == "mcp[cli]==1.2"
    with pytest.raises(ValueError, match="must pin an exact version"):
        PackageSpec.parse("npm:left-pad@^1.0.0")
    with pytest.raises(ValueError, match="expected"):
        PackageSpec.parse("pip:thing==1")


@pytest.mark.parametrize("text", ["npm:@a/b@1.0.0", "npm:X@2.0.0-rc.1", "pypi:mcp[cli]==1.2", "pypi:a == 1",
                                  "npm:a@latest", "npm:a", "npm:a@^1", "pypi:a>=1", "pypi:a==", "pip:a==1",
                                  "npm:@/x@1", ""])
def test_the_config_accepts_exactly_the_packages_the_installer_parses(text: str) -> None:
    """Regression: the `package` grammar was written twice (config validation and the installer);
    now both read PackageSpec, so a value fleet.toml accepts always parses for `mcpctl install`."""
    from supervisor.config import parse_config
    from supervisor.errors import ConfigError

    toml = f'[servers.s]\ncommand = "s"\npackage = "{text}"\n'
    try:
        PackageSpec.parse(text)
    except ValueError:
        with pytest.raises(ConfigError, match="package"):
            parse_config(toml)
    else:
        assert parse_config(toml).servers["s"].package == text


def test_installer_env_passes_proxy_and_ca_but_not_credentials() -> None:
    env = installer_env({"PATH": "/bin", "HOME": "/h", "https_proxy": "http://p:3128", "NO_PROXY": "x",
                         "NODE_EXTRA_CA_CERTS": "/ca.pem", "PIP_INDEX_URL": "https://i",
                         "GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_x", "BRAVE_API_KEY": "k"})
    assert env["https_proxy"] == "http://p:3128" and env["NO_PROXY"] == "x"
    assert env["NODE_EXTRA_CA_CERTS"] == "/ca.pem" and env["PIP_INDEX_URL"] == "https://i"
    assert env["PUPPETEER_SKIP_DOWNLOAD"] == "1"
    assert "GITHUB_PERSONAL_ACCESS_TOKEN" not in env and "BRAVE_API_KEY" not in env


def test_error_line_names_the_cause() -> None:
    keytar = [
        "npm error code 1",
        "npm error path /d/servers/azure-devops/node_modules/keytar",
        "npm error command failed",
        "npm error prebuild-install warn install getaddrinfo ENOTFOUND github.com",
        "npm error Package libsecret-1 was not found in the pkg-config search path.",
        "npm error gyp ERR! not ok",
        "npm error A complete log of this run can be found in: /x.log",
    ]
    assert _error_line(keytar) == "keytar: Package libsecret-1 was not found in the pkg-config search path."
    pip = ["Collecting mcp-server-time==0.0.0",
           "ERROR: Could not find a version that satisfies the requirement mcp-server-time==0.0.0",
           "ERROR: No matching distribution found for mcp-server-time==0.0.0"]
    assert _error_line(pip).startswith("ERROR: Could not find a version")
    assert _error_line(["something odd", "the end"]) == "the end"


def server(**fields: Any) -> ServerConfig:
    return ServerConfig(**{"name": "s", "command": "x", **fields})


def test_resolve_command(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # A package that is not installed: None, so the daemon says "run 'mcpctl install s'".
    assert resolve_command(server(command="mcp-server-time", package=TIME), data) is None
    prefix = server_prefix(data, "s")
    (prefix / "venv/bin").mkdir(parents=True)
    exe = prefix / "venv/bin/mcp-server-time"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert resolve_command(server(command="mcp-server-time", package=TIME, args=("${X}",)), data) == [
        str(exe), "${X}"]
    # A command with a path runs as written, if it is executable.
    assert resolve_command(server(command=str(exe), args=("a",)), data) == [str(exe), "a"]
    assert resolve_command(server(command=str(tmp_path / "nope")), data) is None
    # A templated command is expanded (argv[0] is final); args stay raw for the daemon.
    templated = server(command="${BIN_DIR}/mcp-server-time", args=("${X}",))
    assert resolve_command(templated, data, {"BIN_DIR": str(exe.parent)}) == [str(exe), "${X}"]
    # No package: PATH.
    assert resolve_command(server(command="sh"), data) == [subprocess.check_output(
        ["sh", "-c", "command -v sh"], text=True).strip()]
    assert resolve_command(server(command="surely-not-a-command-xyz"), data) is None
