"""mcpctl secret set NAME VAR | list [NAME] | unset NAME VAR: keys the daemon reads at every spawn.

`set` reads the value from stdin when it is piped (`printf %s "$KEY" | mcpctl secret set brave
BRAVE_API_KEY`), else from a prompt that does not echo, and writes it to the server's `env_file`
when it has one, else to the daemon-wide `[supervisor] env_file` (default
`$XDG_CONFIG_HOME/mcp-supervisor/secrets.env`), mode 0600. A server that was `unavailable` for want
of it is started at once; a running one uses it from its next start (`mcpctl restart NAME`).
`list` prints variable names and where they are set, never values. `unset` removes one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supervisor.config import FleetConfig, ServerConfig

NAME = "secret"
HELP = "set, list or unset the secrets (API keys) the daemon gives a server"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    set_ = sub.add_parser("set", help="store VAR for server NAME (value from stdin or a prompt)")
    set_.add_argument("server", metavar="NAME")
    set_.add_argument("var", metavar="VAR")
    list_ = sub.add_parser("list", help="the variables that are set (names only)")
    list_.add_argument("server", metavar="NAME", nargs="?")
    unset = sub.add_parser("unset", help="remove VAR")
    unset.add_argument("server", metavar="NAME")
    unset.add_argument("var", metavar="VAR")


def used_vars(server: ServerConfig) -> list[str]:
    """Every variable the server's entry needs or passes on, in a stable order."""
    from supervisor.config import referenced_vars

    found: list[str] = list(server.requires_env)
    for raw in (server.command, *server.args, *server.env.values(), server.cwd or ""):
        try:
            found += referenced_vars(raw)
        except ValueError:
            continue
    return list(dict.fromkeys(v for v in found if v != "MCP_SUPERVISOR_STATE_DIR"))


def _daemon_info(args: argparse.Namespace) -> dict[str, Any] | None:
    from supervisor import paths
    from supervisor.client.control import call
    from supervisor.client.errors import DaemonUnavailable, RemoteError

    try:
        result = call(paths.resolve_socket(args.socket), "supervisor/status", {"servers": []}, 10)
    except (DaemonUnavailable, RemoteError, OSError):
        return None
    return result if isinstance(result, dict) else None


def daemon_file(config: FleetConfig, info: dict[str, Any] | None) -> Path | None:
    """The daemon-wide file: the running daemon's own when it answers, else this config's."""
    from supervisor.config.envfiles import supervisor_env_file

    if info is not None and "env_file" in (info.get("daemon") or {}):
        where = info["daemon"]["env_file"]
        return Path(where) if where else None
    return supervisor_env_file(config.supervisor.env_file, os.environ)


def server_file(config: FleetConfig, server: ServerConfig) -> Path | None:
    from supervisor.config import expand

    if not server.env_file:
        return None
    path = Path(expand(server.env_file, os.environ)).expanduser()
    return path if path.is_absolute() else Path(os.path.abspath(config.path or ".")).parent / path


def _read_value(var: str, server: str) -> str:
    if sys.stdin.isatty():
        import getpass
        return getpass.getpass(f"{var} for {server} (not shown): ")
    value = sys.stdin.read()
    if value.endswith("\n"):
        value = value[:-1]
    return value.removesuffix("\r")


def _names(path: Path) -> list[str]:
    from supervisor.config.envfiles import read_env_file

    return list(read_env_file(path, missing_ok=True))


def run(args: argparse.Namespace) -> int:
    from supervisor import paths
    from supervisor.config import load_config
    from supervisor.config.envfiles import NAME as VAR_NAME
    from supervisor.config.envfiles import EnvFileError, update_file
    from supervisor.errors import ConfigError

    from ._client import err, out

    try:
        config = load_config(paths.resolve_config(getattr(args, "config", None)))
    except ConfigError as exc:
        err(f"mcpctl secret: {exc}")
        return 1
    if args.server is not None and args.server not in config.servers:
        err(f"mcpctl secret: no server named {args.server!r} in {config.path} "
            f"(servers: {', '.join(config.servers)})")
        return 2
    info = _daemon_info(args)
    shared = daemon_file(config, info)
    try:
        if args.action == "list":
            return _list(config, args.server, shared, out)
        server = config.servers[args.server]
        if not VAR_NAME.fullmatch(args.var):
            err(f"mcpctl secret: {args.var!r} is not a variable name (letters, digits, _)")
            return 2
        target = server_file(config, server) or shared
        if target is None:
            err("mcpctl secret: no file to write: [supervisor] env_file is \"\" and "
                f"{server.name} has no env_file")
            return 1
        uses = used_vars(server)
        if args.var not in uses:
            err(f"note: {server.name} does not use {args.var} "
                f"(it uses: {', '.join(uses) or 'no variables'})")
        if args.action == "unset":
            changed = update_file(target, args.var, None)
            out(f"{args.var} removed from {target}" if changed else f"{args.var} was not set in {target}")
            return 0
        value = _read_value(args.var, server.name)
        if not value:
            err("mcpctl secret: empty value; nothing written (use 'mcpctl secret unset' to remove one)")
            return 2
        update_file(target, args.var, value)
    except EnvFileError as exc:
        err(f"mcpctl secret: {exc}")
        return 1
    out(f"{args.var} for {server.name} saved in {target} (mode 0600)")
    return _tell_daemon(args, server.name, info, out)


def _tell_daemon(args: argparse.Namespace, name: str, info: dict[str, Any] | None,
                 out: Any) -> int:
    """Start the server now if it was waiting for a key; else say how the new value is used."""
    from ._client import daemon_call, describe, run_guarded

    if info is None:
        out(f"The daemon reads it when it starts {name} (it is not running now).")
        return 0

    def _start(args: argparse.Namespace) -> int:
        state = daemon_call(args, "supervisor/status", {"servers": [name]})["servers"][0]
        if state["state"] == "unavailable":
            result = daemon_call(args, "supervisor/start", {"servers": [name], "wait": 60}, 70)
            out(describe(result["servers"][0]))
            return 0
        out(f"{name} is {state['state']}: 'mcpctl restart {name}' makes it use the new value")
        return 0

    return run_guarded(_start, args)


def _list(config: FleetConfig, name: str | None, shared: Path | None, out: Any) -> int:
    """Names and where they are set; with NAME, each variable that server uses."""
    files: list[tuple[str, Path]] = []
    if shared is not None:
        files.append(("[supervisor] env_file", shared))
    selected = [config.servers[name]] if name else list(config.servers.values())
    for server in selected:
        own = server_file(config, server)
        if own is not None:
            files.append((f"{server.name} env_file", own))
    found: dict[str, list[str]] = {}
    for _label, path in files:
        for var in _names(path):
            found.setdefault(var, []).append(str(path))
    if name is None:
        for label, path in files:
            names = _names(path)
            out(f"{label}: {path}" + ("" if path.exists() else " (not created yet)"))
            out("  " + (", ".join(names) if names else "(nothing set)"))
        return 0
    server = config.servers[name]
    for var in used_vars(server):
        if var in found:
            where = found[var][-1]
        elif os.environ.get(var):
            where = "this shell's environment only (the daemon may not have it)"
        else:
            where = "not set"
        required = " (required)" if var in server.requires_env else ""
        out(f"{var}{required}: {where}")
    return 0
