"""Aggregate names: which public name each server's tool (or prompt, or resource) gets on `/mcp`.

`[aggregate] prefix`:
    "always"        SERVER + separator + name, for every item (the default)
    "on-collision"  an item only one server offers keeps its own name; a name several servers
                    offer is prefixed for every one of them (no server is preferred)
    "never"         no prefix; a collision is refused at load and reload (`never_collisions`), and
                    one appearing at run time keeps the first server's item (fleet.toml order)

The prefixed form `SERVER<sep>name` is always understood when calling (unless "never"), so a
client keeps working when a collision appears or goes away, and a lazy server that has not listed
its tools yet can still be reached.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from supervisor.config import AggregateSettings, FleetConfig, ServerConfig
from supervisor.errors import ConfigError

from .tool_policy import ItemRules

ALWAYS, ON_COLLISION, NEVER = "always", "on-collision", "never"


class Naming:
    """The public names of one kind of item across the servers, given each server's names in order."""

    __slots__ = ("by_public", "collisions", "dropped", "mode", "public", "separator")

    def __init__(self, settings: AggregateSettings, sources: Iterable[tuple[str, Iterable[str]]]) -> None:
        self.mode = settings.prefix
        self.separator = settings.separator
        listed = [(server, list(names)) for server, names in sources]
        owners: dict[str, list[str]] = {}
        for server, names in listed:
            for name in names:
                holders = owners.setdefault(name, [])
                if server not in holders:
                    holders.append(server)
        self.collisions = {name: holders for name, holders in owners.items() if len(holders) > 1}
        self.public: dict[tuple[str, str], str] = {}
        self.by_public: dict[str, tuple[str, str]] = {}
        self.dropped: list[tuple[str, str]] = []  # (server, name) withheld under "never"
        for server, names in listed:
            for name in names:
                if self.mode == ALWAYS or (self.mode == ON_COLLISION and name in self.collisions):
                    public = f"{server}{self.separator}{name}"
                elif self.mode == NEVER and owners[name][0] != server:
                    self.dropped.append((server, name))
                    continue
                else:
                    public = name
                self.public[(server, name)] = public
                self.by_public.setdefault(public, (server, name))

    def name_for(self, server: str, name: str) -> str | None:
        """The public name of `server`'s item `name`; None when withheld."""
        return self.public.get((server, name))

    def resolve(self, public: str, servers: Mapping[str, object]) -> tuple[str, str] | None:
        """(server, the server's name) for a public name; the prefixed form always works (except
        under "never") for any configured server, listed or not."""
        found = self.by_public.get(public)
        if found is not None:
            return found
        if self.mode == NEVER:
            return None
        server, sep, rest = public.partition(self.separator)
        if sep and rest and server in servers:
            return server, rest
        return None


def public_tool_names(server: ServerConfig, child_names: Iterable[str]) -> list[str]:
    """The names `server`'s policy shows for its child's tools (hidden ones left out)."""
    rules = ItemRules(server.name, "tools", server.tools)
    return [str(item["name"]) for item in rules.apply({"name": n} for n in child_names)]


def never_collisions(config: FleetConfig, known: Mapping[str, Iterable[str]]) -> ConfigError | None:
    """Under `prefix = "never"`, the error for the first tool name two servers would both expose,
    from the tools `known` of each server (the child's names: live lists and pinned ones)."""
    if config.aggregate.prefix != NEVER:
        return None
    sources = [(name, public_tool_names(server, known.get(name, ())))
               for name, server in config.servers.items()]
    naming = Naming(config.aggregate, sources)
    for tool, holders in naming.collisions.items():
        first, second = holders[0], holders[1]
        return config.error_at(
            ("aggregate", "prefix"),
            f"prefix = \"never\" but tool {tool!r} is offered by both servers '{first}' and "
            f"'{second}': rename or deny it in [servers.{second}.tools], or use prefix = "
            "\"on-collision\"")
    return None
