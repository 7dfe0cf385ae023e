"""The top of the tree: config, fleet, front doors, signals. Holds no business logic itself."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from supervisor import __version__, paths
from supervisor.config import FleetConfig, RateLimit, load_config
from supervisor.config.envfiles import supervisor_env_file
from supervisor.core import process
from supervisor.core.aggregate import Aggregate
from supervisor.core.cache.front import CacheHub
from supervisor.core.eras import EraMemory
from supervisor.core.events import EventBus
from supervisor.core.fleet import Fleet
from supervisor.core.health import memory_loop
from supervisor.core.server import FleetContext
from supervisor.core.tasks import TaskBook
from supervisor.domains import loop_domain
from supervisor.doors import fdlimit
from supervisor.doors.control.service import ControlServer
from supervisor.doors.control.socketlock import SocketLock
from supervisor.errors import ConfigError, SupervisorError
from supervisor.ops.metrics import Metrics
from supervisor.policy.naming import never_collisions
from supervisor.policy.states import SERVING
from supervisor.telemetry.logs import (
    REDACT,
    ChildLogFiles,
    JournalFormatter,
    JsonFormatter,
    RedactingHandler,
    stderr_is_journal,
)
from supervisor.wire import fastio

from .sdnotify import Notifier
from .watcher import watch_config

log = logging.getLogger("mcp_supervisor.daemon")

STATS_INTERVAL = 1.0
# systemd's TimeoutStartSec in our units is 120 s: say READY before it even if a child is still
# starting, so one slow server cannot fail the whole unit (its state says what it is doing).
READY_DEADLINE = 90.0
STATUS_COALESCE = 0.2
DRAIN_POLL = 0.05  # how often a drain looks at the calls still in flight


def _resolver() -> Any:
    try:
        from supervisor.core.installer import resolve_command
    except ImportError:  # pragma: no cover - the installer ships with the package
        return None
    return resolve_command


class Daemon:
    def __init__(self, config: FleetConfig, config_path: Path, socket_path: Path,
                 environ: Mapping[str, str]) -> None:
        self.config = config
        self.config_path = Path(os.path.abspath(config_path))
        self.socket_path = socket_path
        self.environ = dict(environ)
        self.started = time.time()
        self.bus = EventBus()
        self.state_dir = paths.private_dir(paths.state_dir(config.supervisor.state_dir, environ))
        # fleet.toml may point server files at the state directory by this name.
        self.environ.setdefault("MCP_SUPERVISOR_STATE_DIR", str(self.state_dir))
        self.pids = process.PidRegistry(socket_path.with_name(socket_path.name + ".pids"))
        # The cache backend is daemon-level: a change to `[cache]` needs a daemon restart (reload
        # says so), so the hub lives as long as the daemon.
        self.cache = CacheHub(config.cache)
        self.tasks = self._task_book(config)
        self.ctx = FleetContext(
            environ=self.environ, state_dir=self.state_dir, data_dir=paths.data_dir(environ),
            publish=self._publish, pids=self.pids, resolve_command=_resolver(), cache=self.cache,
            env_file=supervisor_env_file(config.supervisor.env_file, self.environ),
            config_dir=self.config_path.parent, secrets_seen=self._secrets_seen,
            eras=EraMemory.load(self.state_dir))
        self.ctx.client_limits.update(self._client_limits(config))
        self.ctx.cluster_limits = self._cluster_limiter(config)
        self.fleet = Fleet(config, self.ctx)
        self.aggregate = Aggregate(self.fleet)
        self.http: Any = None  # the HttpDoor, when [http] listen is set
        self.log_files = ChildLogFiles(self.state_dir / "logs")
        self.metrics = Metrics(lambda: self.fleet.servers.values(), self.cache.counters,
                               lambda: self.log_files.dropped,
                               lambda: self.http.fast.taken() if self.http is not None else None)
        self.notifier = Notifier(environ)
        self._base_secrets: list[str] = []
        self._file_secrets: set[str] = set()  # every value read from an env file or credential
        self._update_secrets()
        self._stop = anyio.Event()
        # Draining: SIGTERM or `mcpctl drain` asked us to leave. /healthz says 503, new sessions
        # are refused, calls in flight finish; a second SIGINT (`_hurry`) cuts the drain short.
        self.draining = False
        self._hurry = anyio.Event()
        self._settled_once = False
        self.registry = self._registry(config)
        self._reload_lock = anyio.Lock()
        self._states_changed = anyio.Event()
        self._settle_event = anyio.Event()

    @staticmethod
    def _task_book(config: FleetConfig) -> TaskBook:
        """Tasks run for clients (tasks.py): kept in memory, and in the cache's Redis when there
        is one, so that any daemon sharing it answers tasks/get. Daemon-level, like the cache."""
        from supervisor.core import tasks
        from supervisor.core.task_store import MemoryTaskStore, RedisTaskStore, TaskStore

        store: TaskStore = (RedisTaskStore(config.cache.url, config.cache.timeout)
                            if config.cache.backend == "redis" else MemoryTaskStore())
        return tasks.configure(config.tasks, store, config.cluster.node or socket.gethostname())

    @staticmethod
    def _client_limits(config: FleetConfig) -> dict[str, RateLimit]:
        return {name: client.rate_limit for name, client in config.clients.items()
                if client.rate_limit is not None}

    def _update_secrets(self) -> None:
        """Mask every credential the config stands for, wherever a log line might show it (what
        counts is decided by `supervisor.config.secrets_mask`)."""
        from supervisor.config.secrets_mask import fleet_secrets

        self._base_secrets = list(fleet_secrets(self.config, self.environ))
        REDACT.update([*self._base_secrets, *self._file_secrets])

    def _secrets_seen(self, values: Iterable[str]) -> None:
        """Values read from secrets files (at a spawn) are masked from then on, whatever their
        names: they are in a secrets file. Only a new value rebuilds the pattern."""
        new = {v for v in values if v and v not in self._file_secrets}
        if new:
            self._file_secrets |= new
            REDACT.update([*self._base_secrets, *self._file_secrets])

    def metrics_text(self) -> bytes:
        """Prometheus exposition text (content type `supervisor.ops.metrics.CONTENT_TYPE`)."""
        return self.metrics.render()

    def fleet_summary(self) -> str:
        """The STATUS= line: "25/27 ready" plus what the others are doing."""
        servers = list(self.fleet.servers.values())
        ready = sum(1 for s in servers if s.state in SERVING)
        others = collections.Counter(str(s.state) for s in servers if s.state not in SERVING)
        text = f"{ready}/{len(servers)} ready"
        if others:
            text += " (" + ", ".join(f"{n} {state}" for state, n in sorted(others.items())) + ")"
        return text

    def settled_line(self, elapsed: float) -> str:
        """The one line a cold start ends with: counts per state, the time, missing variables."""
        servers = list(self.fleet.servers.values())
        counts = collections.Counter(str(s.state) for s in servers)
        order = ["ready", "degraded", "unavailable", "failed", "starting", "backoff", "stopped"]
        shown = ", ".join(f"{counts[state]} {state}" for state in sorted(
            counts, key=lambda st: order.index(st) if st in order else len(order)))
        text = f"fleet settled in {elapsed:.1f}s: {shown}"
        missing = {s.name: [v for v in s.config.requires_env if not s.environ.get(v)]
                   for s in servers if str(s.state) == "unavailable"}
        missing = {name: names for name, names in missing.items() if names}
        if missing:
            text += "; missing variables: " + "; ".join(
                f"{', '.join(names)} ({name})" for name, names in sorted(missing.items()))
            text += " (mcpctl secret set NAME VAR)"
        return text

    async def _settled_loop(self) -> None:
        """Wait for the eager servers to leave `starting`, then say so once, at INFO."""
        began = time.monotonic()
        with anyio.move_on_after(READY_DEADLINE):
            while not self.eager_settled():
                await self._settle_event.wait()
                self._settle_event = anyio.Event()
        line = self.settled_line(time.monotonic() - began)
        if not self.eager_settled():
            line = line.replace("fleet settled in", "fleet not settled after", 1)
        log.info("%s", line)

    def eager_settled(self) -> bool:
        """Every eager server has left `starting`: it is ready, failed or unavailable."""
        return all(not s.transitional for s in self.fleet.servers.values() if s.config.start == "eager")

    def in_flight(self) -> int:
        """Calls the fleet is working on or holding in a queue: what a drain waits for. Not the
        calls parked for a client's input_required retry: that client may never come back."""
        return sum(s.in_flight - s.awaiting_input + len(s.queue) for s in self.fleet.servers.values())

    def health(self) -> tuple[int, dict[str, Any]]:
        """What /healthz answers a load balancer: 200 only while this node should get traffic.

        503 while the eager servers are still starting (once they settled, a later restart of one
        server does not take the whole node out), while draining, and when no server is ready."""
        servers = self.fleet.servers.values()
        ready = sum(1 for s in servers if s.state in SERVING)
        total = len(self.fleet.servers)
        if not self._settled_once:
            self._settled_once = self.eager_settled()
        if self.draining:
            status = "draining"
        elif not self._settled_once:
            status = "starting"
        elif total and not ready:
            status = "unready"
        else:
            status = "ok"
        payload = {"status": status, "ready": ready, "total": total, "in_flight": self.in_flight()}
        return (200 if status == "ok" else 503), payload

    def begin_drain(self, why: str) -> dict[str, Any]:
        """Leave gracefully. Idempotent: a SIGTERM or `mcpctl drain` during a drain changes nothing
        (systemd, Kubernetes and a preStop hook may each send one)."""
        if self.draining:
            log.info("%s: already draining", why)
        else:
            self.draining = True
            log.info("%s: draining (/healthz answers 503; %d calls in flight)", why, self.in_flight())
            if self.http is not None:
                self.http.draining = True
            self._publish({"type": "drain", "at": time.time(), "in_flight": self.in_flight()})
        self._stop.set()
        return {"draining": True, "in_flight": self.in_flight(),
                "grace_s": self.config.supervisor.drain_grace,
                "timeout_s": self.config.supervisor.drain_timeout}

    @staticmethod
    def _cluster_url(config: FleetConfig) -> str | None:
        """The Redis the nodes share: `[cluster] url`, else the cache's when it is Redis."""
        cluster = config.cluster
        if not cluster.enabled:
            return None
        return cluster.url or (config.cache.url if config.cache.backend == "redis" else None)

    def _registry(self, config: FleetConfig) -> Any:
        url = self._cluster_url(config)
        if url is None:
            return None
        from .cluster import NodeRegistry
        return NodeRegistry(url, config.cluster.node, config.cluster.heartbeat, self.node_summary)

    def _cluster_limiter(self, config: FleetConfig) -> Any:
        url = self._cluster_url(config)
        if url is None or not config.cluster.rate_limits:
            return None
        from supervisor.core.cluster_limits import ClusterLimiter
        return ClusterLimiter(url, timeout=config.cluster.rate_limit_timeout, clock=time.monotonic)

    def node_summary(self) -> dict[str, Any]:
        """What this node tells the others: enough for `mcpctl status --cluster`."""
        servers = {s.name: str(s.state) for s in self.fleet.servers.values()}
        return {"pid": os.getpid(), "version": __version__, "started": self.started,
                "draining": self.draining, "http": self.config.http.listen,
                "ready": sum(1 for s in self.fleet.servers.values() if s.state in SERVING),
                "total": len(servers), "servers": servers, "in_flight": self.in_flight(),
                "rate_limits": self.ctx.cluster_limits.mode if self.ctx.cluster_limits else "local"}

    async def cluster_status(self) -> dict[str, Any]:
        if self.registry is None:
            raise SupervisorError("this daemon is not part of a cluster (no [cluster] table with a "
                                  "Redis url in fleet.toml)")
        try:
            nodes = await self.registry.nodes()
        except Exception as exc:  # Redis is the registry: say why it cannot be read
            raise SupervisorError(f"cannot read the cluster registry: {type(exc).__name__}: {exc}") from exc
        return {"node": self.config.cluster.node, "nodes": nodes}

    def _session_ids(self) -> Any:
        cluster = self.config.cluster
        if not cluster.secret:
            return None
        from supervisor.doors.http.session_ids import SessionIds
        return SessionIds(cluster.secret, cluster.node, cluster.session_ttl)

    async def _drain(self) -> None:
        """Serve on for `drain_grace` (the balancer sees 503 and stops sending), close the HTTP
        listener, then give calls in flight up to `drain_timeout` before the children stop."""
        settings = self.config.supervisor
        if settings.drain_grace > 0:
            with anyio.move_on_after(settings.drain_grace):
                await self._hurry.wait()
        if self.http is not None:
            self.http.request_stop()
        # Polled, not awaited on an event: an event per finished call would put a check on the
        # hot path of every call for the sake of the last seconds of a daemon's life.
        with anyio.move_on_after(settings.drain_timeout):
            while self.in_flight() and not self._hurry.is_set():  # noqa: ASYNC110
                await anyio.sleep(DRAIN_POLL)
        left = self.in_flight()
        if left:
            log.warning("drain: %d calls still in flight after %gs are cut", left, settings.drain_timeout)
        else:
            log.info("drain: no call in flight")

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
            "env_file": str(self.ctx.env_file) if self.ctx.env_file else None,
            # With [cluster]: "cluster" while the shared buckets answer, "local" while they cannot.
            **({"rate_limits": self.ctx.cluster_limits.mode} if self.ctx.cluster_limits else {}),
        }

    async def cache_status(self) -> dict[str, Any]:
        return await self.cache.status()

    async def clear_cache(self, server: str | None) -> int:
        return await self.cache.clear(server)

    def known_tools(self) -> dict[str, list[str]]:
        """Each server's child tool names as far as the daemon knows them, live and pinned (for the
        `prefix = "never"` check, which at start has only the pins of earlier runs)."""
        return {name: [str(t.get("name")) for t in server.tools] + list(server.pins.pinned)
                for name, server in self.fleet.servers.items()}

    async def reload(self) -> dict[str, Any]:
        """Parse and validate first; a bad file changes nothing and says why.

        systemd hears RELOADING=1 before and READY=1 after, whatever the outcome: a rejected file
        leaves the old fleet running, which is a finished reload too.
        """
        async with self._reload_lock:
            self.notifier.reloading()
            try:
                try:
                    new = load_config(self.config_path, self.environ)
                    collision = never_collisions(new, self.known_tools())
                    if collision is not None:
                        raise collision
                except ConfigError as exc:
                    log.error("reload rejected: %s", exc)
                    raise
                # Secrets first: the servers started by `apply` may log them at once.
                old, self.config = self.config, new
                self.ctx.client_limits.update(self._client_limits(new))
                self.ctx.env_file = supervisor_env_file(new.supervisor.env_file, self.environ)
                self._update_secrets()
                try:
                    plan = await self.fleet.apply(new)
                except BaseException:
                    self.config = old
                    raise
                if old.aggregate != new.aggregate or old.clients != new.clients:
                    self.aggregate.names_changed()
                result = plan.as_dict()
                result["config"] = str(self.config_path)
                return result
            finally:
                self.notifier.ready(self.fleet_summary())

    # ---- life -----------------------------------------------------------------------------------

    async def run(self) -> None:
        leftovers = await anyio.to_thread.run_sync(self.pids.load_leftovers)
        if leftovers:
            ended = await anyio.to_thread.run_sync(process.end_leftovers, leftovers)
            for record in ended:
                log.warning("ended pid %d (%s) left behind by a previous daemon", record.pid, record.server)
        paths.private_dir(self.pids.path.parent)
        if self.config.http.enabled:
            from supervisor.doors.http.streamable import HttpDoor
            self.http = HttpDoor(self.config.http, self.fleet, self.aggregate,
                                 client_tokens={c.token: name for name, c in self.config.clients.items()
                                                if c.token},
                                 limits=self.ctx.client_limits,
                                 max_message=self.ctx.max_message,
                                 drain_timeout=self.config.supervisor.drain_timeout,
                                 session_ids=self._session_ids())
            self.http.metrics = self.metrics_text
            self.http.health = self.health
            self.http.cluster_limits = self.ctx.cluster_limits
            self.http.bind()  # a taken port fails here, before any child starts
        process.become_subreaper()
        from supervisor.telemetry import tracing
        traced = tracing.configure(self.config.tracing)
        async with anyio.create_task_group() as tg:
            # Background loops are failure domains: one that fails is run again after a backoff.
            tg.start_soon(loop_domain, "log writer", self.log_files.run)
            await tg.start(self.fleet.run)
            await tg.start(ControlServer(self.socket_path, self).serve)
            if self.http is not None:
                await tg.start(self.http.serve)
            tg.start_soon(loop_domain, "signals", self._signals)
            tg.start_soon(loop_domain, "memory watch", lambda: memory_loop(self.fleet))
            tg.start_soon(loop_domain, "stats", self._stats_loop)
            tg.start_soon(loop_domain, "settled line", self._settled_loop)
            tg.start_soon(loop_domain, "tasks", self.tasks.run)
            if self.registry is not None:
                tg.start_soon(loop_domain, "node registry", self.registry.run)
            if self.ctx.cluster_limits is not None:
                tg.start_soon(loop_domain, "cluster rate limits", self.ctx.cluster_limits.run)
            if self.config.supervisor.watch:
                tg.start_soon(loop_domain, "config watcher",
                              lambda: watch_config(self.config_path, self.reload))
            if self.notifier.enabled:
                tg.start_soon(loop_domain, "sd_notify", self._notify_loop)
                if self.notifier.watchdog:
                    watchdog = self.notifier.watchdog
                    tg.start_soon(loop_domain, "watchdog", lambda: self._watchdog_loop(watchdog))
            log.info("mcp-supervisor %s: %d servers, control socket %s", __version__,
                     len(self.fleet.servers), self.socket_path)
            await self._stop.wait()
            self.notifier.stopping()
            if self.draining:
                await self._drain()
            log.info("stopping: ending every child")
            if self.http is not None:
                self.http.request_stop()
            with anyio.CancelScope(shield=True):
                await self.fleet.shutdown()
                await self.cache.aclose()
            tg.cancel_scope.cancel()
        if traced is not None:
            await anyio.to_thread.run_sync(traced.shutdown)  # the last spans, off the loop
        self.notifier.close()

    def request_stop(self) -> None:
        self._stop.set()

    def _publish(self, event: dict[str, Any]) -> None:
        """What the fleet publishes: log lines to the files, state changes to sd_notify, then the bus.

        Not bus subscribers: the bus's `has_subscribers` means "someone is watching" (it turns the
        per-second stats on), and these two are always there.
        """
        kind = event.get("type")
        self.aggregate.on_event(event)
        if kind == "log":
            self.log_files.on_event(event)
        elif kind == "state":
            self._states_changed.set()
            self._settle_event.set()
        self.bus.publish(event)

    async def _notify_loop(self) -> None:
        """READY=1 once the eager servers have settled, then STATUS= on every change (coalesced)."""
        with anyio.move_on_after(READY_DEADLINE):
            while not self.eager_settled():
                self.notifier.status(f"starting: {self.fleet_summary()}")
                await self._wait_states()
        if not self.eager_settled():
            log.warning("telling systemd we are ready after %gs with servers still starting: %s",
                        READY_DEADLINE, self.fleet_summary())
        self.notifier.ready(self.fleet_summary())
        while True:
            await self._wait_states()
            if not self._reload_lock.locked():  # a reload says READY=1 with the status itself
                self.notifier.status(self.fleet_summary())

    async def _wait_states(self) -> None:
        await self._states_changed.wait()
        await anyio.sleep(STATUS_COALESCE)  # a burst of changes (a reload, a cold start) → one line
        self._states_changed = anyio.Event()

    async def _watchdog_loop(self, interval: float) -> None:
        """WATCHDOG=1 from the event loop itself: if the loop is stuck, the pings stop."""
        while True:
            self.notifier.ping()
            await anyio.sleep(interval)

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    with contextlib.suppress(ConfigError):  # logged; the fleet is untouched
                        await self.reload()
                elif signum == signal.SIGINT and self.draining:
                    log.warning("SIGINT while draining: stopping now")  # Ctrl-C twice
                    self._hurry.set()
                else:
                    self.begin_drain(signal.Signals(signum).name)

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
                p50, p95 = server.latency_quantiles(0.5, 0.95)
                entry["p50_ms"] = round(p50 * 1000, 3) if p50 is not None else None
                entry["p95_ms"] = round(p95 * 1000, 3) if p95 is not None else None
                entry["cache_hit_rate"] = None
                if server.cache is not None and (server.cache.hits or server.cache.misses):
                    hits = server.cache.hits
                    entry["cache_hit_rate"] = round(hits / (hits + server.cache.misses), 4)
                last[server.name] = (server.calls_total, server.errors_total)
                servers.append(entry)
            # The fleet's cache counters ride along (cheap, synchronous), so the dashboard's
            # header hit rate moves without asking for the full `supervisor/status`.
            self.bus.publish({"type": "stats", "at": time.time(), "daemon": self.info(),
                              "servers": servers, "cache": self.cache.counters()})


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


def configure_logging(level: str = "info", fmt: str = "text",
                      environ: Mapping[str, str] | None = None) -> None:
    handler = RedactingHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif stderr_is_journal(os.environ if environ is None else environ):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
    configure_logging(config.supervisor.log_level, log_format or config.supervisor.log_format, env)
    # Whatever the daemon and its children create is private unless they say otherwise (systemd's
    # units set UMask=0077 too; this holds outside systemd). Modes below are also set explicitly.
    os.umask(paths.PRIVATE_UMASK)
    try:
        paths.check_socket_dir(socket_path.parent)
    except (paths.UnsafeDirectory, OSError) as exc:
        print(f"mcpctl serve: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    # The lock comes before anything a previous daemon left (its socket, its pid registry) is
    # looked at: a second daemon must not mistake the first one's live children for leftovers.
    lock = SocketLock(socket_path)
    try:
        lock.acquire()
    except SupervisorError as exc:
        print(f"mcpctl serve: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    try:
        if _socket_in_use(socket_path):  # a daemon from before the lock file existed
            print(f"mcpctl serve: a daemon is already running on {socket_path}", file=sys.stderr)  # noqa: T201
            return 1
        fdlimit.raise_soft_limit()
        daemon = Daemon(config, config_path, socket_path, env)
        collision = never_collisions(config, daemon.known_tools())
        if collision is not None:
            print(f"mcpctl serve: invalid config: {collision}", file=sys.stderr)  # noqa: T201
            return 2
        from supervisor.doors.http.streamable import DoorError
        fastio.tune_gc()  # everything imported and configured by now: frozen out of collections
        try:
            with contextlib.suppress(KeyboardInterrupt):
                fastio.run(daemon.run, env)
        except DoorError as exc:
            print(f"mcpctl serve: {exc}", file=sys.stderr)  # noqa: T201
            return 1
        return 0
    finally:
        lock.release()
