"""What each server still needs before it can start, judged without starting anything.

Used by `mcpctl check --prerequisites` when no daemon runs, and by the daemon itself
(`supervisor/prerequisites`) with its own environment and secrets files when one does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.config import ServerConfig


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


CATEGORIES = ("not installed", "binary absent", "env var unset", "cwd absent", "env file")


def server_prerequisites(server: ServerConfig, data_dir: Path,
                         environ: Mapping[str, str]) -> Prerequisite:
    """Everything that would make the daemon report `server` as `unavailable`, in one pass."""
    from supervisor.config import expand, referenced_vars
    from supervisor.config.package import PackageSpec

    from .installer import is_installed, read_marker, resolve_command, server_prefix

    problems: list[tuple[str, str]] = []
    resolved = resolve_command(server, data_dir, environ)
    if server.package and not is_installed(server, data_dir):
        marker = read_marker(server_prefix(data_dir, server.name))
        have = f" (found {marker.get('package')})" if marker else ""
        problems.append(("not installed", f"{PackageSpec.parse(server.package)}{have}: "
                                          f"run 'mcpctl install {server.name}'"))
    elif resolved is None:
        where = "is not an executable file" if "/" in server.command else "not found on PATH"
        problems.append(("binary absent", f"{server.command} {where}"))
    problems.extend(("env var unset", f"env var {var} unset: run 'mcpctl secret set {server.name} {var}'")
                    for var in server.requires_env if not environ.get(var))
    # Only when every variable it names is known here: the daemon's environment may differ.
    if server.cwd and all(environ.get(var) for var in referenced_vars(server.cwd)):
        cwd = expand(server.cwd, environ)
        if cwd and not Path(cwd).is_dir():
            problems.append(("cwd absent", f"cwd {cwd} is not a directory"))
    return Prerequisite(server.name, tuple(problems), resolved[0] if resolved else None)


def daemon_view(server: ServerConfig, data_dir: Path, environ: Mapping[str, str],
                daemon_file: Path | None, server_file: Path | None) -> Prerequisite:
    """Blocking: `server_prerequisites` as the daemon would judge a spawn now, its secrets files
    and systemd credentials read the way a spawn reads them."""
    from supervisor.config.envfiles import EnvFileError, load

    try:
        loaded = load(environ, daemon_file, server_file)
    except (EnvFileError, ValueError) as exc:
        row = server_prerequisites(server, data_dir, environ)
        return Prerequisite(row.name, (("env file", str(exc)), *row.problems), row.argv0)
    row = server_prerequisites(server, data_dir, {**environ, **loaded.values})
    if loaded.problems and any(category == "env var unset" for category, _ in row.problems):
        extra = tuple(("env file", problem) for problem in loaded.problems)
        row = Prerequisite(row.name, (*row.problems, *extra), row.argv0)
    return row
