"""The top of the tree: config, fleet, front doors, signals. Holds no business logic itself."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from . import __version__, paths, process
from .config import FleetConfig, load_config
from .control import ControlServer
from .errors import ConfigError, SupervisorError
from .events import EventBus
from .fleet import Fleet
from .health import memory_loop
from .logs import REDACT, JsonFormatter, RedactingFilter, secret_values
from .server import FleetContext

log = logging.getLogger("mcp_supervisor.daemon")

STATS_INTERVAL = 1.0


class AlreadyRunning(SupervisorError):
    pass


def _resolver() -> Any:
    try:
        from .installer import resolve_command
    except ImportError:  # pragma: no cover - the installer ships with the package
        return None
    return resolve_command


class Daemon:
    def __init__(self, config: FleetConfig, config_path: Path, socket_path: Path,
                 environ: Mapping[str, str]) -> None:
        self.config = config
        self.config_path = config_path
        self.socket_path = socket_path
        self.environ = dict(environ)
        self.started = time.time()
        self.bus = EventBus()
        self.state_dir = paths.state_dir(config.supervisor.state_dir, environ)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # fleet.toml may point server files at the state directory by this name.
        self.environ.setdefault("MCP_SUPERVISOR_STATE_DIR", str(self.state_dir))
        self.pids = process.PidRegistry(socket_path.with_name(socket_path.name + ".pids"))
        self.ctx = FleetContext(
            environ=self.environ, state_dir=self.state_dir, data_dir=paths.data_dir(environ),
            publish=self.bus.publish, pids=self.pids, resolve_command=_resolver())
        self.fleet = Fleet(config, self.ctx)
        self._update_secrets()
        self._stop = anyio.Event()
        self._reload_lock = anyio.Lock()

    def _update_secrets(self) -> None:
        """Mask every credential a server's env expands to, wherever a log line might show it."""
        from .config import expand
        values = []
        for server in self.config.servers.values():
            expanded = {k: expand(v, self.environ) for k, v in server.env.items()}
            values += secret_values(expanded)
        values += [v for k, v in self.environ.items()
                   if k in {n for s in self.config.servers.values() for n in s.requires_env}]
        if self.config.http.token:
            values.append(self.config.http.token)
        REDACT.update(values)

    # ---- what the control socket asks --------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        servers = self.fleet.servers.values()
        memory = sum(s.status()["memory_bytes"] or 0 for s in servers)
        return {
            "pid": os.getpid(),
            "version": __version__,
            "uptime_s": round(time.time() - self.started, 3),
            "config": str(self.config_path),
            "memory_limit": self.config.supervisor.memory_limit,
            "memory_bytes": memory,
        }

    def cache_status(self) -> dict[str, Any]:
        return {"backend": self.config.cache.backend, "hits": 0, "misses": 0, "errors": 0, "entries": 0}

    async def clear_cache(self, server: str | None) -> int:
        return 0

    async def reload(self) -> dict[str, Any]:
        """Parse and validate first; a bad file changes nothing and says why."""
        async with self._reload_lock:
            try:
                new = load_config(self.config_path, self.environ)
            except ConfigError as exc:
                log.error("reload rejected: %s", exc)
                raise
            plan = await self.fleet.apply(new)
            self.config = new
            self._update_secrets()
            result = plan.as_dict()
            result["config"] = str(self.config_path)
            return result

    # ---- life -----------------------------------------------------------------------------------

    async def run(self) -> None:
        leftovers = await anyio.to_thread.run_sync(self.pids.load_leftovers)
        if leftovers:
            ended = await anyio.to_thread.run_sync(process.end_leftovers, leftovers)
            for record in ended:
                log.warning("ended pid %d (%s) left behind by a previous daemon", record.pid, record.server)
        self.pids.path.parent.mkdir(parents=True, exist_ok=True)
        process.become_subreaper()
        async with anyio.create_task_group() as tg:
            await tg.start(self.fleet.run)
            await tg.start(ControlServer(self.socket_path, self).serve)
            tg.start_soon(self._signals)
            tg.start_soon(memory_loop, self.fleet)
            tg.start_soon(self._stats_loop)
            log.info("mcp-supervisor %s: %d servers, control socket %s", __version__,
                     len(self.fleet.servers), self.socket_path)
            await self._stop.wait()
            log.info("stopping: ending every child")
            with anyio.CancelScope(shield=True):
                await self.fleet.shutdown()
            tg.cancel_scope.cancel()

    def request_stop(self) -> None:
        self._stop.set()

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    with contextlib.suppress(ConfigError):  # logged; the fleet is untouched
                        await self.reload()
                else:
                    self.request_stop()

    async def _stats_loop(self) -> None:
        """One `stats` event a second, only while someone listens (the dashboard)."""
        last: dict[str, tuple[int, int]] = {}
        while True:
            await anyio.sleep(STATS_INTERVAL)
            if not self.bus.has_subscribers:
                last.clear()
                continue
            servers = []
            for server in self.fleet.servers.values():
                entry = server.status()
                calls, errors = last.get(server.name, (server.calls_total, server.errors_total))
                entry["calls_per_s"] = (server.calls_total - calls) / STATS_INTERVAL
                entry["errors_per_s"] = (server.errors_total - errors) / STATS_INTERVAL
                lat = sorted(server.latencies)
                entry["p50_ms"] = round(lat[len(lat) // 2] * 1000, 3) if lat else None
                entry["p95_ms"] = round(lat[int(len(lat) * 0.95)] * 1000, 3) if lat else None
                entry["cache_hit_rate"] = None
                last[server.name] = (server.calls_total, server.errors_total)
                servers.append(entry)
            self.bus.publish({"type": "stats", "at": time.time(), "daemon": self.info(),
                              "servers": servers})


def _socket_in_use(path: Path) -> bool:
    if not path.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger("mcp_supervisor")
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    root.propagate = False


def serve(config_path: Path, socket_path: Path, environ: Mapping[str, str] | None = None,
          log_format: str | None = None) -> int:
    env = dict(os.environ if environ is None else environ)
    try:
        config = load_config(config_path, env)
    except ConfigError as exc:
        print(f"mcpctl serve: invalid config: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except FileNotFoundError:
        print(f"mcpctl serve: no config file at {config_path}", file=sys.stderr)  # noqa: T201
        return 2
    configure_logging(config.supervisor.log_level, log_format or config.supervisor.log_format)
    if _socket_in_use(socket_path):
        print(f"mcpctl serve: a daemon is already running on {socket_path}", file=sys.stderr)  # noqa: T201
        return 1
    daemon = Daemon(config, config_path, socket_path, env)
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(daemon.run)
    return 0
