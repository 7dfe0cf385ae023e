"""mcpctl check [--config F] [--prerequisites] [--json]: validate a fleet file without starting anything.

Exit 0 when the file is valid, 1 with the precise error (`file:line: key.path: what is wrong`)
when it is not. With `--prerequisites`, also say per server what it still needs before it can start
(not installed, env var unset, binary absent, missing working directory, a refused secrets file);
exit 1 when any server needs something. When a daemon runs this same file, it is asked: its
environment, secrets files and systemd credentials decide. Otherwise this command's environment and
the secrets files it can read.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.core.prerequisites import Prerequisite

NAME = "check"
HELP = "validate the config file (and, with --prerequisites, what each server still needs)"


def configure(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: `mcpctl check --config F` and `mcpctl --config F check` both work, and an absent
    # flag here never overwrites the global one.
    parser.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE",
                        help="the fleet file to check (default: the usual lookup)")
    parser.add_argument("--prerequisites", action="store_true",
                        help="per server: installed? required variables set? binary present?")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def format_table(rows: list[Prerequisite]) -> str:
    width = max([len(r.name) for r in rows] + [6])
    lines = [f"{'SERVER':<{width}}  {'STATUS':<13}  DETAIL"]
    lines.extend(f"{row.name:<{width}}  {row.status:<13}  {row.detail}" for row in rows)
    ready = sum(1 for r in rows if not r.problems)
    lines.append(f"{ready} of {len(rows)} servers can start")
    return "\n".join(lines)


def from_daemon(args: argparse.Namespace, path: Path) -> list[Prerequisite] | None:
    """The running daemon's own verdict, when it runs this very file; else None."""
    from supervisor import paths
    from supervisor.client.control import call
    from supervisor.client.errors import DaemonUnavailable, RemoteError
    from supervisor.core.prerequisites import Prerequisite

    socket = paths.resolve_socket(getattr(args, "socket", None))
    try:
        info = call(socket, "supervisor/status", {"servers": []}, 10)["daemon"]
        if os.path.realpath(info.get("config", "")) != os.path.realpath(path):
            return None
        result = call(socket, "supervisor/prerequisites", {}, 60)
    except (DaemonUnavailable, RemoteError, OSError, KeyError, TypeError):
        return None
    return [Prerequisite(row["name"], tuple((str(c), str(d)) for c, d in row["problems"]), row["command"])
            for row in result["servers"]]


def run(args: argparse.Namespace) -> int:
    import orjson

    from supervisor import paths
    from supervisor.config import load_config
    from supervisor.config.envfiles import supervisor_env_file
    from supervisor.core.prerequisites import daemon_view
    from supervisor.errors import ConfigError

    from ._client import err, out
    from .secret import server_file

    path = paths.resolve_config(getattr(args, "config", None))
    try:
        config = load_config(path)
    except ConfigError as exc:
        if args.json:
            out(orjson.dumps({"valid": False, "error": str(exc), "path": exc.path, "key": exc.key,
                                "line": exc.line}).decode())
        else:
            err(str(exc))
        return 1
    if not args.prerequisites:
        if args.json:
            out(orjson.dumps({"valid": True, "path": str(path), "servers": len(config.servers)}).decode())
        else:
            count = len(config.servers)
            out(f"{path}: OK ({count} server{'' if count == 1 else 's'})")
        return 0
    rows = from_daemon(args, path)
    judge = "daemon" if rows is not None else "cli"
    if rows is None:
        data_dir = paths.data_dir()
        # As the daemon does, so `${MCP_SUPERVISOR_STATE_DIR}` in a cwd means the same here.
        environ = {"MCP_SUPERVISOR_STATE_DIR": str(paths.state_dir(config.supervisor.state_dir)),
                   **os.environ}
        daemon_file = supervisor_env_file(config.supervisor.env_file, os.environ)
        rows = [daemon_view(server, data_dir, environ, daemon_file, server_file(config, server))
                for server in config.servers.values()]
    if args.json:
        out(orjson.dumps({"valid": True, "path": str(path), "judged_by": judge, "servers": [
            {"name": r.name, "status": r.status, "problems": [d for _, d in r.problems], "command": r.argv0}
            for r in rows]}).decode())
    else:
        out(format_table(rows))
        if judge == "daemon":
            out("(as the running daemon sees them: its environment and secrets files)")
    return 0 if all(not r.problems for r in rows) else 1
