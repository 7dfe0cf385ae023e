"""FleetModel: what the dashboard knows, folded from one status reply and the pushed events.

Textual-free and synchronous, so every event shape is tested directly. `apply()` reports what
changed, which is what lets the app update only the table cells and panes that need it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

HISTORY_SAMPLES = 180
"""Sparkline length: three minutes of the daemon's once-a-second stats."""

RECENT_RESTARTS = 20


@dataclass
class Change:
    """What one event touched."""

    servers: set[str] = field(default_factory=set)
    """Rows whose values changed."""
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
        self.calls_history: dict[str, deque[float]] = {}
        self.latency_history: dict[str, deque[float]] = {}
        self.restarts: dict[str, deque[Restart]] = {}
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
            return Change(servers={name}, fleet=True)
        if kind == "scale":
            server = self.servers[name]
            server["last_scale"] = {k: event.get(k) for k in ("direction", "reason", "from", "to", "at")}
            server["target_instances"] = event.get("to", server.get("target_instances"))
            return Change(servers={name})
        if kind == "restart":
            at = event.get("at")
            self.restarts.setdefault(name, deque(maxlen=RECENT_RESTARTS)).append(
                Restart(
                    at=float(at) if isinstance(at, int | float) else 0.0,
                    reason=str(event.get("reason")),
                    detail=str(event.get("detail") or ""),
                )
            )
            return Change(servers={name})
        return Change()

    def _apply_stats(self, event: dict[str, Any]) -> Change:
        self.stats_seen += 1
        if isinstance(event.get("daemon"), dict):
            self.daemon.update(event["daemon"])
        if isinstance(event.get("cache"), dict):
            self.cache.update(event["cache"])
        change = self._replace_servers(event.get("servers") or [], keep_rates=False)
        for name, server in self.servers.items():
            calls = self.calls_history.setdefault(name, deque(maxlen=self.history))
            latency = self.latency_history.setdefault(name, deque(maxlen=self.history))
            calls.append(_number(server.get("calls_per_s")))
            latency.append(_number(server.get("p95_ms")))
        change.fleet = True
        return change

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
            fresh[name] = new
        if list(fresh) != list(self.servers):
            change.membership = True
            for gone in set(self.servers) - set(fresh):
                self.calls_history.pop(gone, None)
                self.latency_history.pop(gone, None)
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


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
