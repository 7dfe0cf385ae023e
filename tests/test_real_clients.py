"""Real MCP clients, started the way client apps start servers, using exactly what
`mcpctl config-snippet` prints: the official Python SDK (`stdio_client` with no `env`, so its default
environment) and the official TypeScript SDK (tests/node/sdk_client.mjs, `StdioClientTransport` with
no `env`), each from an environment whose PATH does not contain the virtualenv. For the single-server
bridge, `connect --all`, and both Streamable HTTP URLs.

Regression for issue 17: the snippet said `"command": "mcpctl"` (not found on a client's PATH) and
the bridge looked for the socket where a scrubbed environment pointed (no XDG_RUNTIME_DIR)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from .conftest import ECHO, REPO, Daemon, MakeDaemon, free_port, server_toml
from .sdk import text_of

pytestmark = pytest.mark.anyio

VENV_BIN = str(Path(sys.executable).parent)
NODE_SCRIPT = REPO / "tests" / "node" / "sdk_client.mjs"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def clean_path() -> str:
    """The PATH a desktop app gives its servers: the system's, without our virtualenv."""
    keep = [p for p in os.environ.get("PATH", "").split(":")
            if p and os.path.realpath(p) != os.path.realpath(VENV_BIN) and ".venv" not in p]
    path = ":".join(dict.fromkeys([*keep, "/usr/local/bin", "/usr/bin", "/bin"]))
    assert shutil.which("mcpctl", path=path) is None, "this test needs a PATH without mcpctl"
    return path


@pytest.fixture
def fleet(make_daemon: MakeDaemon) -> Daemon:
    port = free_port()
    daemon = make_daemon(f'[http]\nlisten = "127.0.0.1:{port}"\n' + server_toml("echo")
                         + server_toml("other", ECHO, "--era", "legacy"))
    for name in ("echo", "other"):
        daemon.wait_state(name, "ready")
    return daemon


def snippet(daemon: Daemon, *args: str) -> dict[str, Any]:
    """The entry `mcpctl config-snippet` prints, run as the user would (their own shell)."""
    proc = daemon.ctl("config-snippet", *args)
    assert proc.returncode == 0, proc.stderr
    entry: dict[str, Any]
    [entry] = json.loads(proc.stdout)["mcpServers"].values()
    return entry


TARGETS: list[tuple[tuple[str, ...], str, dict[str, Any], str]] = [
    # (config-snippet args, tool, arguments, expected text)
    (("echo",), "echo", {"text": "hi from a client"}, "hi from a client"),
    (("--all",), "other__add", {"a": 2, "b": 40}, "42"),
    (("echo", "--http"), "echo", {"text": "over http"}, "over http"),
    (("--all", "--http"), "echo__echo", {"text": "aggregate http"}, "aggregate http"),
]


async def test_python_sdk_with_its_default_environment(fleet: Daemon,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """One daemon, every door (bridge, --all, both HTTP URLs): a daemon per door would make this
    the slowest file of the suite for no extra coverage."""
    entries = [(snippet(fleet, *args), tool, arguments, expected)
               for args, tool, arguments, expected in TARGETS]
    # What the SDK passes on is read from this process: a client app's environment, no venv on PATH.
    monkeypatch.setenv("PATH", clean_path())
    for var in ("XDG_RUNTIME_DIR", "MCP_SUPERVISOR_SOCKET", "VIRTUAL_ENV"):
        monkeypatch.delenv(var, raising=False)
    for entry, tool, arguments, expected in entries:
        if "url" not in entry:
            assert os.path.isabs(entry["command"])
            assert entry["args"][:2] == ["--socket", str(fleet.socket)]
        with anyio.fail_after(60):
            if "url" in entry:
                async with streamable_http_client(entry["url"]) as (read, write), \
                        ClientSession(read, write) as session:
                    await session.initialize()
                    names = {t.name for t in (await session.list_tools()).tools}
                    result = await session.call_tool(tool, arguments)
            else:
                params = StdioServerParameters(command=entry["command"], args=entry["args"])  # no env
                async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
                    await session.initialize()
                    names = {t.name for t in (await session.list_tools()).tools}
                    result = await session.call_tool(tool, arguments)
        assert tool in names, entry
        assert not result.is_error, entry
        assert text_of(result) == expected, entry


def node() -> str:
    found = shutil.which("node")
    assert found, "node is required (make test installs tests/node)"
    assert (REPO / "tests" / "node" / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir(), \
        "tests/node is not installed: make test runs npm ci there"
    return found


def test_typescript_sdk_with_its_default_environment(fleet: Daemon) -> None:
    env = {"HOME": fleet.env.get("HOME", "/root"), "PATH": f"{os.path.dirname(node())}:{clean_path()}",
           "USER": os.environ.get("USER", "root"), "LOGNAME": os.environ.get("LOGNAME", "root"),
           "SHELL": "/bin/sh", "TERM": "dumb"}
    for args, tool, arguments, expected in TARGETS:
        entry = snippet(fleet, *args)
        proc = subprocess.run([node(), str(NODE_SCRIPT), json.dumps({"entry": entry, "tool": tool,
                                                                     "arguments": arguments})],
                              capture_output=True, text=True, env=env, timeout=90,
                              cwd=REPO / "tests" / "node")
        assert proc.returncode == 0, (entry, proc.stderr)
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert tool in out["tools"], entry
        assert not out["result"].get("isError"), entry
        assert out["result"]["content"][0]["text"] == expected, entry
