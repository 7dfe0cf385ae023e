"""The aggregate: every ready server of the fleet behind one MCP endpoint (`/mcp`, `connect --all`).

Naming (`policy.naming`). Tools, prompts, resources and resource templates get their public names
from `[aggregate] prefix`: `SERVER__NAME` for all ("always", the default), only for names several
servers share ("on-collision"), or never. `tools/call`, `prompts/get` and prompt completions are
routed by that name, rewritten to the server's own name before the server sees the request. Each
server's own policy (`[servers.NAME.tools]` ...) applies first: the aggregate names what the server
shows.

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
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from supervisor import __version__
from supervisor.config import AggregateSettings, ClientSettings
from supervisor.errors import INVALID_PARAMS, METHOD_NOT_FOUND
from supervisor.policy import uri_templates
from supervisor.policy.naming import ALWAYS, NEVER, Naming
from supervisor.policy.states import SERVING, State
from supervisor.wire import protocol
from supervisor.wire.jsonrpc import Message, error_response

if TYPE_CHECKING:
    from supervisor.wire.jsonrpc import Sink

    from .fleet import Fleet
    from .instance import Instance
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
_ALL_CHANGED = tuple(protocol.LIST_CHANGED)
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


def split_name(name: Any, known: dict[str, Server], sep: str = SEP) -> tuple[Server, str] | None:
    """`SERVER__rest` -> (server, rest), when SERVER is a known server."""
    if not isinstance(name, str):
        return None
    server_name, sep, rest = name.partition(sep)
    if not sep or not rest:
        return None
    server = known.get(server_name)
    return (server, rest) if server is not None else None


def _capabilities(server: Server) -> dict[str, Any]:
    handshake = server.handshake
    return (handshake.capabilities if handshake is not None else None) or {}


def server_in_view(view: ClientSettings, server: str) -> bool:
    return view.servers is None or server in view.servers


def tool_in_view(view: ClientSettings, public: str) -> bool:
    """`public` is the tool's aggregate name; `[clients.NAME] tools` globs match those."""
    return not view.tools or any(fnmatchcase(public, pattern) for pattern in view.tools)


def refuse_for_view(sink: Sink, message: Message, view: ClientSettings, what: str, name: Any) -> None:
    key = "tools" if what == "tool" else "servers"
    sink.deliver(error_response(
        message["id"], INVALID_PARAMS,
        f"Unknown {what} {name!r}: hidden from client '{view.name}' by its view (clients.{view.name}.{key})",
        {what: name, "client": view.name, "policy": f"clients.{view.name}.{key}"}))


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
        self._tool_naming: tuple[Any, Naming] | None = None
        self._size_logged: dict[str | None, int] = {}

    @property
    def settings(self) -> AggregateSettings:
        return self.fleet.config.aggregate

    # ---- what Session asks of a target ------------------------------------------------------

    @property
    def handshake(self) -> _Handshake:
        ready = self._ready()
        names = ", ".join(s.name for s in ready) or "none yet"
        self._check_size(None, self.tools_for(ready))
        settings = self.settings
        if settings.prefix == ALWAYS:
            how = f"named SERVER{settings.separator}NAME"
        elif settings.prefix == NEVER:
            how = "under their own names"
        else:
            how = f"under their own names (SERVER{settings.separator}NAME where two servers share one)"
        return _Handshake(f"Tools, prompts and resources of several MCP servers, {how} "
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

    def names_changed(self) -> None:
        """A reload changed `[aggregate]` or `[clients]`: every aggregate client lists again."""
        self._cache.clear()
        self._tool_naming = None
        self._size_logged.clear()
        for method in _ALL_CHANGED:
            self._broadcast(None, {"jsonrpc": "2.0", "method": method})

    def server_notification(self, server: Server, message: Message) -> None:
        for stale in protocol.LIST_CHANGED.get(message.get("method", ""), ()):
            self._cache.pop((server.name, stale), None)
        self._broadcast(server, message)

    def _broadcast(self, server: Server | None, message: Message) -> None:
        for session in list(self.sessions):
            # `Attached` is declared for one server's clients; the aggregate's own list_changed
            # (server None) reaches only aggregate clients, whose server_notification ignores it.
            session.server_notification(server, message)  # type: ignore[arg-type]

    # ---- naming -------------------------------------------------------------------------------

    def tool_naming(self, ready: list[Server] | None = None) -> Naming:
        """Public tool names over the ready servers, rebuilt only when a tool list or policy changed."""
        ready = self._ready() if ready is None else ready
        settings = self.settings
        key = (settings, tuple((s.name, id(s.tools), s.policy_epoch) for s in ready))
        cached = self._tool_naming
        if cached is not None and cached[0] == key:
            return cached[1]
        naming = Naming(settings, ((s.name, [str(t.get("name")) for t in s.visible_tools])
                                   for s in ready if "tools" in _capabilities(s)))
        for server, name in naming.dropped:
            log.warning("aggregate: tool %r of %s is withheld: another server offers the same name "
                        "and [aggregate] prefix = \"never\"", name, server)
        self._tool_naming = (key, naming)
        return naming

    def _naming(self, method: str, ready: list[Server]) -> Naming:
        if method == "tools/list":
            return self.tool_naming(ready)
        settings = self.settings
        if method != "prompts/list" and settings.prefix == NEVER:
            # Resource names are labels (URIs route): under "never" they stay as they are.
            settings = AggregateSettings(prefix="on-collision", separator=settings.separator)
        return Naming(settings, ((s.name, [str(i.get("name")) for i in self._cached(s, method)])
                                 for s in ready))

    def tools_for(self, ready: list[Server] | None = None) -> dict[str, list[dict[str, Any]]]:
        """Each ready server's tools as the aggregate lists them (public names)."""
        ready = self._ready() if ready is None else ready
        naming = self.tool_naming(ready)
        out: dict[str, list[dict[str, Any]]] = {}
        for server in ready:
            if "tools" not in _capabilities(server):
                continue
            items = []
            for tool in server.visible_tools:
                public = naming.name_for(server.name, str(tool.get("name")))
                if public is not None:
                    items.append(tool if public == tool.get("name") else {**tool, "name": public})
            out[server.name] = items
        return out

    def _check_size(self, view: str | None, per_server: dict[str, list[dict[str, Any]]]) -> None:
        """Log (once per count) when a view exposes more tools than `[aggregate] max_tools`."""
        counts = {name: len(tools) for name, tools in per_server.items()}
        total = sum(counts.values())
        limit = self.settings.max_tools
        if total > limit and self._size_logged.get(view) != total:
            if len(self._size_logged) > 1024:
                self._size_logged.clear()
            self._size_logged[view] = total
            per = ", ".join(f"{n} {c}" for n, c in sorted(counts.items(), key=lambda kv: -kv[1]))
            log.warning("aggregate%s exposes %d tools, more than [aggregate] max_tools = %d (%s): "
                        "clients may cap or degrade; narrow it with [servers.NAME.tools] or "
                        "[clients.NAME] tools", f" view of client '{view}'" if view else "", total,
                        limit, per)

    def status(self) -> dict[str, Any]:
        """For `mcpctl status`: the naming mode, the tool count against `max_tools`, collisions."""
        ready = self._ready()
        naming = self.tool_naming(ready)
        counts = {name: len(tools) for name, tools in self.tools_for(ready).items()}
        total = sum(counts.values())
        settings = self.settings
        return {
            "prefix": settings.prefix,
            "separator": settings.separator,
            "tools": total,
            "tools_per_server": counts,
            "max_tools": settings.max_tools,
            "over_max_tools": total > settings.max_tools,
            "collisions": [{"tool": name, "servers": holders}
                           for name, holders in naming.collisions.items()],
            "withheld": [{"tool": name, "server": server} for server, name in naming.dropped],
        }

    # ---- routing ------------------------------------------------------------------------------

    def submit(self, sink: Sink, message: Message, client_modern: bool,
               view: ClientSettings | None = None) -> None:
        """Route one request; `view` is the client's `[clients.NAME]` when it sees less than all."""
        method = message["method"]
        if method in _LISTS:
            self._list(sink, message, method, client_modern, view)
            return
        params = message.get("params")
        if not isinstance(params, dict):
            params = {}
        if method == "tools/call":
            public = params.get("name")
            routed = self._route_tool(public)
            if routed is None:
                self._unknown(sink, message, "tool", public)
                return
            server, name = routed
            if view is not None and not (server_in_view(view, server.name)
                                         and tool_in_view(view, str(public))):
                refuse_for_view(sink, message, view, "tool", public)
                return
            message["params"] = {**params, "name": name}
            server.submit(sink, message, client_modern)
            return
        if method == "prompts/get":
            self._prompt(sink, message, params, params, client_modern, view)
            return
        if method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
            self._resource(sink, message, params, "uri", client_modern, view)
            return
        if method == "completion/complete":
            ref = params.get("ref")
            if isinstance(ref, dict) and ref.get("type") == "ref/prompt":
                self._prompt(sink, message, params, ref, client_modern, view)
                return
            if isinstance(ref, dict) and ref.get("type") == "ref/resource":
                self._resource(sink, message, ref, "uri", client_modern, view, ref_key="ref")
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

    def _route_tool(self, name: Any) -> tuple[Server, str] | None:
        if not isinstance(name, str):
            return None
        servers = self.fleet.servers
        settings = self.settings
        if settings.prefix == ALWAYS:
            # Every public name is SERVER<sep>name, and no server name holds the separator (the
            # config refuses it), so the first separator splits exactly what `Naming.resolve`
            # would find, for listed and unlisted tools alike (`tests/test_aggregate_route.py`).
            # Asking the naming instead walks the whole fleet per call to see whether it is still
            # current: tens of µs with the shipped 27 servers, more than the rest of the call.
            head, sep, rest = name.partition(settings.separator)
            server = servers.get(head) if sep and rest else None
            return (server, rest) if server is not None else None
        found = self.tool_naming().resolve(name, servers)
        if found is None:
            return None
        server = servers.get(found[0])
        return (server, found[1]) if server is not None else None

    def _prompt(self, sink: Sink, message: Message, params: dict[str, Any], holder: dict[str, Any],
                client_modern: bool, view: ClientSettings | None, retried: bool = False) -> None:
        """prompts/get or a prompt completion: `holder["name"]` is the public prompt name."""
        public = holder.get("name")
        ready = [s for s in self._ready() if "prompts" in _capabilities(s)]
        found = None
        if isinstance(public, str):
            if self.settings.prefix == ALWAYS:
                routed = split_name(public, self.fleet.servers, self.settings.separator)
                found = (routed[0].name, routed[1]) if routed is not None else None
            else:
                stale = [s for s in ready if not self._fresh(s, "prompts/list")]
                if stale and not retried:
                    # Names depend on every server's prompts: learn them, then route.
                    self._fill("prompts/list", stale, lambda _: self._prompt(
                        sink, message, params, holder, client_modern, view, retried=True))
                    return
                found = self._naming("prompts/list", ready).resolve(public, self.fleet.servers)
        server = self.fleet.servers.get(found[0]) if found is not None else None
        if server is None or found is None:
            self._unknown(sink, message, "prompt", public)
            return
        if view is not None and not server_in_view(view, server.name):
            refuse_for_view(sink, message, view, "prompt", public)
            return
        if holder is params:
            message["params"] = {**params, "name": found[1]}
        else:
            message["params"] = {**params, "ref": {**holder, "name": found[1]}}
        server.submit(sink, message, client_modern)

    def _unknown(self, sink: Sink, message: Message, kind: str, name: Any) -> None:
        known = ", ".join(self.fleet.servers) or "none"
        settings = self.settings
        if settings.prefix == ALWAYS:
            how = f"aggregate {kind}s are named SERVER{settings.separator}{kind.upper()}"
        else:
            how = f"no server offers it (see {kind}s/list)"
        sink.deliver(error_response(
            message["id"], INVALID_PARAMS, f"Unknown {kind} {name!r}: {how} (servers: {known})",
            {"name": name, "servers": list(self.fleet.servers)}))

    # ---- lists ------------------------------------------------------------------------------

    def _list(self, sink: Sink, message: Message, method: str, client_modern: bool,
              view: ClientSettings | None) -> None:
        key, capability = _LISTS[method]
        ready = [s for s in self._ready() if capability in _capabilities(s)]
        # Names are the fleet's (a view never renames); a view only leaves items out.
        shown = ready if view is None else [s for s in ready if server_in_view(view, s.name)]
        if method == "tools/list":
            per_server = self.tools_for(ready)
            if view is not None:
                per_server = {name: [t for t in tools if tool_in_view(view, str(t.get("name")))]
                              for name, tools in per_server.items() if server_in_view(view, name)}
            self._check_size(view.name if view is not None else None, per_server)
            items = [tool for tools in per_server.values() for tool in tools]
            self._answer(sink, message, {key: items}, client_modern, method)
            return
        missing = [s for s in ready if not self._fresh(s, method)]

        def done(_: dict[str, list[dict[str, Any]]]) -> None:
            naming = self._naming(method, ready)
            items = []
            for server in shown:
                for item in self._cached(server, method):
                    public = naming.name_for(server.name, str(item.get("name")))
                    if public is not None:
                        items.append(item if public == item.get("name") else {**item, "name": public})
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
                  client_modern: bool, view: ClientSettings | None, ref_key: str | None = None,
                  retried: bool = False) -> None:
        uri = holder.get(key)
        if not isinstance(uri, str) or not uri:
            sink.deliver(error_response(message["id"], INVALID_PARAMS, f"Invalid params: {key} is required"))
            return
        if len(uri) > uri_templates.MAX_URI:
            sink.deliver(error_response(message["id"], INVALID_PARAMS, f"Invalid params: {key} is "
                                        f"longer than {uri_templates.MAX_URI} characters"))
            return
        ready = [s for s in self._ready() if "resources" in _capabilities(s)
                 and (view is None or server_in_view(view, s.name))]
        owner: Server | None = None
        forced = (split_name(uri, self.fleet.servers, self.settings.separator)
                  if self.settings.prefix != NEVER else None)
        candidates: list[Server] = []
        if forced is not None:
            owner, uri = forced
            if view is not None and not server_in_view(view, owner.name):
                refuse_for_view(sink, message, view, "resource", holder.get(key))
                return
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
                            sink, message, holder, key, client_modern, view, ref_key, retried=True))
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
                f"Resource {uri!r} {what}; prefix it with SERVER{self.settings.separator} to choose "
                f"(servers: "
                f"{', '.join(names) or 'none'})", {"uri": uri, "servers": names}))
            return
        params = dict(message.get("params") or {})
        if ref_key is not None:
            params[ref_key] = {**holder, key: uri}
        else:
            params[key] = uri
        message["params"] = params
        owner.submit(sink, message, client_modern)
