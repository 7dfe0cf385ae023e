"""mcpctl check [--config F] [--prerequisites] [--json]: validate a fleet file without starting anything.

Exit 0 when the file is valid, 1 with the precise error (`file:line: key.path: what is wrong`)
when it is not. With `--prerequisites`, also say per server what it still needs before it can start
(not installed, env var unset, binary absent, missing working directory); exit 1 when any server
needs something. Variables are checked against this command's environment, which may differ from
the daemon's (a systemd `EnvironmentFile=`, say).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.config import ServerConfig

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


@dataclass(frozen=True)
class Prerequisite:
    """What one server still needs; `problems` empty means it can start. Each problem is a
    (category, detail) pair; the category is one of `CATEGORIES`."""

    name: str
    problems: tuple[tuple[str, str], ...]
    argv0: str | None

    @property
    def status(self) -> str:
        return self.problems[0][0] if self.problems else "ok"

    @property
    def detail(self) -> str:
        return "; ".join(detail for _, detail in self.problems) if self.problems else (self.argv0 or "")


CATEGORIES = ("not installed", "binary absent", "env var unset", "cwd absent")


def server_prerequisites(server: ServerConfig, data_dir: Path,
                         environ: Mapping[str, str]) -> Prerequisite:
    """Everything that would make the daemon report `server` as `unavailable`, in one pass."""
    from supervisor.config import expand, referenced_vars
    from supervisor.installer import is_installed, parse_package, read_marker, resolve_command, server_prefix

    problems: list[tuple[str, str]] = []
    resolved = resolve_command(server, data_dir, environ)
    if server.package and not is_installed(server, data_dir):
        marker = read_marker(server_prefix(data_dir, server.name))
        have = f" (found {marker.get('package')})" if marker else ""
        problems.append(("not installed", f"{parse_package(server.package)}{have}: "
                                          f"run 'mcpctl install {server.name}'"))
    elif resolved is None:
        where = "is not an executable file" if "/" in server.command else "not found on PATH"
        problems.append(("binary absent", f"{server.command} {where}"))
    problems.extend(("env var unset", f"env var {var} unset")
                    for var in server.requires_env if not environ.get(var))
    # Only when every variable it names is known here: the daemon's environment may differ.
    if server.cwd and all(environ.get(var) for var in referenced_vars(server.cwd)):
        cwd = expand(server.cwd, environ)
        if cwd and not Path(cwd).is_dir():
            problems.append(("cwd absent", f"cwd {cwd} is not a directory"))
    return Prerequisite(server.name, tuple(problems), resolved[0] if resolved else None)


def format_table(rows: list[Prerequisite]) -> str:
    width = max([len(r.name) for r in rows] + [6])
    lines = [f"{'SERVER':<{width}}  {'STATUS':<13}  DETAIL"]
    lines.extend(f"{row.name:<{width}}  {row.status:<13}  {row.detail}" for row in rows)
    ready = sum(1 for r in rows if not r.problems)
    lines.append(f"{ready} of {len(rows)} servers can start")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import orjson

    from supervisor import paths
    from supervisor.commands._client import err, out
    from supervisor.config import load_config
    from supervisor.errors import ConfigError

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
    data_dir = paths.data_dir()
    # As the daemon does, so `${MCP_SUPERVISOR_STATE_DIR}` in a cwd means the same here.
    environ = {"MCP_SUPERVISOR_STATE_DIR": str(paths.state_dir(config.supervisor.state_dir)), **os.environ}
    rows = [server_prerequisites(server, data_dir, environ) for server in config.servers.values()]
    if args.json:
        out(orjson.dumps({"valid": True, "path": str(path), "servers": [
            {"name": r.name, "status": r.status, "problems": [d for _, d in r.problems], "command": r.argv0}
            for r in rows]}).decode())
    else:
        out(format_table(rows))
    return 0 if all(not r.problems for r in rows) else 1
