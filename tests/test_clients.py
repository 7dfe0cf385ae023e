"""`mcpctl clients`, `clients link` and `clients unlink` on sample configs of each client
(tests/fixtures/clients), through the real CLI with HOME and the working directory in a temp dir."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from supervisor.client_configs.importer import strip_jsonc

from .conftest import MCPCTL

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "clients"

FLEET = """
[http]
listen = ""
[servers.memory]
command = "true"
[servers.brave]
command = "true"
[servers.brave-search]
command = "true"
[servers.time]
command = "true"
"""

# client → (fixture, where it goes, relative to HOME ("~") or the project dir ("."), servers key path)
PLACES = {
    "claude-desktop": [("claude_desktop_config.json", "~/.config/Claude/claude_desktop_config.json",
                        ("mcpServers",))],
    "claude-code": [("claude.json", "~/.claude.json", ("mcpServers",)),
                    ("mcp.json-claude-code-project", "./.mcp.json", ("mcpServers",))],
    "cursor": [("cursor-mcp.json", "~/.cursor/mcp.json", ("mcpServers",))],
    "vscode": [("vscode-mcp.json", "./.vscode/mcp.json", ("servers",))],
    "windsurf": [("windsurf-mcp_config.json", "~/.codeium/windsurf/mcp_config.json", ("mcpServers",))],
}
LINKED = {"claude-desktop": {"memory", "brave-search"}, "claude-code": {"memory", "time"},
          "cursor": {"memory", "time"}, "vscode": {"memory", "brave"}, "windsurf": {"time"}}


@pytest.fixture
def machine(tmp_path: Path) -> dict[str, Path]:
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    (tmp_path / "fleet.toml").write_text(FLEET)
    for places in PLACES.values():
        for fixture, where, _table in places:
            target = (home if where.startswith("~") else project) / where[2:]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(FIXTURES / fixture, target)
    return {"home": home, "project": project, "fleet": tmp_path / "fleet.toml"}


def target(machine: dict[str, Path], where: str) -> Path:
    return (machine["home"] if where.startswith("~") else machine["project"]) / where[2:]


def run(machine: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(machine["home"]), "PATH": os.environ["PATH"],
           "XDG_CONFIG_HOME": str(machine["home"] / ".config"),
           "MCP_SUPERVISOR_SOCKET": str(machine["home"] / "ctl.sock")}
    return subprocess.run([MCPCTL, "--config", str(machine["fleet"]), "clients", *args],
                          cwd=machine["project"], capture_output=True, text=True, env=env, timeout=60)


def servers(path: Path, table: tuple[str, ...]) -> dict[str, dict[str, object]]:
    node = json.loads(strip_jsonc(path.read_text()))
    for key in table:
        node = node[key]
    found: dict[str, dict[str, object]] = node
    return found


def test_clients_lists_every_config_and_how_each_entry_runs(machine: dict[str, Path]) -> None:
    proc = run(machine)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for label in ("Claude Desktop (claude-desktop, user)", "Claude Code (claude-code, user)",
                  "Claude Code (claude-code, project)", "Cursor (cursor, user)", "VS Code (vscode, project)",
                  "Windsurf (windsurf, user)"):
        assert label in text, text
    assert re.search(r"\n  my-own-tool +direct \(not in the fleet: mcpctl import\)\n", text)
    assert re.search(r"\n  brave-search +direct \(in the fleet: link it\)\n", text)
    assert re.search(r"\n  github-remote +remote URL\n", text)


@pytest.mark.parametrize("client", sorted(PLACES))
def test_link_then_unlink_round_trips_to_the_original_bytes(machine: dict[str, Path], client: str) -> None:
    """link: the fleet's entries (only those) become `mcpctl connect NAME` with the absolute path
    and --socket, a backup sits beside the file, a dry run writes nothing, a second link changes
    nothing; unlink gives back the original bytes."""
    originals = {where: target(machine, where).read_bytes() for _f, where, _t in PLACES[client]}

    dry = run(machine, "link", client, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "+++ " in dry.stdout and '"connect"' in dry.stdout
    assert "BSAfake" not in dry.stdout  # a client config's literal key is shown as ***
    assert {where: target(machine, where).read_bytes() for where in originals} == originals

    linked = run(machine, "link", client)
    assert linked.returncode == 0, linked.stderr
    if client == "claude-desktop":
        assert "note: brave-search had BRAVE_API_KEY in this client's config" in linked.stdout
        assert "BSAfake" not in linked.stdout  # a value is never printed
    socket = str(machine["home"] / "ctl.sock")
    seen: set[str] = set()
    for fixture, where, table in PLACES[client]:
        path = target(machine, where)
        before = servers(FIXTURES / fixture, table)
        after = servers(path, table)
        assert list(after) == list(before)  # order kept, nothing added or dropped
        for name, entry in after.items():
            if name in LINKED[client]:
                seen.add(name)
                assert entry["command"] == MCPCTL
                assert entry["args"] == ["--socket", socket, "connect", name]
                assert ("type" in entry) == ("type" in before[name] or client == "vscode")
            else:
                assert entry == before[name]
        assert path.with_name(path.name + ".mcp-supervisor.bak").read_bytes() == originals[where]
        whole_before = json.loads(strip_jsonc((FIXTURES / fixture).read_text()))
        whole_after = json.loads(strip_jsonc(path.read_text()))
        assert {k: v for k, v in whole_after.items() if k != table[0]} == \
            {k: v for k, v in whole_before.items() if k != table[0]}  # unrelated keys kept
        if client == "vscode":
            assert "/* the knowledge graph */" in path.read_text()  # comments kept
        if client == "claude-desktop":
            json.loads(path.read_text())  # still strict JSON
    assert seen == LINKED[client]

    linked_bytes = {where: target(machine, where).read_bytes() for where in originals}
    again = run(machine, "link", client)
    assert again.returncode == 0 and "nothing to change" in again.stdout
    assert {where: target(machine, where).read_bytes() for where in originals} == linked_bytes

    listed = run(machine)
    assert "through the daemon" in listed.stdout

    unlinked = run(machine, "unlink", client)
    assert unlinked.returncode == 0, unlinked.stderr
    for where, data in originals.items():
        path = target(machine, where)
        assert path.read_bytes() == data
        assert not path.with_name(path.name + ".mcp-supervisor.bak").exists()


def test_unknown_client_is_a_usage_error(machine: dict[str, Path]) -> None:
    proc = run(machine, "link", "emacs")
    assert proc.returncode == 2
    assert "claude-desktop" in proc.stderr
