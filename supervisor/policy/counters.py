"""How many requests ended which way, and how long they took: plain ints on the hot path.

Why not `Counter.labels(...).inc()` per request: prometheus_client takes a lock per `inc()` and
per `observe()`, about 5 µs for the pair even with pre-bound children, against 0.6 µs for the plain
ints below (bench/metrics_overhead.py). The hot path is single-threaded, so it needs no lock. So
each server keeps a `RequestStats` of plain ints (an `Outcome` indexes a list, `bisect` finds one
of fixed buckets for the histogram); `supervisor.ops.metrics` turns them into metric families when
someone scrapes.
"""

from __future__ import annotations

from bisect import bisect_left

from .outcome import LABELS, Outcome

# Upper bounds in seconds: MCP calls range from sub-millisecond cache-like answers to minutes-long tools.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

# A client can send any method name: past this many distinct ones per server, and for any name
# longer than MAX_METHOD_LENGTH, they count as "other", so a misbehaving client can neither blow up
# the number of series nor the size of one (a 5 MB method name was a 5 MB label in every line).
MAX_METHODS = 40
MAX_METHOD_LENGTH = 64
OTHER = "other"


class MethodStats:
    """Counts for one (server, method): per outcome, and a non-cumulative histogram."""

    __slots__ = ("buckets", "outcomes", "seconds")

    def __init__(self) -> None:
        self.outcomes = [0] * len(Outcome)
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.seconds = 0.0

    def by_label(self) -> dict[str, int]:
        """Counts per metrics label (two outcomes share a label: INTERNAL is an error, CRASHED gone)."""
        totals: dict[str, int] = {}
        for outcome, count in enumerate(self.outcomes):
            if count:
                label = LABELS[outcome]
                totals[label] = totals.get(label, 0) + count
        return totals


class RequestStats:
    """One server's request counters. `record` is the only thing the hot path calls."""

    __slots__ = ("methods",)

    def __init__(self) -> None:
        self.methods: dict[str, MethodStats] = {}

    def record(self, method: str, outcome: Outcome, seconds: float) -> None:
        stats = self.methods.get(method)
        if stats is None:
            stats = self._add(method)
        stats.outcomes[outcome] += 1
        stats.buckets[bisect_left(BUCKETS, seconds)] += 1
        stats.seconds += seconds

    def refused(self, method: str, outcome: Outcome) -> None:
        """A request answered at admission (busy, unavailable): counted, but no duration."""
        stats = self.methods.get(method)
        if stats is None:
            stats = self._add(method)
        stats.outcomes[outcome] += 1

    def _add(self, method: str) -> MethodStats:
        if len(self.methods) >= MAX_METHODS or len(method) > MAX_METHOD_LENGTH:
            method = OTHER
            existing = self.methods.get(method)
            if existing is not None:
                return existing
        stats = self.methods[method] = MethodStats()
        return stats
