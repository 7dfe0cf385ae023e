"""What a server needs to start a child: its prerequisites, secrets, command line and environment.

A mixin of `Server` (this part reads only the attributes it declares): `check_prerequisites` says
why a server cannot start without spawning anything; `load_secrets` reads the env files again
before each spawn; `spawn_child` hands the instance factory its `_argv`, `_default_cwd` and
`_spawn_env`, and records the pids; `variables` names (never values) what the entry uses.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from supervisor.config import ServerConfig, expand
from supervisor.paths import private_dir
from supervisor.policy.samples import Consecutive

from ..clock import Clock
from ..instance import Instance, InstanceOwner
from .context import FleetContext

if TYPE_CHECKING:
    from ..process import ProcessRecord


def missing_reason(server: str, missing: list[str], problems: tuple[str, ...] = ()) -> str:
    """`BRAVE_API_KEY is not set (required by requires_env): run 'mcpctl secret set brave
    BRAVE_API_KEY'`, plus why a secrets file was not read when one was refused."""
    names = ", ".join(missing)
    verb = "is" if len(missing) == 1 else "are"
    fix = f"run 'mcpctl secret set {server} {missing[0]}'" + (" (and each of the others)"
                                                             if len(missing) > 1 else "")
    text = f"{names} {verb} not set (required by requires_env): {fix}"
    return text + "".join(f"; {problem}" for problem in problems)


class Launch:
    """The spawn half of a `Server`."""

    name: str
    config: ServerConfig
    ctx: FleetContext
    clock: Clock
    environ: Mapping[str, str]  # the daemon's environment plus this server's secrets, as last read
    _secret_problems: tuple[str, ...]
    _env_file_error: str | None

    def check_prerequisites(self) -> str | None:
        """Why this server cannot start, or None. Never spawns anything."""
        if self._env_file_error:
            return self._env_file_error
        missing = [v for v in self.config.requires_env if not self.environ.get(v)]
        if missing:
            return missing_reason(self.name, missing, self._secret_problems)
        if self.config.cwd and not Path(self._expand(self.config.cwd)).is_dir():
            return f"working directory {self.config.cwd} does not exist"
        if self._argv() is None:
            if self.config.package:
                from ..installer import last_failure
                failed = last_failure(self.ctx.data_dir, self.config)
                if failed:
                    return f"not installed: the last 'mcpctl install {self.name}' failed: {failed}"
                return f"not installed: run 'mcpctl install {self.name}' ({self.config.package})"
            return f"command not found: {self.config.command}"
        return None

    def server_env_file(self) -> Path | None:
        if not self.config.env_file:
            return None
        path = Path(expand(self.config.env_file, self.ctx.environ)).expanduser()
        if not path.is_absolute() and self.ctx.config_dir is not None:
            path = self.ctx.config_dir / path
        return path

    async def load_secrets(self) -> None:
        """Read the env files and credentials again (a worker thread): a key set since the last
        spawn is used by this one."""
        from supervisor.config.envfiles import EnvFileError, load
        try:
            server_file = self.server_env_file()
            loaded = await anyio.to_thread.run_sync(load, self.ctx.environ, self.ctx.env_file, server_file)
        except (EnvFileError, ValueError) as exc:
            self._env_file_error = str(exc)
            self.environ = self.ctx.environ
            return
        self._env_file_error = None
        self._secret_problems = loaded.problems
        self.ctx.secrets_seen(loaded.values.values())
        self.environ = {**self.ctx.environ, **loaded.values} if loaded.values else self.ctx.environ

    def _expand(self, value: str) -> str:
        return expand(value, self.environ)

    def variables(self) -> dict[str, list[str]]:
        """Names (never values) of the variables this entry uses, split by whether they are set:
        its `env` keys (set when they expand to something), `requires_env`, and every `${NAME}` in
        command, args, env and cwd. Lets a user debug "why is it unavailable" without a secret."""
        from supervisor.config import references

        env = self.ctx.environ
        state: dict[str, bool] = {}
        for raw in (self.config.command, *self.config.args, *self.config.env.values(),
                    *([self.config.cwd] if self.config.cwd else [])):
            with contextlib.suppress(ValueError):
                for name, _default in references(raw):
                    state.setdefault(name, bool(env.get(name)))
        for name in self.config.requires_env:
            state[name] = bool(env.get(name))
        for key, raw in self.config.env.items():
            with contextlib.suppress(ValueError):
                state[key] = bool(self._expand(raw))
        return {"set": sorted(n for n, on in state.items() if on),
                "unset": sorted(n for n, on in state.items() if not on)}

    def describe_variables(self) -> str:
        """`variables set: A, B; unset: C` for logs (names only)."""
        names = self.variables()
        text = "variables set: " + (", ".join(names["set"]) or "none")
        return text + (f"; unset: {', '.join(names['unset'])}" if names["unset"] else "")

    def _argv(self) -> list[str] | None:
        if self.ctx.resolve_command is not None:
            resolved = self.ctx.resolve_command(self.config, self.ctx.data_dir, self.environ)
            if resolved is None:
                return None
            return [resolved[0], *(self._expand(a) for a in resolved[1:])]
        command = self._expand(self.config.command)
        path = command if "/" in command else shutil.which(command, path=self.environ.get("PATH"))
        if path is None or not os.access(path, os.X_OK):
            return None
        return [path, *(self._expand(a) for a in self.config.args)]

    def _default_cwd(self) -> str | None:
        """Without `cwd`, an isolated child starts in its own HOME: never in the daemon's working
        directory, which is `/` under systemd and whatever the shell had otherwise."""
        if not self.config.isolate_home:
            return None
        return str(private_dir(self.ctx.state_dir / "home" / self.name))

    def _spawn_env(self) -> dict[str, str]:
        from ..process import child_environment
        # An entry that expands to "" is left unset: `${AWS_PROFILE:-}` passes the variable
        # through only when the daemon has it (an empty AWS_PROFILE is not "no profile").
        extra = {key: value for key, raw in self.config.env.items() if (value := self._expand(raw))}
        env = child_environment(self.environ, {})
        if self.config.isolate_home:
            # 0700: what a child keeps in its HOME (the memory server's graph) is not for other users.
            env["HOME"] = str(private_dir(self.ctx.state_dir / "home" / self.name))
            env["TMPDIR"] = str(private_dir(self.ctx.state_dir / "tmp" / self.name))
        env.update(extra)
        return env

    def spawn_child(self, index: int, owner: InstanceOwner) -> Instance | None:
        """The child for slot `index` (made by the context's instance factory, not started yet),
        or None when its command cannot be found."""
        argv = self._argv()
        if argv is None:
            return None
        config = self.config
        cwd = self._expand(config.cwd) if config.cwd else self._default_cwd()
        inst = self.ctx.new_instance(
            server=self.name, index=index, argv=argv, env=self._spawn_env(), cwd=cwd, owner=owner,
            init_timeout=config.init_timeout, stop_timeout=config.stop_timeout,
            max_message=self.ctx.max_message, roots=config.roots,
            era_hint=self.ctx.eras.get(config) if self.ctx.eras is not None else None,
            on_spawn=self._record_spawn, on_reaped=self._record_reaped, clock=self.clock)
        inst.unhealthy = Consecutive(config.unhealthy_after)
        return inst

    def _record_spawn(self, record: ProcessRecord) -> None:
        self.ctx.direct_children.add(record.pid)
        if self.ctx.pids is not None:
            self.ctx.pids.add(record)

    def _record_reaped(self, pid: int) -> None:
        self.ctx.direct_children.discard(pid)
        if self.ctx.pids is not None:
            self.ctx.pids.remove(pid)
