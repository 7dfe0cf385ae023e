"""Tool policy: what clients see of one server's tools, prompts and resources, and under which names.

    ItemRules      one kind of item (tools, prompts or resources) of one server, compiled from its
                   `ListPolicy` plus the tools held back by pinning (`on_tool_change = "block"`)
    ServerGate     the three rules of one server, applied in `Server.submit` before anything else:
                   list answers are filtered and renamed on their way back (`FilteredList`), and a
                   request naming a hidden item is refused with -32602 naming the policy
    FilteredList   a sink that rewrites one list answer before passing it on

Rules use the child's own names (URIs for resources); clients only ever see the public names.
A server without any policy has no gate: its hot path pays one `None` test.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from fnmatch import fnmatchcase
from typing import Any

from supervisor.config import ListPolicy, ServerConfig
from supervisor.errors import INVALID_PARAMS
from supervisor.wire.jsonrpc import Message, Sink, error_response

Items = list[dict[str, Any]]


def origin_of(sink: Any) -> Any:
    """The client's own sink behind any `FilteredList` wrappers (cancel and drop match on it)."""
    return getattr(sink, "origin", sink)


class FilteredList:
    """Delivers one list answer through `transform` (items under `key`), everything else as is."""

    __slots__ = ("key", "origin", "target", "transform")

    def __init__(self, target: Sink, key: str, transform: Callable[[Items], Items]) -> None:
        self.target = target
        self.origin = origin_of(target)
        self.key = key
        self.transform = transform

    def deliver(self, message: Message) -> None:
        result = message.get("result") if "method" not in message else None
        if isinstance(result, dict) and isinstance(result.get(self.key), list):
            items = [i for i in result[self.key] if isinstance(i, dict)]
            message = {**message, "result": {**result, self.key: self.transform(items)}}
        self.target.deliver(message)


class ItemRules:
    """allow/deny/rename/describe for one kind of item, plus names held back (pinning)."""

    def __init__(self, server: str, kind: str, rules: ListPolicy, key: str = "name",
                 held: Collection[str] = (), held_reason: str = "",
                 trusted: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self.server = server
        self.trusted = trusted  # an item failing it (as listed right now) is hidden like a held one
        self.kind = kind  # "tools", "prompts" or "resources": the fleet.toml table
        self.rules = rules
        self.key = key
        self.held = frozenset(held)
        self.held_reason = held_reason
        self.public = dict(rules.rename)
        self.private = {new: old for old, new in rules.rename.items()}

    @property
    def active(self) -> bool:
        return self.rules.active or bool(self.held) or self.trusted is not None

    def hidden_reason(self, name: str) -> str | None:
        """Why the child's item `name` is hidden from clients, or None when it is shown."""
        table = f"servers.{self.server}.{self.kind}"
        if self.rules.allow and not any(fnmatchcase(name, p) for p in self.rules.allow):
            return f"not in {table}.allow"
        for pattern in self.rules.deny:
            if fnmatchcase(name, pattern):
                return f"{table}.deny matches {pattern!r}"
        if name in self.held:
            return self.held_reason
        return None

    def apply(self, items: Iterable[dict[str, Any]], key: str | None = None) -> Items:
        """The items clients see: hidden ones dropped, names and descriptions replaced."""
        key = key or self.key
        out: Items = []
        for item in items:
            name = item.get(key)
            if not isinstance(name, str):
                continue
            if self.hidden_reason(name) is not None:
                continue
            if self.trusted is not None and not self.trusted(item):
                continue  # changed in this very list, before the server has re-read its tools
            new_name = self.public.get(name) if key == "name" else None
            description = self.rules.describe.get(name)
            if new_name is not None or description is not None:
                item = dict(item)
                if new_name is not None:
                    item["name"] = new_name
                if description is not None:
                    item["description"] = description
            out.append(item)
        return out

    def to_child(self, public: str) -> tuple[str, str | None]:
        """(the child's name for `public`, None) or (public, why it is refused)."""
        if public in self.private:
            child = self.private[public]
        elif public in self.public and self.key == "name":
            return public, f"renamed to {self.public[public]!r} by servers.{self.server}.{self.kind}.rename"
        else:
            child = public
        reason = self.hidden_reason(child)
        return (child, None) if reason is None else (public, reason)


# method -> (which rules, where the name is, the list key)
_NAMED = {"tools/call": "tools", "prompts/get": "prompts"}
_LISTS = {
    "tools/list": ("tools", "tools"),
    "prompts/list": ("prompts", "prompts"),
    "resources/list": ("resources", "resources"),
    "resources/templates/list": ("resources", "resourceTemplates"),
}
_BY_URI = ("resources/read", "resources/subscribe", "resources/unsubscribe")
METHODS = frozenset((*_NAMED, *_LISTS, *_BY_URI, "completion/complete"))


class ServerGate:
    """One server's policy at its front door (see the module docstring)."""

    def __init__(self, config: ServerConfig, blocked: Collection[str] = (),
                 trusted: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """`blocked`: tools known to differ from their pins; `trusted`: the pin check for items
        in a list answer (both only with `on_tool_change = "block"`)."""
        name = config.name
        self.server = name
        self.tools = ItemRules(name, "tools", config.tools, held=blocked, trusted=trusted,
                               held_reason=f"its definition changed since it was approved "
                                           f'(servers.{name}.on_tool_change = "block"; '
                                           f"see mcpctl tools --diff {name}, then "
                                           f"mcpctl tools approve {name})")
        self.prompts = ItemRules(name, "prompts", config.prompts)
        self.resources = ItemRules(name, "resources", config.resources, key="uri")
        self.methods = METHODS

    @property
    def active(self) -> bool:
        return self.tools.active or self.prompts.active or self.resources.active

    def visible_tools(self, tools: Items) -> Items:
        return self.tools.apply(tools)

    def admit(self, sink: Sink, message: Message) -> Sink | None:
        """The sink to route `message` with (maybe a filtering one), or None when refused here.
        A request it lets through may have its name rewritten to the child's."""
        method = message["method"]
        listed = _LISTS.get(method)
        if listed is not None:
            kind, key = listed
            rules: ItemRules = getattr(self, kind)
            if not rules.active:
                return sink
            item_key = "uriTemplate" if key == "resourceTemplates" else rules.key
            return FilteredList(sink, key, lambda items: rules.apply(items, item_key))
        params = message.get("params")
        if not isinstance(params, dict):
            return sink
        if method in _NAMED:
            kind = _NAMED[method]
            return self._named(sink, message, params, getattr(self, kind), kind[:-1], "name")
        if method in _BY_URI:
            return self._uri(sink, message, params.get("uri"))
        ref = params.get("ref")  # completion/complete
        if isinstance(ref, dict) and ref.get("type") == "ref/prompt":
            return self._named(sink, message, params, self.prompts, "prompt", "ref")
        if isinstance(ref, dict) and ref.get("type") == "ref/resource":
            return self._uri(sink, message, ref.get("uri"))
        return sink

    def _named(self, sink: Sink, message: Message, params: dict[str, Any], rules: ItemRules,
               what: str, where: str) -> Sink | None:
        if not rules.active:
            return sink
        holder = params if where == "name" else params["ref"]
        public = holder.get("name")
        if not isinstance(public, str):
            return sink  # the child says what is wrong with it
        child, reason = rules.to_child(public)
        if reason is not None:
            self._refuse(sink, message, what, public, reason)
            return None
        if child != public:
            if where == "name":
                message["params"] = {**params, "name": child}
            else:
                message["params"] = {**params, "ref": {**holder, "name": child}}
        return sink

    def _uri(self, sink: Sink, message: Message, uri: Any) -> Sink | None:
        if not self.resources.active or not isinstance(uri, str):
            return sink
        reason = self.resources.hidden_reason(uri)
        if reason is None:
            return sink
        self._refuse(sink, message, "resource", uri, reason)
        return None

    def _refuse(self, sink: Sink, message: Message, what: str, name: str, reason: str) -> None:
        sink.deliver(error_response(
            message["id"], INVALID_PARAMS,
            f"Unknown {what} {name!r}: hidden by the policy of server '{self.server}' ({reason})",
            {"server": self.server, what: name, "policy": reason}))
