"""All servers by name: routing, fleet-wide status, and applying a new config as a diff."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import anyio

from supervisor.config import FleetConfig, ServerConfig
from supervisor.domains import loop_domain
from supervisor.errors import UnknownServer

from .perclient import ClientInstances
from .server import FleetContext, Server

log = logging.getLogger("mcp_supervisor.fleet")


def new_server(config: ServerConfig, ctx: FleetContext) -> Server:
    """The one place a configured server is made: a per-client one gets its client instances."""
    return Server(config, ctx, ClientInstances if config.sharing == "per-client" else None)


@dataclass(frozen=True)
class ReloadPlan:
    """What a new config changes. Daemon-level changes that need a restart are listed, not applied."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    needs_daemon_restart: tuple[str, ...] = field(default=())
    policy: tuple[str, ...] = ()
    """Unchanged servers whose tool policy changed: applied in place, the children keep running."""

    def as_dict(self) -> dict[str, Any]:
        return {"added": list(self.added), "removed": list(self.removed),
                "changed": list(self.changed), "unchanged": list(self.unchanged),
                "policy": list(self.policy),
                "needs_daemon_restart": list(self.needs_daemon_restart)}


def plan_reload(old: FleetConfig, new: FleetConfig) -> ReloadPlan:
    old_servers, new_servers = old.servers, new.servers
    added = tuple(n for n in new_servers if n not in old_servers)
    removed = tuple(n for n in old_servers if n not in new_servers)
    changed = tuple(n for n in new_servers if n in old_servers
                    and new_servers[n].fingerprint() != old_servers[n].fingerprint())
    unchanged = tuple(n for n in new_servers if n in old_servers and n not in changed)
    policy = tuple(n for n in unchanged
                   if new_servers[n].policy_fingerprint() != old_servers[n].policy_fingerprint())
    daemon_level = []
    if old.http != new.http:
        daemon_level.append("http")
    if old.cache != new.cache:
        daemon_level.append("cache")
    if old.cluster != new.cluster:
        daemon_level.append("cluster")
    if old.tracing != new.tracing:
        daemon_level.append("tracing")
    if old.supervisor.state_dir != new.supervisor.state_dir:
        daemon_level.append("supervisor.state_dir")
    return ReloadPlan(added, removed, changed, unchanged, tuple(daemon_level), policy)


class Fleet:
    def __init__(self, config: FleetConfig, ctx: FleetContext) -> None:
        self.config = config
        self.ctx = ctx
        self.servers: dict[str, Server] = {name: new_server(sc, ctx) for name, sc in config.servers.items()}
        self.started = ctx.clock.time()
        self._tg: anyio.abc.TaskGroup | None = None
        self._scopes: dict[str, anyio.CancelScope] = {}

    def get(self, name: str) -> Server:
        try:
            return self.servers[name]
        except KeyError:
            raise UnknownServer(
                f"no server named '{name}' (known: {', '.join(self.servers) or 'none'})",
                data={"server": name}) from None

    def supervised(self) -> list[Server]:
        """Every server that runs children: the configured ones and their per-client instances
        (memory limits and sampling apply to each)."""
        out: list[Server] = []
        for server in self.servers.values():
            out.append(server)
            if server.clients is not None:
                out.extend(server.clients.servers)
        return out

    def select(self, names: list[str] | None) -> list[Server]:
        if not names:
            return list(self.servers.values())
        return [self.get(name) for name in names]

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for server in self.servers.values():
                self._launch(server)
            task_status.started()

    def _launch(self, server: Server) -> None:
        assert self._tg is not None
        self._tg.start_soon(self._run_server, server)

    async def _run_server(self, server: Server) -> None:
        with anyio.CancelScope() as scope:
            self._scopes[server.name] = scope
            # A server's supervision is its own domain: a bug there ends its children (their
            # teardown is shielded) and it is run again after a backoff; other servers carry on.
            await loop_domain(f"server {server.name}", server.run)

    async def stop_servers(self, servers: list[Server], timeout: float | None = None) -> None:
        """Stop servers in parallel and wait until their processes are gone."""
        for server in servers:
            server.stop()
        limit = timeout if timeout is not None else max(
            (s.config.stop_timeout for s in servers), default=10.0) + 5.0
        with anyio.move_on_after(limit):
            for server in servers:
                while server.all_instances:
                    await server.wait_settled(limit)
                    if server.all_instances:
                        await anyio.sleep(0.02)

    async def shutdown(self) -> None:
        await self.stop_servers(list(self.servers.values()))
        for scope in self._scopes.values():
            scope.cancel()

    async def apply(self, new: FleetConfig) -> ReloadPlan:
        """Apply a validated config: start added, stop removed, restart changed, keep the rest."""
        plan = plan_reload(self.config, new)
        retiring = [self.servers[n] for n in (*plan.removed, *plan.changed)]
        history = {n: self.servers[n] for n in plan.changed}
        await self.stop_servers(retiring)
        for name in (*plan.removed, *plan.changed):
            scope = self._scopes.pop(name, None)
            if scope is not None:
                scope.cancel()
            old = self.servers.pop(name)
            if old.cache is not None:
                old.cache.hub.retire(old.cache)  # config changed or gone: its entries are dead
            for session in list(old.sessions):
                close = getattr(session, "close", None)
                if close is not None:
                    close()
        ordered: dict[str, Server] = {}
        for name, server_config in new.servers.items():
            if name in self.servers:
                server = self.servers[name]
                if name in plan.policy:
                    server.apply_policy(server_config)  # what clients see; the children stay
                else:
                    server.config_comments_changed(server_config)
            else:
                server = new_server(server_config, self.ctx)
                if name in history:  # a changed entry: same server, new config, counted as a restart
                    server.succeed(history[name])
                self._launch(server)
            ordered[name] = server
        self.servers = ordered
        self.config = new
        log.info("reload applied: %s", plan.as_dict())
        return plan

    def status(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        return [server.status() for server in self.select(names)]
