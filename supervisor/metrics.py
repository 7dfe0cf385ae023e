"""Prometheus metrics: plain counters on the hot path, exposition text built at scrape time.

Names (prefix `mcp_supervisor_`, DESIGN.md section 9):

    requests_total{server,method,outcome}       counter    every request that reached admission
    request_duration_seconds{server,method}     histogram  requests a child handled (or timed out on)
    in_flight{server}                           gauge      sent to a child, not answered yet
    queue_depth{server}                         gauge      admitted, waiting for a free slot
    server_state{server,state}                  gauge      1 for the server's current state, else 0
    restarts_total{server,reason}               counter    crash | start-failure | manual | ...
    memory_bytes{server}                        gauge      RSS of the whole process tree
    memory_limit_bytes{server}                  gauge      the configured limit (for "near limit")
    instances{server}                           gauge      instances ready to serve
    scale_events_total{server,direction}        counter    autoscaling: up | down | refused
    cache_requests_total{backend,result}        counter    hit | miss | error
    log_lines_dropped_total{server}             counter    stderr lines the log files could not keep
    tool_changes{server}                        gauge      tools whose definition differs from its pin
    tool_changes_detected_total{server}         counter    definition changes seen (approved or not)

Why not `Counter.labels(...).inc()` per request: prometheus_client takes a lock per `inc()` and
per `observe()`, about 5 µs for the pair even with pre-bound children, against 0.6 µs for the plain
ints below (bench/metrics_overhead.py; `request_done` without metrics is 0.5 µs). The hot path is
single-threaded, so it needs no lock. So each server keeps a `RequestStats` of plain ints (an index
into a list per outcome, `bisect` into fixed buckets for the histogram) and a custom collector turns
them into metric families when someone scrapes. Gauges are read from the live objects at the same moment,
so they cost nothing between scrapes.

Counters live on the `Server` object: a server that a reload replaced or removed starts again from
zero, which Prometheus's `rate()` and `increase()` treat as an ordinary counter reset.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .states import State

if TYPE_CHECKING:
    from .server import Server

PREFIX = "mcp_supervisor_"

# Outcomes are list indices on the hot path; their label values are the names below.
OK, ERROR, TIMEOUT, CANCELLED, GONE, BUSY, UNAVAILABLE = range(7)
OUTCOMES = ("ok", "error", "timeout", "cancelled", "gone", "busy", "unavailable")

# Upper bounds in seconds: MCP calls range from sub-millisecond cache-like answers to minutes-long tools.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_BUCKET_LABELS = (*(f"{b:g}" for b in BUCKETS), "+Inf")

# A client can send any method name; past this many distinct ones per server they count as "other",
# so a misbehaving client cannot blow up the number of series.
MAX_METHODS = 40

CONTENT_TYPE = CONTENT_TYPE_LATEST


class MethodStats:
    """Counts for one (server, method): per outcome, and a non-cumulative histogram."""

    __slots__ = ("buckets", "outcomes", "seconds")

    def __init__(self) -> None:
        self.outcomes = [0] * len(OUTCOMES)
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.seconds = 0.0


class RequestStats:
    """One server's request counters. `record` is the only thing the hot path calls."""

    __slots__ = ("methods",)

    def __init__(self) -> None:
        self.methods: dict[str, MethodStats] = {}

    def record(self, method: str, outcome: int, seconds: float) -> None:
        stats = self.methods.get(method)
        if stats is None:
            stats = self._add(method)
        stats.outcomes[outcome] += 1
        stats.buckets[bisect_left(BUCKETS, seconds)] += 1
        stats.seconds += seconds

    def refused(self, method: str, outcome: int) -> None:
        """A request answered at admission (busy, unavailable): counted, but no duration."""
        stats = self.methods.get(method)
        if stats is None:
            stats = self._add(method)
        stats.outcomes[outcome] += 1

    def _add(self, method: str) -> MethodStats:
        if len(self.methods) >= MAX_METHODS:
            method = "other"
            existing = self.methods.get(method)
            if existing is not None:
                return existing
        stats = self.methods[method] = MethodStats()
        return stats


class FleetCollector(Collector):
    """Reads the live fleet when Prometheus scrapes; nothing is stored in between."""

    def __init__(self, servers: Callable[[], Iterable[Server]],
                 cache_status: Callable[[], Mapping[str, Any]],
                 log_drops: Callable[[], Mapping[str, int]] | None = None) -> None:
        self._servers = servers
        self._cache_status = cache_status
        self._log_drops = log_drops

    def collect(self) -> Iterator[Metric]:
        servers = list(self._servers())
        requests = CounterMetricFamily(PREFIX + "requests", "Requests by server, method and outcome "
                                       "(ok, error, timeout, cancelled, gone, busy, unavailable).",
                                       labels=["server", "method", "outcome"])
        durations = HistogramMetricFamily(PREFIX + "request_duration_seconds",
                                          "Time from sending a request to a child to its answer.",
                                          labels=["server", "method"])
        in_flight = GaugeMetricFamily(PREFIX + "in_flight", "Requests sent to the server's children "
                                      "and not answered yet.", labels=["server"])
        queue = GaugeMetricFamily(PREFIX + "queue_depth", "Requests admitted and waiting for a free "
                                  "slot.", labels=["server"])
        state = GaugeMetricFamily(PREFIX + "server_state", "1 for the state the server is in, 0 for "
                                  "the others.", labels=["server", "state"])
        restarts = CounterMetricFamily(PREFIX + "restarts", "Restarts by reason (crash, start-failure, "
                                       "manual, ...).", labels=["server", "reason"])
        memory = GaugeMetricFamily(PREFIX + "memory_bytes", "Resident memory of the server's whole "
                                   "process trees.", labels=["server"])
        limit = GaugeMetricFamily(PREFIX + "memory_limit_bytes", "The server's configured memory_limit "
                                  "(absent when it has none).", labels=["server"])
        instances = GaugeMetricFamily(PREFIX + "instances", "Instances of the server ready to serve.",
                                      labels=["server"])
        scale = CounterMetricFamily(PREFIX + "scale_events", "Autoscaling decisions by direction (up, "
                                    "down, refused: a scale-up the fleet memory limit stopped).",
                                    labels=["server", "direction"])
        changes = GaugeMetricFamily(PREFIX + "tool_changes", "Tools whose definition differs from "
                                    "the pinned (approved) one.", labels=["server"])
        detected = CounterMetricFamily(PREFIX + "tool_changes_detected", "Tool definition changes "
                                       "seen since the daemon started.", labels=["server"])
        for server in servers:
            name = server.name
            changes.add_metric([name], len(server.pins.changes))
            detected.add_metric([name], server.tool_changes_total)
            instances.add_metric([name], len(server.ready_instances))
            for direction, count in server.scale_events.items():
                scale.add_metric([name, direction], count)
            for method, stats in list(server.stats.methods.items()):
                for index, count in enumerate(stats.outcomes):
                    if count:
                        requests.add_metric([name, method, OUTCOMES[index]], count)
                cumulative = 0
                buckets = []
                for label, count in zip(_BUCKET_LABELS, stats.buckets, strict=True):
                    cumulative += count
                    buckets.append((label, float(cumulative)))
                if cumulative:
                    durations.add_metric([name, method], buckets, stats.seconds)
            in_flight.add_metric([name], server.in_flight)
            queue.add_metric([name], len(server.queue))
            current = server.state
            for each in State:
                state.add_metric([name, str(each)], 1.0 if each == current else 0.0)
            for reason, count in server.restart_reasons.items():
                restarts.add_metric([name, reason], count)
            sizes = [inst.memory_bytes for inst in server.instances if inst.memory_bytes is not None]
            memory.add_metric([name], float(sum(sizes)))
            if server.config.memory_limit is not None:
                limit.add_metric([name], float(server.config.memory_limit))
        yield from (requests, durations, in_flight, queue, state, restarts, memory, limit, instances, scale,
                    changes, detected)

        cache = self._cache_status()
        backend = str(cache.get("backend", "none"))
        cache_requests = CounterMetricFamily(PREFIX + "cache_requests", "Cache lookups by result.",
                                             labels=["backend", "result"])
        for result, key in (("hit", "hits"), ("miss", "misses"), ("error", "errors")):
            cache_requests.add_metric([backend, result], float(cache.get(key) or 0))
        yield cache_requests

        if self._log_drops is not None:
            dropped = CounterMetricFamily(PREFIX + "log_lines_dropped", "Child stderr lines not "
                                          "written to the log files because the writer fell behind.",
                                          labels=["server"])
            for name, count in self._log_drops().items():
                dropped.add_metric([name], count)
            yield dropped


class Metrics:
    """The daemon's private registry (never the global one: tests and embedders stay isolated)."""

    def __init__(self, servers: Callable[[], Iterable[Server]],
                 cache_status: Callable[[], Mapping[str, Any]],
                 log_drops: Callable[[], Mapping[str, int]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(FleetCollector(servers, cache_status, log_drops))
        # The daemon's own CPU, RSS and open files, as process_* (the usual names).
        ProcessCollector(registry=self.registry)

    def render(self) -> bytes:
        """The exposition text for `GET /metrics` (content type: `CONTENT_TYPE`)."""
        return generate_latest(self.registry)


__all__ = [
    "BUCKETS",
    "BUSY",
    "CANCELLED",
    "CONTENT_TYPE",
    "ERROR",
    "GONE",
    "OK",
    "OUTCOMES",
    "TIMEOUT",
    "UNAVAILABLE",
    "FleetCollector",
    "Metrics",
    "RequestStats",
]
