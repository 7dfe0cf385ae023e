"""Per-client instances: `sharing = "per-client"` gives each client identity a child of its own.

For servers that keep per-session state (a knowledge graph, a chain of thoughts), one child shared
by every client mixes their state. With per-client sharing the configured `Server` (the parent)
runs no child itself; `ClientInstances` keeps one ordinary `Server` per owner, each with one child:

    owner        the client identity: `[clients.NAME]` by token or `connect --client NAME`; an
                 unnamed local client is its user (`uid:N`, as for rate limits); else one per
                 connection (a legacy HTTP session without a token, a peer without credentials);
                 anonymous stateless HTTP requests share one ("anonymous:http")
    first use    a request from an owner without an instance creates one
    spare        one more instance answers handshakes and lists (they hold nobody's state); it
                 starts with an eager server, so the aggregate lists the server from the start
    cap          `max_instances` (default 16) client instances; beyond it -32000 busy with
                 `retry_after_ms` (when the first idle instance will be stopped)
    idle         an instance unused for `idle_timeout` (and with nothing in flight) is stopped,
                 and its state with it; the owner's next request starts a new one
    isolation    each instance has its own HOME/TMPDIR, and MCP_SUPERVISOR_CLIENT_DIR (a directory
                 per client under the state dir, kept for named clients, removed with an
                 anonymous one's instance) in the environment its `${VAR}`s expand from

The owners' servers publish nothing of their own except log lines (under the parent's name):
the fleet, the dashboard and the aggregate see one server, whose status lists the instances and
who owns each.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anyio

from supervisor.errors import busy
from supervisor.policy.states import SERVING, State
from supervisor.policy.tool_policy import origin_of
from supervisor.wire import protocol
from supervisor.wire.jsonrpc import Message

if TYPE_CHECKING:
    from supervisor.wire.jsonrpc import Sink

    from .server import Attached, Server

log = logging.getLogger("mcp_supervisor.perclient")

DEFAULT_CAP = 16
SPARE = "(spare)"
UNNAMED = "(unnamed)"  # requests without a client identity that are not lists (mcpctl call)
ANONYMOUS = "anonymous:"  # owners named by the door (a connection, an HTTP session): ephemeral
MAX_OWNER = 200  # characters of an owner identity kept (it comes from a peer)


def owner_of(sink: Any) -> str | None:
    """The client identity a request came from: its session's `owner` (an HTTP call carries its
    own, or its legacy session's)."""
    origin = origin_of(sink)
    owner = getattr(origin, "owner", None)
    if owner is None:
        owner = getattr(getattr(origin, "session", None), "owner", None)
    return owner[:MAX_OWNER] if isinstance(owner, str) and owner else None


def attached_of(sink: Any) -> Attached | None:
    """The session to tell about the instance's notifications, if the sink belongs to one."""
    origin = origin_of(sink)
    if hasattr(origin, "server_notification"):  # duck-typed: any door's session that takes notifications
        return cast("Attached", origin)
    session = getattr(origin, "session", None)
    return session if hasattr(session, "server_notification") else None


def slug(owner: str) -> str:
    """A file-name-safe, unique form of an owner identity (for directories and log names)."""
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", owner)[:40].strip(".") or "client"
    return f"{clean}-{hashlib.sha256(owner.encode()).hexdigest()[:8]}"


def _remove_all(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


class ClientInstances:
    """The per-client instances of one parent server."""

    def __init__(self, parent: Server) -> None:
        self.parent = parent
        self.owners: dict[str, Server] = {}
        self._scopes: dict[int, anyio.CancelScope] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self.created_total = 0
        self.busy_total = 0
        self._stop = anyio.Event()
        self._leaving: set[Server] = set()  # instances being stopped: they take nothing new

    @property
    def cap(self) -> int:
        return self.parent.config.max_instances or DEFAULT_CAP

    @property
    def taken(self) -> int:
        """Instances counted against `max_instances` (the spare is not: it holds nobody's state)."""
        return sum(1 for owner in self.owners if owner != SPARE)

    @property
    def servers(self) -> list[Server]:
        return list(self.owners.values())

    # ---- instances ------------------------------------------------------------------------------

    def _create(self, owner: str) -> Server | None:
        from .server import ClientInstance, Server

        if self._tg is None or (owner != SPARE and self.taken >= self.cap):
            return None
        parent = self.parent
        config = dataclasses.replace(parent.config, sharing="shared", max_instances=None,
                                     start="eager", idle_stop_after=None)
        directory = parent.ctx.state_dir / "clients" / parent.name / slug(owner)
        directory.mkdir(parents=True, exist_ok=True)
        environ = {**parent.ctx.environ, "MCP_SUPERVISOR_CLIENT": owner,
                   "MCP_SUPERVISOR_CLIENT_DIR": str(directory)}
        ctx = dataclasses.replace(parent.ctx, environ=environ, cache=None,
                                  publish=lambda event: self._publish(event))
        client_dir = directory if owner.startswith(ANONYMOUS) else None  # removed with it
        server = Server(config, ctx, client=ClientInstance(parent, owner, f"{parent.name}@{slug(owner)}",
                                                           client_dir))
        self.owners[owner] = server
        self.created_total += 1
        self._tg.start_soon(self._run, server)
        log.info("%s: started an instance for client %r (%d/%d)", parent.name, owner,
                 self.taken, self.cap)
        self.parent.per_client_changed()
        return server

    def instance_for(self, owner: str) -> Server | None:
        """The owner's instance, created on first use; None at the cap (or while it stops)."""
        server = self.owners.get(owner)
        if server is not None:
            return None if server in self._leaving else server
        return self._create(owner)

    def any_instance(self) -> Server | None:
        """For lists and handshakes, which carry no client's state: the spare (started when
        missing), else any ready instance."""
        spare = self.owners.get(SPARE)
        if spare is not None and spare not in self._leaving:
            return spare
        for server in self.owners.values():
            if server.state in SERVING and server not in self._leaving:
                return server
        return self._create(SPARE)

    def _publish(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in ("log", "tool_change"):
            self.parent.ctx.publish({**event, "server": self.parent.name})

    async def _run(self, server: Server) -> None:
        with anyio.CancelScope() as scope:
            self._scopes[id(server)] = scope
            try:
                await server.run()
            finally:
                self._scopes.pop(id(server), None)

    async def _retire(self, owner: str, server: Server, why: str) -> None:
        """Stop one instance and forget it (its state goes with its process)."""
        self._leaving.add(server)
        log.info("%s: stopping the instance of client %r: %s", self.parent.name, owner, why)
        server.stop(why)
        with anyio.move_on_after(server.config.stop_timeout + 5):
            while server.instances:
                await server.wait_settled(1.0)
                if server.instances:
                    await anyio.sleep(0.02)
        scope = self._scopes.get(id(server))
        if scope is not None:
            scope.cancel()
        if self.owners.get(owner) is server:
            del self.owners[owner]
        self._leaving.discard(server)
        if server.client_dir is not None:  # an anonymous client's files end with its instance
            state = self.parent.ctx.state_dir
            doomed = [server.client_dir, state / "home" / server.name, state / "tmp" / server.name]
            await anyio.to_thread.run_sync(_remove_all, doomed)
        self.parent.per_client_changed()

    # ---- routing --------------------------------------------------------------------------------

    def submit(self, sink: Sink, message: Message, client_modern: bool) -> None:
        owner = owner_of(sink)
        if owner is None and message["method"] not in protocol.LIST_ITEMS:
            owner = UNNAMED  # nobody's state may be read or changed by an unnamed caller
        server = self.instance_for(owner) if owner is not None else self.any_instance()
        if server is None:
            self.busy_total += 1
            sink.deliver(busy(
                message["id"], self.parent.name,
                f"'{self.parent.name}' runs one instance per client and all {self.cap} "
                "(max_instances) are taken", self.retry_after_ms()))
            return
        attached = attached_of(sink)
        if attached is not None and attached not in server.sessions:
            server.sessions.add(attached)
        server.submit(sink, message, client_modern)

    def retry_after_ms(self) -> int:
        """When the soonest idle instance will be stopped (at least a second)."""
        now = self.parent.clock.monotonic()
        idle = self.parent.config.idle_timeout
        waits = [idle - (now - s.last_active) for s in self.owners.values()
                 if not s.in_flight and not s.queue]
        return max(1000, math.ceil(1000 * min(waits, default=idle)))

    def cancel(self, sink: Sink, client_id: Any, reason: str) -> bool:
        return any(s.cancel(sink, client_id, reason) for s in self.servers)

    def drop_sink(self, sink: Sink) -> int:
        dropped = 0
        for server in self.servers:
            server.sessions.discard(sink)
            dropped += server.drop_sink(sink)
        return dropped

    # ---- life -----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the instances and stop idle ones (the spare first, when the server is eager), until
        `stop_all`; then stop every instance and return once their processes are gone."""
        idle = self.parent.config.idle_timeout
        self._stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self.parent.config.start == "eager":
                self._create(SPARE)
            while not self._stop.is_set():
                with anyio.move_on_after(max(0.05, min(idle / 4, 30.0))):
                    await self._stop.wait()
                now = self.parent.clock.monotonic()
                for owner, server in list(self.owners.items()):
                    if self._stop.is_set():
                        tg.start_soon(self._retire, owner, server, self._stop_reason)
                    elif (server not in self._leaving and not server.in_flight and not server.queue
                            and now - server.last_active >= idle):
                        tg.start_soon(self._retire, owner, server, f"idle for {idle:g}s (idle_timeout)")
            self._tg = None  # no new instances; the task group waits for the retirements

    def stop_all(self, why: str) -> None:
        self._stop_reason = why
        self._stop.set()

    def status(self) -> list[dict[str, Any]]:
        now = self.parent.clock.monotonic()
        return [{"client": owner, "name": s.name, "state": str(s.state), "pid": s.status()["pid"],
                 "idle_s": round(now - s.last_active, 3), "in_flight": s.in_flight,
                 "calls_total": s.calls_total}
                for owner, s in self.owners.items()]


__all__ = ["SPARE", "ClientInstances", "State", "owner_of"]
