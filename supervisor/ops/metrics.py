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
    http_fast_requests_total{era}               counter    POSTs the HTTP door answered with no
                                                           ASGI cycle (legacy | modern)
    tool_changes{server}                        gauge      tools whose definition differs from its pin
    tool_changes_detected_total{server}         counter    definition changes seen (approved or not)

The counting itself is `supervisor.policy.counters` (plain ints on the hot path, no lock); this
collector turns them into metric families when someone scrapes. Gauges are read from the live
objects at the same moment, so they cost nothing between scrapes.

Counters live on the `Server` object: a server that a reload replaced or removed starts again from
zero, which Prometheus's `rate()` and `increase()` treat as an ordinary counter reset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from supervisor import domains
from supervisor.core.server import Server
from supervisor.policy.counters import BUCKETS
from supervisor.policy.states import State

PREFIX = "mcp_supervisor_"
_BUCKET_LABELS = (*(f"{b:g}" for b in BUCKETS), "+Inf")
CONTENT_TYPE = CONTENT_TYPE_LATEST


class FleetCollector(Collector):
    """Reads the live fleet when Prometheus scrapes; nothing is stored in between."""

    def __init__(self, servers: Callable[[], Iterable[Server]],
                 cache_status: Callable[[], Mapping[str, Any]],
                 log_drops: Callable[[], Mapping[str, int]] | None = None,
                 http_fast: Callable[[], Mapping[str, int] | None] | None = None) -> None:
        self._servers = servers
        self._cache_status = cache_status
        self._log_drops = log_drops
        self._http_fast = http_fast

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
        protocol_errors = CounterMetricFamily(PREFIX + "child_protocol_errors", "Messages from the "
                                              "server's children that were not valid MCP (dropped).",
                                              labels=["server"])
        for server in servers:
            name = server.name
            changes.add_metric([name], len(server.pins.changes))
            detected.add_metric([name], server.tool_changes_total)
            instances.add_metric([name], len(server.ready_instances))
            protocol_errors.add_metric([name], server.protocol_errors_total)
            for direction, count in server.scale_events.items():
                scale.add_metric([name, direction], count)
            for method, stats in list(server.stats.methods.items()):
                for label, count in stats.by_label().items():
                    requests.add_metric([name, method, label], count)
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
                    changes, detected, protocol_errors)
        failures = CounterMetricFamily(PREFIX + "domain_failures", "Unexpected errors a failure "
                                       "domain caught and ended alone, by kind (connection, "
                                       "instance, loop, ...).", labels=["kind"])
        for kind, count in list(domains.failures.items()):
            failures.add_metric([kind], count)
        yield failures

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

        fast = self._http_fast() if self._http_fast is not None else None
        if fast is not None:  # None: no HTTP door
            taken = CounterMetricFamily(PREFIX + "http_fast_requests", "POSTs the HTTP door "
                                        "routed from the connection, with no ASGI cycle (the fast "
                                        "path), by era (legacy, modern).", labels=["era"])
            for era, count in fast.items():
                taken.add_metric([era], count)
            yield taken


class Metrics:
    """The daemon's private registry (never the global one: tests and embedders stay isolated)."""

    def __init__(self, servers: Callable[[], Iterable[Server]],
                 cache_status: Callable[[], Mapping[str, Any]],
                 log_drops: Callable[[], Mapping[str, int]] | None = None,
                 http_fast: Callable[[], Mapping[str, int] | None] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(FleetCollector(servers, cache_status, log_drops, http_fast))
        # The daemon's own CPU, RSS and open files, as process_* (the usual names).
        ProcessCollector(registry=self.registry)

    def render(self) -> bytes:
        """The exposition text for `GET /metrics` (content type: `CONTENT_TYPE`)."""
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "FleetCollector", "Metrics"]
