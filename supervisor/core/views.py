"""Per-client views: `[clients.NAME] servers = [...]` and `tools = [...]` (globs on aggregate names).

A client is known by its identity: the `[clients.NAME] token` it sends to the HTTP door, or
`mcpctl connect --client NAME`. When its table narrows what it sees, the door hands its session a
view instead of the target itself:

    AggregateView   the aggregate, asked to leave out servers and tools outside the view
    ServerView      one server, its tools/list filtered and calls to tools outside the view refused

Both look the client's settings up in the current config on every request, so a reload applies a
changed view to sessions that are already open. Refusals are -32602 naming `clients.NAME.tools`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from supervisor.config import ClientSettings
from supervisor.errors import SupervisorError
from supervisor.policy.naming import ALWAYS
from supervisor.policy.tool_policy import FilteredList
from supervisor.wire.jsonrpc import Message, error_response

from .aggregate import refuse_for_view, server_in_view, tool_in_view

if TYPE_CHECKING:
    from supervisor.policy.states import State
    from supervisor.wire.jsonrpc import Sink

    from .aggregate import Aggregate
    from .server import Attached, Server
    from .sessions import Target


class NotInView(SupervisorError):
    """The client's `[clients.NAME] servers` does not list the server it asked for."""

    code = -32602


def client_view(aggregate: Aggregate, client: str | None) -> ClientSettings | None:
    """The client's settings when they narrow what it sees; None for everyone else."""
    if client is None:
        return None
    settings = aggregate.fleet.config.clients.get(client)
    return settings if settings is not None and settings.has_view else None


def check_server(aggregate: Aggregate, client: str | None, server: str) -> None:
    """Raise `NotInView` when the client may not use `server` at all."""
    view = client_view(aggregate, client)
    if view is not None and not server_in_view(view, server):
        raise NotInView(f"client '{client}' may not use server '{server}' (clients.{client}.servers "
                        f"lists {', '.join(view.servers or ()) or 'none'})",
                        data={"client": client, "server": server, "policy": f"clients.{client}.servers"})


class _View:
    """Delegates everything a session asks of its target, except `submit`."""

    def __init__(self, inner: Target, aggregate: Aggregate, client: str) -> None:
        self.inner = inner
        self.aggregate = aggregate
        self.client = client

    @property
    def view(self) -> ClientSettings | None:
        return client_view(self.aggregate, self.client)

    @property
    def sessions(self) -> set[Attached]:
        return self.inner.sessions

    @sessions.setter
    def sessions(self, value: set[Attached]) -> None:
        self.inner.sessions = value

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def state(self) -> State:
        return self.inner.state

    @property
    def reason(self) -> str:
        return self.inner.reason

    @property
    def config(self) -> Any:
        return self.inner.config

    @property
    def handshake(self) -> Any:
        return self.inner.handshake

    @property
    def transitional(self) -> bool:
        return self.inner.transitional

    def cancel(self, sink: Sink, client_id: Any, reason: str = "cancelled by the client") -> bool:
        return self.inner.cancel(sink, client_id, reason)

    def drop_sink(self, sink: Sink) -> int:
        return self.inner.drop_sink(sink)

    async def wait_settled(self, timeout: float) -> None:
        await self.inner.wait_settled(timeout)


class AggregateView(_View):
    def submit(self, sink: Sink, message: Message, client_modern: bool) -> None:
        self.aggregate.submit(sink, message, client_modern, self.view)


class ServerView(_View):
    inner: Server

    def public_name(self, name: str) -> str:
        """The aggregate name of this server's (public) tool `name`: what view globs match."""
        naming = self.aggregate.tool_naming()
        found = naming.name_for(self.inner.name, name)
        if found is not None:
            return found
        settings = self.aggregate.settings
        return f"{self.inner.name}{settings.separator}{name}" if settings.prefix == ALWAYS else name

    def submit(self, sink: Sink, message: Message, client_modern: bool) -> None:
        view = self.view
        method = message["method"]
        if view is not None and not server_in_view(view, self.inner.name):  # narrowed by a reload
            sink.deliver(error_response(message["id"], NotInView.code, f"client '{view.name}' may not "
                                        f"use server '{self.inner.name}' (clients.{view.name}.servers)"))
            return
        if view is not None and view.tools:
            if method == "tools/list":
                sink = FilteredList(sink, "tools", lambda tools: [
                    t for t in tools if tool_in_view(view, self.public_name(str(t.get("name"))))])
            elif method == "tools/call":
                params = message.get("params")
                name = params.get("name") if isinstance(params, dict) else None
                if isinstance(name, str) and not tool_in_view(view, self.public_name(name)):
                    refuse_for_view(sink, message, view, "tool", name)
                    return
        self.inner.submit(sink, message, client_modern)


def view_target(aggregate: Aggregate, target: Target, client: str | None) -> Target:
    """What a session of `client` on `target` talks to: a view when the client has one."""
    if client is None or client not in aggregate.fleet.config.clients:
        return target
    if target is aggregate:
        return AggregateView(target, aggregate, client)
    return ServerView(target, aggregate, client)
