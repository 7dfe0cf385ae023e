"""The repo's fleet.toml is the 27-server fleet of FLEET.md, every entry valid and exactly pinned."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from supervisor.config import FleetConfig, load_config, referenced_vars
from supervisor.config.package import PackageSpec

FLEET = Path(__file__).resolve().parent.parent / "fleet.toml"

# Servers that cannot start without a credential or an argument: they must say so via requires_env
# (→ `unavailable: VAR is not set`) instead of crash-looping on a fresh machine (FLEET.md).
NEED_CREDENTIALS = {"brave", "slack", "google-maps", "gdrive", "azure-devops"}
# Archived Python servers that mcp 2.x breaks at import time.
NEED_MCP_BELOW_2 = {"s3-storage", "security-scanner", "sqlite"}


@pytest.fixture(scope="module")
def fleet() -> FleetConfig:
    # An empty environment: the file must be valid on a machine where nothing is set.
    return load_config(FLEET, environ={})


def test_exactly_27_servers(fleet: FleetConfig) -> None:
    assert len(fleet.servers) == 27


def test_every_server_is_pinned_to_an_exact_version(fleet: FleetConfig) -> None:
    for server in fleet.servers.values():
        assert server.package, server.name
        spec = PackageSpec.parse(server.package)
        assert re.fullmatch(r"\d+(\.\d+)+", spec.version), (server.name, spec.version)
        assert "/" not in server.command, f"{server.name}: command must be the package's bin"


def test_every_server_has_a_memory_limit(fleet: FleetConfig) -> None:
    for server in fleet.servers.values():
        assert server.memory_limit is not None, server.name
        assert 64 * 2**20 <= server.memory_limit <= 2 * 2**30, server.name
    assert fleet.supervisor.memory_limit is not None
    assert fleet.supervisor.memory_limit >= sum(
        s.memory_limit or 0 for s in fleet.servers.values()) // 2


def test_credentials_are_required_not_hardcoded(fleet: FleetConfig) -> None:
    for name in NEED_CREDENTIALS:
        assert fleet.servers[name].requires_env, name
    for server in fleet.servers.values():
        for var in server.requires_env:
            # A required variable must actually reach the server, through env or args.
            used = [*server.args, *server.env.values()]
            assert any(var in referenced_vars(v) for v in used), (server.name, var)
        for key, value in server.env.items():
            if re.search(r"KEY|TOKEN|SECRET|PASSWORD", key):
                assert value.startswith("${"), f"{server.name}.env.{key} must be a placeholder"


def test_mcp_below_2_pins(fleet: FleetConfig) -> None:
    for name in NEED_MCP_BELOW_2:
        server = fleet.servers[name]
        assert server.package and server.package.startswith("pypi:")
        assert "mcp<2" in server.extra_requires, name


def test_state_files_live_in_the_state_dir(fleet: FleetConfig) -> None:
    assert "${MCP_SUPERVISOR_STATE_DIR}" in fleet.servers["memory"].env["MEMORY_FILE_PATH"]
    assert any("${MCP_SUPERVISOR_STATE_DIR}" in a for a in fleet.servers["sqlite"].args)


def test_filesystem_never_defaults_to_the_daemons_cwd(fleet: FleetConfig) -> None:
    """A "." default would hand the daemon's working directory ("/" under systemd) to the model."""
    from supervisor.config import expand

    root = expand(fleet.servers["filesystem"].args[0], {"MCP_SUPERVISOR_STATE_DIR": "/state"})
    assert root == "/state/home/filesystem"


def test_servers_with_per_session_state_get_an_instance_per_client(fleet: FleetConfig) -> None:
    """memory (a knowledge graph) and sequential-thinking (a chain of thoughts) keep state that
    must not mix between clients; memory's file lives in the client's own directory."""
    for name in ("memory", "sequential-thinking"):
        assert fleet.servers[name].sharing == "per-client", name
    assert "${MCP_SUPERVISOR_CLIENT_DIR" in fleet.servers["memory"].env["MEMORY_FILE_PATH"]


def test_fleet_toml_points_only_at_files_in_the_repository() -> None:
    """Regression: its header sent readers to ../shared/FLEET.md, which a clone does not have."""
    import re

    repo = FLEET.parent
    named = set(re.findall(r"(?<![\w/$}.~-])((?:\.\.?/)?\w[\w./-]*\.(?:md|toml|json|py|ya?ml|service))\b",
                           FLEET.read_text()))
    named.discard("fleet.toml")
    missing = sorted(n for n in named if not (repo / n).exists())
    assert not missing, f"fleet.toml names files that are not in the repository: {missing}"
