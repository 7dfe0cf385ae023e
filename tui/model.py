"""FleetModel: what the dashboard knows, folded from one status reply and the pushed events.

Textual-free and synchronous, so every event shape is tested directly. `apply()` reports what
changed, which is what lets the app update only the table cells and panes that need it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HISTORY_SAMPLES = 120
"""Per-second samples kept per metric: the last two minutes, as they came."""
BUCKET = 10
"""Per-second samples per history bucket: a table sparkline column is two minutes wide."""
SESSION_BUCKETS = 360
"""Buckets kept per metric for the detail screen's charts: the last hour of the session."""
METRICS = ("memory", "cpu", "calls", "p95")
"""What has a history: whole-tree memory, CPU %, calls/s and p95 latency."""
_SOURCE = {"memory": "memory_bytes", "cpu": "cpu_percent", "calls": "calls_per_s", "p95": "p95_ms"}

RECENT_RESTARTS = 20
RECENT_STATES = 50

SORTS = ("name", "state", "memory", "cpu", "latency", "restarts")
"""What `s` cycles through, in this order."""


@dataclass
class Change:
    """What one event touched."""

    servers: set[str] = field(default_factory=set)
    """Rows whose values changed."""
    fields: dict[str, set[str]] = field(default_factory=dict)
    """Of a server in `servers`, the status fields that changed, when known (absent: any of them),
    so only the cells that show them are computed again."""
    membership: bool = False
    """Servers appeared or disappeared, so the table's rows must be rebuilt."""
    fleet: bool = False
    """The header's totals changed."""


@dataclass(frozen=True)
class Restart:
    at: float
    reason: str
    """The kind: crash, unresponsive, memory, start-failure, manual, config."""
    detail: str = ""
    """What the daemon said about it (`crashed: exit code 1: ...`), when it said more."""


@dataclass(frozen=True)
class Transition:
    at: float | None
    state: str
    reason: str


class Series:
    """One metric of one server: the last per-second samples, and the session in buckets (the
    largest sample of each BUCKET seconds, so a spike stays visible). Bounded both ways."""

    def __init__(self, samples: int = HISTORY_SAMPLES, buckets: int = SESSION_BUCKETS,
                 bucket: int = BUCKET) -> None:  # fmt: skip
        self.samples: deque[float] = deque(maxlen=samples)
        self.buckets: deque[float] = deque(maxlen=buckets)
        self.bucket = bucket
        self._in_bucket = 0
        self.last: float | None = None

    def add(self, value: float | None) -> None:
        self.last = value
        sample = value if value is not None else 0.0
        self.samples.append(sample)
        if self._in_bucket == 0:
            self.buckets.append(sample)
        elif sample > self.buckets[-1]:
            self.buckets[-1] = sample
        self._in_bucket = (self._in_bucket + 1) % self.bucket

    def recent(self, count: int) -> list[float]:
        """The last `count` buckets (the newest still filling), oldest first."""
        return list(self.buckets)[-count:]


@dataclass(frozen=True)
class FleetTotals:
    ready: int
    total: int
    memory_bytes: int
    memory_limit: int | None
    calls_per_s: float | None
    errors_per_s: float | None
    cache_hit_rate: float | None
    uptime_s: float | None


class FleetModel:
    def __init__(self, history: int = HISTORY_SAMPLES) -> None:
        self.history = history
        self.daemon: dict[str, Any] = {}
        self.cache: dict[str, Any] = {}
        self.servers: dict[str, dict[str, Any]] = {}
        """By name, in the daemon's order (the order of fleet.toml)."""
        self.series: dict[str, dict[str, Series]] = {}
        """By server, by metric (METRICS)."""
        self.restarts: dict[str, deque[Restart]] = {}
        self.transitions: dict[str, deque[Transition]] = {}
        """State changes seen during the session (the first from the status reply)."""
        self.stats_seen = 0

    # -- folding ------------------------------------------------------------------------------

    def load_status(self, status: dict[str, Any]) -> Change:
        """Take a full `supervisor/status` reply (on every (re)connect)."""
        self.daemon = dict(status.get("daemon") or {})
        self.cache = dict(status.get("cache") or {})
        return self._replace_servers(status.get("servers") or [], keep_rates=True)

    def apply(self, event: dict[str, Any]) -> Change:
        kind = event.get("type")
        if kind == "stats":
            return self._apply_stats(event)
        name = event.get("server")
        if not isinstance(name, str) or name not in self.servers:
            return Change()
        if kind == "state":
            server = self.servers[name]
            server["state"] = event.get("state", server.get("state"))
            server["reason"] = event.get("reason")
            server["since"] = event.get("at", server.get("since"))
            self._transition(name, server)
            return Change(servers={name}, fields={name: {"state", "reason", "since"}}, fleet=True)
        if kind == "scale":
            server = self.servers[name]
            server["last_scale"] = {k: event.get(k) for k in ("direction", "reason", "from", "to", "at")}
            server["target_instances"] = event.get("to", server.get("target_instances"))
            return Change(servers={name}, fields={name: {"last_scale", "target_instances"}})
        if kind == "tool_change":
            return self._tool_change(self.servers[name], event)
        if kind == "restart":
            at = event.get("at")
            self.restarts.setdefault(name, deque(maxlen=RECENT_RESTARTS)).append(
                Restart(
                    at=float(at) if isinstance(at, int | float) else 0.0,
                    reason=str(event.get("reason")),
                    detail=str(event.get("detail") or ""),
                )
            )
            return Change(servers={name}, fields={name: set()})  # the pane's timeline, not a cell
        return Change()

    def _tool_change(self, server: dict[str, Any], event: dict[str, Any]) -> Change:
        """A tool's definition changed since it was pinned (`blocked` or `warned`), or changes were
        approved: the marker moves now, not at the next stats push (which then says the same)."""
        names = server.get("changed_tools")
        changed = {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()
        action, tool = event.get("action"), event.get("tool")
        if action in ("blocked", "warned") and isinstance(tool, str):
            changed.add(tool)
            server["on_tool_change"] = "block" if action == "blocked" else "warn"
        elif action == "approved" and isinstance(event.get("approved"), list):
            changed -= {n for n in event["approved"] if isinstance(n, str)}
        else:
            return Change()
        server["changed_tools"] = sorted(changed)
        server["tool_changes"] = len(changed)
        name = str(server["name"])
        return Change(servers={name}, fields={name: {"changed_tools", "tool_changes", "on_tool_change"}},
                      fleet=True)  # fmt: skip

    def _apply_stats(self, event: dict[str, Any]) -> Change:
        self.stats_seen += 1
        if isinstance(event.get("daemon"), dict):
            self.daemon.update(event["daemon"])
        if isinstance(event.get("cache"), dict):
            self.cache.update(event["cache"])
        change = self._replace_servers(event.get("servers") or [], keep_rates=False)
        for name, server in self.servers.items():
            series = self.series.get(name)
            if series is None:
                series = self.series[name] = {m: Series(self.history) for m in METRICS}
            for metric, source in _SOURCE.items():
                value = server.get(source)
                series[metric].add(float(value) if isinstance(value, int | float) else None)
        change.fleet = True
        return change

    def _transition(self, name: str, server: dict[str, Any]) -> None:
        since = server.get("since")
        seen = self.transitions.setdefault(name, deque(maxlen=RECENT_STATES))
        entry = Transition(float(since) if isinstance(since, int | float) else None,
                           str(server.get("state")), str(server.get("reason") or ""))  # fmt: skip
        if not seen or (seen[-1].state, seen[-1].reason) != (entry.state, entry.reason):
            seen.append(entry)

    def series_of(self, name: str, metric: str) -> Series | None:
        return self.series.get(name, {}).get(metric)

    def _replace_servers(self, servers: list[Any], *, keep_rates: bool) -> Change:
        change = Change(fleet=True)
        fresh: dict[str, dict[str, Any]] = {}
        for server in servers:
            if not isinstance(server, dict) or not isinstance(server.get("name"), str):
                continue
            name = server["name"]
            old = self.servers.get(name)
            new = dict(server)
            if keep_rates and old is not None:
                # A status reply has no rates; keep the last stats until the next tick.
                for key in ("calls_per_s", "errors_per_s", "p50_ms", "p95_ms", "cache_hit_rate"):
                    if key in old and key not in new:
                        new[key] = old[key]
            if old != new:
                change.servers.add(name)
                if old is not None:
                    change.fields[name] = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
            fresh[name] = new
            if old is None or (old.get("state"), old.get("reason")) != (new.get("state"), new.get("reason")):
                self._transition(name, new)
        if list(fresh) != list(self.servers):
            change.membership = True
            for gone in set(self.servers) - set(fresh):
                self.series.pop(gone, None)
                self.transitions.pop(gone, None)
                self.restarts.pop(gone, None)
        self.servers = fresh
        return change

    # -- reading ------------------------------------------------------------------------------

    def totals(self) -> FleetTotals:
        servers = list(self.servers.values())
        calls = [s["calls_per_s"] for s in servers if isinstance(s.get("calls_per_s"), int | float)]
        errors = [s["errors_per_s"] for s in servers if isinstance(s.get("errors_per_s"), int | float)]
        # The fleet's memory is what its servers use; `daemon.memory_bytes` is ambiguous (the
        # daemon's own RSS or the fleet's?), so the sum is shown against the fleet limit.
        memory = sum(s["memory_bytes"] for s in servers if isinstance(s.get("memory_bytes"), int))
        hits, misses = self.cache.get("hits"), self.cache.get("misses")
        hit_rate = None
        if isinstance(hits, int) and isinstance(misses, int) and hits + misses > 0:
            hit_rate = hits / (hits + misses)
        uptime = self.daemon.get("uptime_s")
        return FleetTotals(
            ready=sum(1 for s in servers if s.get("state") == "ready"),
            total=len(servers),
            memory_bytes=memory,
            memory_limit=self.daemon.get("memory_limit"),
            calls_per_s=sum(calls) if calls else None,
            errors_per_s=sum(errors) if errors else None,
            cache_hit_rate=hit_rate,
            uptime_s=float(uptime) if isinstance(uptime, int | float) else None,
        )


def matches(server: dict[str, Any], needle: str) -> bool:
    """The filter: `needle` (lower case) in the name, the state or the reason (`/fail` finds
    failed servers, `/memory` those whose reason is about memory)."""
    if not needle:
        return True
    return any(needle in str(server.get(key) or "").lower() for key in ("name", "state", "reason"))


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else -1.0


def sort_key(sort: str, state_order: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    """A key for `sorted()`: by name ascending; by state in `state_order` (what needs a look
    first); by memory, CPU, p95 latency or restarts descending (unknown last); ties by name."""
    if sort == "state":
        rank = {state: i for i, state in enumerate(state_order)}
        return lambda s: (rank.get(str(s.get("state")), len(rank)), s["name"])
    source = {"memory": "memory_bytes", "cpu": "cpu_percent", "latency": "p95_ms", "restarts": "restarts"}
    if sort in source:
        field_name = source[sort]
        return lambda s: (-_number(s.get(field_name)), s["name"])
    return lambda s: s["name"]
