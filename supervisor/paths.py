"""Where things live: the config file, the control socket, the state directory.

Each lookup follows the order documented in the README and is a pure function of the environment,
so tests pass their own mapping instead of patching `os.environ`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path


def config_candidates(environ: Mapping[str, str]) -> list[Path]:
    """`$MCP_SUPERVISOR_CONFIG`, `./fleet.toml`, the XDG config dir, then /etc."""
    found: list[Path] = []
    if environ.get("MCP_SUPERVISOR_CONFIG"):
        found.append(Path(environ["MCP_SUPERVISOR_CONFIG"]))
    found.append(Path("fleet.toml"))
    xdg = environ.get("XDG_CONFIG_HOME") or (
        str(Path(environ["HOME"]) / ".config") if environ.get("HOME") else ""
    )
    if xdg:
        found.append(Path(xdg) / "mcp-supervisor" / "fleet.toml")
    found.append(Path("/etc/mcp-supervisor/fleet.toml"))
    return found


def resolve_config(explicit: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """The config file to use; an explicit `--config` wins even when it does not exist (so the
    error names it). Otherwise the first candidate that exists, or `./fleet.toml`."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    candidates = config_candidates(env)
    if env.get("MCP_SUPERVISOR_CONFIG"):
        return candidates[0]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return Path("fleet.toml")


def resolve_socket(explicit: str | None, environ: Mapping[str, str] | None = None,
                   exists: Callable[[Path], bool] = os.path.exists, uid: int | None = None) -> Path:
    """`--socket`, `$MCP_SUPERVISOR_SOCKET`, `$XDG_RUNTIME_DIR/mcp-supervisor/control.sock`,
    else `/run/mcp-supervisor/control.sock` (root), else `/run/user/$UID/mcp-supervisor/control.sock`
    or `/tmp/mcp-supervisor-$UID/control.sock`.

    Without `XDG_RUNTIME_DIR` (MCP clients start servers with a scrubbed environment) a non-root
    user's socket is looked for in the runtime dir systemd makes for the user (`/run/user/$UID`,
    what XDG_RUNTIME_DIR normally is) and under /tmp, whichever has one; with neither, the first
    whose directory can exist. A daemon started the same way picks the same path, so both agree.
    """
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get("MCP_SUPERVISOR_SOCKET"):
        return Path(env["MCP_SUPERVISOR_SOCKET"])
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "mcp-supervisor" / "control.sock"
    uid = os.geteuid() if uid is None else uid
    if uid == 0:
        return Path("/run/mcp-supervisor/control.sock")
    runtime = Path(f"/run/user/{uid}")
    candidates = [runtime / "mcp-supervisor" / "control.sock",
                  Path(f"/tmp/mcp-supervisor-{uid}/control.sock")]
    for candidate in candidates:
        if exists(candidate):
            return candidate
    return candidates[0] if exists(runtime) else candidates[1]


def state_dir(explicit: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """Where children's HOMEs, logs and the memory server's files go: `[supervisor] state_dir`,
    `$STATE_DIRECTORY` (systemd), `$XDG_STATE_HOME/mcp-supervisor`, `~/.local/state/mcp-supervisor`."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]) / "mcp-supervisor"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "state" / "mcp-supervisor"


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where `mcpctl install` puts packages: `$XDG_DATA_HOME/mcp-supervisor`."""
    env = os.environ if environ is None else environ
    if env.get("MCP_SUPERVISOR_DATA"):
        return Path(env["MCP_SUPERVISOR_DATA"])
    if env.get("XDG_DATA_HOME"):
        return Path(env["XDG_DATA_HOME"]) / "mcp-supervisor"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "share" / "mcp-supervisor"
