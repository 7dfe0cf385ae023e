"""What metrics cost per finished request: µs per `Server.request_done`.

Three ways, same loop, same server object:
  bare            request_done with the stats recording taken out (the floor)
  ours            request_done as shipped: plain-int RequestStats, read at scrape time
  prometheus      bare + pre-bound prometheus_client children: Counter.inc() and Histogram.observe()

Run: .venv/bin/python bench/metrics_overhead.py
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import anyio
from prometheus_client import CollectorRegistry, Counter, Histogram

from supervisor.config import parse_config
from supervisor.core.instance import Pending
from supervisor.core.server import FleetContext, Server
from supervisor.policy.counters import BUCKETS
from supervisor.policy.outcome import Outcome

N = 200_000


class NullSink:
    def deliver(self, message: object) -> None:
        pass


class IdleInstance:
    """What request_done reads of the instance: not draining, nothing else pending."""

    def __init__(self) -> None:
        self.draining = False
        self.pending: dict[int, Pending] = {}


def _time(func: Callable[..., None], pendings: list[Pending]) -> float:
    start = time.perf_counter()
    instance = IdleInstance()
    for pending in pendings:
        func(instance, pending, Outcome.OK)
    return (time.perf_counter() - start) / len(pendings) * 1e6


async def main() -> None:
    config = parse_config('[servers.bench]\ncommand = "true"\n', environ={})
    server = Server(config.servers["bench"], FleetContext(environ={}, state_dir=Path("/tmp"),
                                                           data_dir=Path("/tmp")))
    now = time.monotonic()
    pendings = [Pending(NullSink(), i, "tools/call", now + 60, None, "echo", now, False) for i in range(N)]

    def bare(instance: object, pending: Pending, outcome: Outcome) -> None:
        server.admission.calls_total += 1
        elapsed = time.monotonic() - pending.started
        server.latencies.append(elapsed)
        if outcome is not Outcome.OK:
            server.admission.errors_total += 1
        if server.queue:
            server.admission.dispatch_queue()

    registry = CollectorRegistry()
    counter = Counter("r", "r", ["server", "method", "outcome"], registry=registry)
    histogram = Histogram("d", "d", ["server", "method"], registry=registry, buckets=BUCKETS)
    ok_child = counter.labels("bench", "tools/call", "ok")
    duration_child = histogram.labels("bench", "tools/call")

    def prometheus(instance: object, pending: Pending, outcome: Outcome) -> None:
        bare(instance, pending, outcome)
        ok_child.inc()
        duration_child.observe(0.003)

    results: dict[str, float] = {}
    for _ in range(3):  # best of three
        for name, func in (("bare", bare), ("ours", server.request_done), ("prometheus", prometheus)):
            took = _time(func, pendings)
            results[name] = min(results.get(name, took), took)
    for name, took in results.items():
        extra = took - results["bare"]
        print(f"{name:11s} {took:6.3f} µs/request   metrics cost {extra:+6.3f} µs")


if __name__ == "__main__":
    anyio.run(main)
