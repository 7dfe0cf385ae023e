"""The aggregate: every ready server of the fleet behind one MCP endpoint (`/mcp`, `connect --all`).

Naming. Tools, prompts, resources and resource templates are listed as `SERVER__NAME` (server
names may not contain `__`, so the first `__` splits without ambiguity). `tools/call`,
`prompts/get` and prompt completions are routed by that prefix, with the prefix removed before the
child sees the request.

Resource URIs are *not* rewritten: a child's URIs also appear inside its tool results
(`resource_link` content) and in `notifications/resources/updated`, and a rewritten URI would break
those. `resources/read` (and subscribe/unsubscribe, completions of resource templates) are routed by
the URI: an exact match in the servers' resource lists, then a match against their URI templates,
then the only server that offers resources at all. A client can always force the route with the
`SERVER__` prefix in front of the URI (`echo__test://hello`); an ambiguous or unknown URI is an error
that says which servers could own it.

Lists come from caches: tools from each server's own cache (kept fresh on `list_changed`), prompts
and resources fetched from each child once (all pages, in parallel) and kept until that child says
`list_changed`, restarts, or the set of ready servers changes. A `list_changed` from any child is
forwarded to every aggregate client. Nothing here starts a task per request: a fan-out is a small
object that counts the answers as they arrive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import __version__, protocol, uri_templates
from .errors import INVALID_PARAMS, METHOD_NOT_FOUND
from .jsonrpc import Message, error_response
from .states import SERVING, State

if TYPE_CHECKING:
    from .fleet import Fleet
    from .instance import Instance, Sink
    from .server import Attached, Server

log = logging.getLogger("mcp_supervisor.aggregate")

SEP = "__"
NAME_NAME = "all"
# list method -> (item key, the capability a child must declare, how items are renamed)
_LISTS = {
    "tools/list": ("tools", "tools"),
    "prompts/list": ("prompts", "prompts"),
    "resources/list": ("resources", "resources"),
    "resources/templates/list": ("resourceTemplates", "resources"),
}
_INVALIDATES = {
    "notifications/tools/list_changed": ("tools/list",),
    "notifications/prompts/list_changed": ("prompts/list",),
    "notifications/resources/list_changed": ("resources/list", "resources/templates/list"),
}
_ALL_CHANGED = tuple(_INVALIDATES)
_MAX_PAGES = 1000


class _Handshake:
    """Stands in for a child's handshake when a client initializes against the aggregate."""

    modern = False
    discover_result: dict[str, Any] | None = None

    def __init__(self, instructions: str) -> None:
        self.capabilities: dict[str, Any] = {
            "tools": {"listChanged": True},
            "prompts": {"listChanged": True},
            "resources": {"listChanged": True},
            "completions": {},
            "logging": {},
        }
        self.server_info = {"name": "mcp-supervisor-aggregate", "version": __version__}
        self.init_result: dict[str, Any] = {"instructions": instructions}


class _Timeouts:
    init_timeout = 30.0


def split_name(name: Any, known: dict[str, Server]) -> tuple[Server, str] | None:
    """`SERVER__rest` -> (server, rest), when SERVER is a known server."""
    if not isinstance(name, str):
        return None
    server_name, sep, rest = name.partition(SEP)
    if not sep or not rest:
        return None
    server = known.get(server_name)
    return (server, rest) if server is not None else None


def _capabilities(server: Server) -> dict[str, Any]:
    handshake = server.handshake
    return (handshake.capabilities if handshake is not None else None) or {}


class _Gather:
    """One list method fanned out to several servers, all pages; calls `done` once all answered."""

    __slots__ = ("done", "items", "method", "outstanding", "servers")

    def __init__(self, method: str, servers: list[Server],
                 done: Callable[[dict[str, list[dict[str, Any]]]], None]) -> None:
        self.method = method
        self.servers = servers
        self.done = done
        self.items: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
        self.outstanding = len(servers)

    def start(self) -> None:
        if not self.servers:
            self.done(self.items)
            return
        for index, server in enumerate(self.servers):
            self._ask(index, server, None)

    def _ask(self, index: int, server: Server, cursor: Any) -> None:
        msg: Message = {"jsonrpc": "2.0", "id": index, "method": self.method}
        if cursor is not None:
            msg["params"] = {"cursor": cursor}
        server.submit(self, msg, False)

    def deliver(self, message: Message) -> None:
        if "method" in message:
            return
        index = message.get("id")
        if not isinstance(index, int) or not 0 <= index < len(self.servers):
            return
        server = self.servers[index]
        result = message.get("result")
        if isinstance(result, dict):
            got = result.get(_LISTS[self.method][0])
            if isinstance(got, list):
                self.items[server.name].extend(i for i in got if isinstance(i, dict))
            cursor = result.get("nextCursor")
            if cursor and len(self.items[server.name]) < _MAX_PAGES * 1000:
                self._ask(index, server, cursor)
                return
        else:
            log.info("aggregate: %s %s failed: %s", server.name, self.method,
                     (message.get("error") or {}).get("message"))
        self.outstanding -= 1
        if self.outstanding == 0:
            self.done(self.items)


class _Listener:
    """Registered with each server (like a session) to hear its notifications for the aggregate."""

    __slots__ = ("aggregate",)

    def __init__(self, aggregate: Aggregate) -> None:
        self.aggregate = aggregate

    def server_notification(self, server: Server, message: Message) -> None:
        self.aggregate.server_notification(server, message)

    def forward_server_request(self, instance: Instance, message: Message) -> bool:
        return False


class Aggregate:
    """Routes MCP requests across the fleet; quacks like a `Server` for `Session` (see `Target`)."""

    name = NAME_NAME
    state = State.READY
    reason = ""
    transitional = False
    config = _Timeouts()

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.sessions: set[Attached] = set()
        self._listener = _Listener(self)
        self._registered: set[int] = set()
        # (server name, method) -> (the handshake the items came from, items)
        self._cache: dict[tuple[str, str], tuple[Any, list[dict[str, Any]]]] = {}
        self._ready_names: frozenset[str] = frozenset()

    # ---- what Session asks of a target ------------------------------------------------------

    @property
    def handshake(self) -> _Handshake:
        names = ", ".join(s.name for s in self._ready()) or "none yet"
        return _Handshake(f"Tools, prompts and resources of several MCP servers, named SERVER{SEP}NAME "
                          f"(servers: {names}).")

    async def wait_settled(self, timeout: float) -> None:
        return None

    def cancel(self, sink: Sink, client_id: Any, reason: str = "cancelled by the client") -> bool:
        return any(server.cancel(sink, client_id, reason) for server in list(self.fleet.servers.values()))

    def drop_sink(self, sink: Sink) -> int:
        return sum(server.drop_sink(sink) for server in list(self.fleet.servers.values()))

    # ---- fleet changes ----------------------------------------------------------------------

    def _ready(self) -> list[Server]:
        servers = self.fleet.servers
        ready = []
        for server in servers.values():
            if id(server) not in self._registered:
                self._registered.add(id(server))
                server.sessions.add(self._listener)
            if server.state in SERVING and server.handshake is not None:
                ready.append(server)
        return ready

    def on_event(self, event: dict[str, Any]) -> None:
        """Daemon events: a server entering or leaving `ready` changes every aggregate list."""
        if event.get("type") != "state":
            return
        names = frozenset(s.name for s in self._ready())
        if names == self._ready_names:
            return
        self._ready_names = names
        self._cache.clear()
        if self.sessions:
            for method in _ALL_CHANGED:
                self._broadcast(None, {"jsonrpc": "2.0", "method": method})

    def server_notification(self, server: Server, message: Message) -> None:
        method = message.get("method")
        for stale in _INVALIDATES.get(method, ()):  # type: ignore[arg-type]
            self._cache.pop((server.name, stale), None)
        self._broadcast(server, message)

    def _broadcast(self, server: Server | None, message: Message) -> None:
        for session in list(self.sessions):
            session.server_notification(server, message)  # type: ignore[arg-type]

    # ---- routing ------------------------------------------------------------------------------

    def submit(self, sink: Sink, message: Message, client_modern: bool) -> None:
        method = message["method"]
        if method in _LISTS:
            self._list(sink, message, method, client_modern)
            return
        servers = self.fleet.servers
        params = message.get("params")
        if not isinstance(params, dict):
            params = {}
        if method in ("tools/call", "prompts/get"):
            routed = split_name(params.get("name"), servers)
            if routed is None:
                self._unknown(sink, message, "tool" if method == "tools/call" else "prompt",
                              params.get("name"))
                return
            server, name = routed
            message["params"] = {**params, "name": name}
            server.submit(sink, message, client_modern)
            return
        if method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
            self._resource(sink, message, params, "uri", client_modern)
            return
        if method == "completion/complete":
            ref = params.get("ref")
            if isinstance(ref, dict) and ref.get("type") == "ref/prompt":
                routed = split_name(ref.get("name"), servers)
                if routed is None:
                    self._unknown(sink, message, "prompt", ref.get("name"))
                    return
                message["params"] = {**params, "ref": {**ref, "name": routed[1]}}
                routed[0].submit(sink, message, client_modern)
                return
            if isinstance(ref, dict) and ref.get("type") == "ref/resource":
                self._resource(sink, message, ref, "uri", client_modern, ref_key="ref")
                return
        if method == "logging/setLevel":
            self._answer(sink, message, {}, client_modern)
            return
        sink.deliver(error_response(message["id"], METHOD_NOT_FOUND, f"Method not found: {method} "
                                    "(not offered by the mcp-supervisor aggregate)"))

    def _answer(self, sink: Sink, message: Message, result: dict[str, Any], client_modern: bool,
                method: str = "") -> None:
        reply = {"jsonrpc": "2.0", "id": message["id"], "result": result}
        if client_modern:
            protocol.modernize_result(reply, method)
        sink.deliver(reply)

    def _unknown(self, sink: Sink, message: Message, kind: str, name: Any) -> None:
        known = ", ".join(self.fleet.servers) or "none"
        sink.deliver(error_response(
            message["id"], INVALID_PARAMS,
            f"Unknown {kind} {name!r}: aggregate {kind}s are named SERVER{SEP}{kind.upper()} "
            f"(servers: {known})", {"name": name, "servers": list(self.fleet.servers)}))

    # ---- lists ------------------------------------------------------------------------------

    def _list(self, sink: Sink, message: Message, method: str, client_modern: bool) -> None:
        key, capability = _LISTS[method]
        ready = [s for s in self._ready() if capability in _capabilities(s)]
        if method == "tools/list":
            items = [{**tool, "name": f"{s.name}{SEP}{tool.get('name')}"}
                     for s in ready for tool in s.tools]
            self._answer(sink, message, {key: items}, client_modern, method)
            return
        missing = [s for s in ready if not self._fresh(s, method)]

        def done(_: dict[str, list[dict[str, Any]]]) -> None:
            items = [{**item, "name": f"{server.name}{SEP}{item.get('name')}"}
                     for server in ready for item in self._cached(server, method)]
            self._answer(sink, message, {key: items}, client_modern, method)

        self._fill(method, missing, done)

    def _fresh(self, server: Server, method: str) -> bool:
        entry = self._cache.get((server.name, method))
        return entry is not None and entry[0] is server.handshake

    def _cached(self, server: Server, method: str) -> list[dict[str, Any]]:
        entry = self._cache.get((server.name, method))
        return entry[1] if entry is not None else []

    def _fill(self, method: str, servers: list[Server],
              then: Callable[[dict[str, list[dict[str, Any]]]], None]) -> None:
        handshakes = {s.name: s.handshake for s in servers}

        def store(items: dict[str, list[dict[str, Any]]]) -> None:
            for name, got in items.items():
                self._cache[(name, method)] = (handshakes[name], got)
            then(items)

        _Gather(method, servers, store).start()

    # ---- resources: routed by URI -----------------------------------------------------------

    def _resource(self, sink: Sink, message: Message, holder: dict[str, Any], key: str,
                  client_modern: bool, ref_key: str | None = None, retried: bool = False) -> None:
        uri = holder.get(key)
        if not isinstance(uri, str) or not uri:
            sink.deliver(error_response(message["id"], INVALID_PARAMS, f"Invalid params: {key} is required"))
            return
        if len(uri) > uri_templates.MAX_URI:
            sink.deliver(error_response(message["id"], INVALID_PARAMS, f"Invalid params: {key} is "
                                        f"longer than {uri_templates.MAX_URI} characters"))
            return
        ready = [s for s in self._ready() if "resources" in _capabilities(s)]
        owner: Server | None = None
        forced = split_name(uri, self.fleet.servers)
        candidates: list[Server] = []
        if forced is not None:
            owner, uri = forced
        else:
            candidates = [s for s in ready if any(r.get("uri") == uri
                                                  for r in self._cached(s, "resources/list"))]
            if not candidates:
                candidates = [s for s in ready if any(
                    isinstance(t.get("uriTemplate"), str) and uri_templates.matches(t["uriTemplate"], uri)
                    for t in self._cached(s, "resources/templates/list"))]
            if not candidates and not retried:
                stale = [s for s in ready if not self._fresh(s, "resources/list")
                         or not self._fresh(s, "resources/templates/list")]
                if stale:
                    # Never listed (a client may read a URI it already knows): learn, then route.
                    def again(_: dict[str, list[dict[str, Any]]]) -> None:
                        self._fill("resources/templates/list", stale, lambda _: self._resource(
                            sink, message, holder, key, client_modern, ref_key, retried=True))
                    self._fill("resources/list", stale, again)
                    return
            if not candidates and len(ready) == 1:
                candidates = ready
            if len(candidates) == 1:
                owner = candidates[0]
        if owner is None:
            names = [s.name for s in candidates] if candidates else [s.name for s in ready]
            what = "is offered by several servers" if len(candidates) > 1 else "matches no server's resources"
            sink.deliver(error_response(
                message["id"], INVALID_PARAMS,
                f"Resource {uri!r} {what}; prefix it with SERVER{SEP} to choose (servers: "
                f"{', '.join(names) or 'none'})", {"uri": uri, "servers": names}))
            return
        params = dict(message.get("params") or {})
        if ref_key is not None:
            params[ref_key] = {**holder, key: uri}
        else:
            params[key] = uri
        message["params"] = params
        owner.submit(sink, message, client_modern)
