"""A server's admission and queue: the hot path from `route` to a child, and how calls end.

`Admission` owns the bounded queue and the request counters. `route` is admission proper: the
server's rate limit, the breaker, then the least-loaded ready instance, the queue, or a refusal
at once ("busy", "unavailable"), so an overloaded server never makes a caller hang. `request_done`
is how every call ends (counters, latency, breaker, span) and lets the queue move; `cancel` and
`drop` take a client's calls back; `expire` ends what outlived its deadline (the `Sweeper` calls
it); `fail_queue` answers everything waiting when the server cannot serve it.

Its server is an `AdmissionHost`: the instances and the breaker are shared objects, read here
directly; the server's state is read when a refusal must say it.
"""

from __future__ import annotations

import collections
import logging
from typing import TYPE_CHECKING, Any, Protocol

from supervisor import errors
from supervisor.errors import rate_limited
from supervisor.policy import counters
from supervisor.policy.breaker import CLOSED, CircuitBreaker
from supervisor.policy.outcome import Outcome
from supervisor.policy.ratelimit import TokenBucket
from supervisor.policy.states import SERVING, State
from supervisor.policy.tool_policy import origin_of
from supervisor.telemetry import tracing
from supervisor.wire import protocol

from ..instance import Instance, Pending, Waiter
from .admission import Queued, least_loaded, retry_after_ms, shown, timeout_for
from .deadlines import Sweeper

if TYPE_CHECKING:
    from collections.abc import Callable

    from supervisor.config import ServerConfig
    from supervisor.wire.jsonrpc import Message, Sink

    from ..cluster_limits import ClusterLimiter

OK = Outcome.OK  # a module global: `outcome is OK` on the hot path
LATENCY_SAMPLES = 2048
log = logging.getLogger("mcp_supervisor.server")


class RequestDone(Protocol):
    """How an instance tells its server that a call ended (`InstanceOwner.request_done`)."""

    def __call__(self, instance: Instance, pending: Pending, outcome: Outcome = ...) -> None: ...


class AdmissionHost(Protocol):
    """What admission reads of its server, and what it asks of it."""

    @property
    def name(self) -> str: ...
    @property
    def config(self) -> ServerConfig: ...
    @property
    def state(self) -> State: ...
    @property
    def reason(self) -> str: ...
    def start_on_request(self) -> bool:
        """A stopped server a request may start (lazy, idle-stopped): start it, say True."""
    def refresh_serving(self) -> None:
        """The breaker changed: ready ⇄ degraded."""
    def probe_soon(self) -> None:
        """A call timed out: is the child hung? Probe it now rather than at the next round."""


class Admission:
    """The queue, the counters, and every rule that decides where a request goes."""

    def __init__(self, host: AdmissionHost, instances: list[Instance], ready: list[Instance],
                 breaker: CircuitBreaker, monotonic: Callable[[], float],
                 cluster_limits: ClusterLimiter | None) -> None:
        self.host = host
        self.instances = instances  # the server's lists, shared: read here, changed by the slots
        self.ready = ready
        self.breaker = breaker
        self._monotonic = monotonic
        self._cluster_limits = cluster_limits
        self.queue: collections.deque[Queued] = collections.deque()
        self.sweeper = Sweeper(self, monotonic)
        config = host.config
        self._bucket = (TokenBucket.for_limit(config.rate_limit, monotonic())
                        if config.rate_limit is not None else None)
        self.calls_total = 0
        self.errors_total = 0
        self.timeouts_total = 0
        self.busy_total = 0
        self.rate_limited_total = 0
        self.latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_SAMPLES)
        self.stats = counters.RequestStats()  # read by the Prometheus collector at scrape time
        self.last_active = monotonic()  # when a client request last finished (idle stop)

    @property
    def in_flight(self) -> int:
        return sum(len(inst.pending) for inst in self.instances)

    def latency_quantiles(self, *quantiles: float) -> tuple[float | None, ...]:
        """Of the recent latencies (seconds): one value per quantile, None before any call."""
        ordered = sorted(self.latencies)
        if not ordered:
            return tuple(None for _ in quantiles)
        return tuple(ordered[min(len(ordered) - 1, int(len(ordered) * q))] for q in quantiles)

    @property
    def busy(self) -> bool:
        """Anything queued or in a child (the sweeper has work)."""
        return bool(self.queue) or any(inst.pending for inst in self.instances)

    # ---- the hot path ---------------------------------------------------------------------------

    def route(self, sink: Sink, message: Message, client_modern: bool) -> None:
        """Admission proper: an instance, the queue, or a refusal. The cache worker calls this
        for Redis misses. The server's rate limit is checked here, after the cache: a hit never
        reaches the child, so it does not spend the child's (often an upstream API's) quota."""
        bucket = self._bucket
        if bucket is not None:
            shared = self._cluster_limits
            limit = self.host.config.rate_limit
            if shared is not None:
                assert limit is not None
                shared.check(f"server:{self.host.name}:{limit.text}", limit, bucket,
                             lambda wait: self._rate_checked(sink, message, client_modern, wait))
                return
            if not bucket.take(self._monotonic()):
                self.refuse_rate_limited(sink, message, bucket.retry_after(self._monotonic()))
                return
        self._admit(sink, message, client_modern)

    def _rate_checked(self, sink: Sink, message: Message, client_modern: bool, wait: float) -> None:
        """The cluster's bucket answered (a moment after `route`): refuse, or admit as usual."""
        if wait:
            self.refuse_rate_limited(sink, message, wait)
        else:
            self._admit(sink, message, client_modern)

    def _admit(self, sink: Sink, message: Message, client_modern: bool) -> None:
        if self.breaker.state is not CLOSED and not self._breaker_allows(sink, message):
            return
        ready = self.ready
        config = self.host.config
        limit = config.max_in_flight
        inst = None
        if len(ready) == 1:
            only = ready[0]
            if len(only.pending) - (only.parked if limit > 1 else 0) < limit and not only.draining:
                inst = only
        elif ready:
            inst = least_loaded(ready, limit)
        now = self._monotonic()
        if inst is not None and inst.stdin_backlog > inst.stdin_busy_at:
            self._refuse_busy(sink, message, f"'{self.host.name}' has {inst.stdin_backlog} bytes "
                              "waiting for it to read")
            return
        if inst is not None and not self.queue:
            inst.forward(sink, message, now + timeout_for(config, message), client_modern)
            sweeper = self.sweeper
            if sweeper.idle:
                sweeper.wake()
            return
        host = self.host
        if host.state not in SERVING and host.state not in (State.STARTING, State.BACKOFF) \
                and not host.start_on_request():  # else it waits in the queue for the child
            self.stats.refused(message["method"], Outcome.UNAVAILABLE)
            sink.deliver(errors.unavailable(
                message["id"], host.name, f"server '{host.name}' is {host.state}: {host.reason}",
                state=str(host.state), reason=host.reason))
            return
        if len(self.queue) >= config.max_queue:
            self._refuse_busy(sink, message, f"'{host.name}' has {self.in_flight} requests in "
                              f"flight and {len(self.queue)} queued")
            return
        self.queue.append(Queued(sink, message, now + timeout_for(config, message), client_modern, now))
        if self.sweeper.idle:
            self.sweeper.wake()

    def _refuse_busy(self, sink: Sink, message: Message, why: str) -> None:
        self.busy_total += 1
        self.stats.refused(message["method"], Outcome.BUSY)
        retry_ms = retry_after_ms(self.host.config.max_in_flight, len(self.ready), len(self.queue),
                                  self.latencies)
        sink.deliver(errors.busy(message["id"], self.host.name, why, retry_ms))

    def refuse_rate_limited(self, sink: Sink, message: Message, retry_after: float) -> None:
        self.rate_limited_total += 1
        name = self.host.name
        limit = self.host.config.rate_limit
        sink.deliver(rate_limited(message["id"], f"server '{name}' is over "
                                  f"{limit.text if limit else 'its limit'}", retry_after, name))

    def _breaker_allows(self, sink: Sink, message: Message) -> bool:
        breaker = self.breaker
        if breaker.allow():
            self.host.refresh_serving()  # open → half-open: the reason now says a trial is under way
            return True
        retry_ms = breaker.retry_after_ms()
        name = self.host.name
        sink.deliver(errors.circuit_open(
            message["id"], name,
            f"server '{name}' is failing fast: its circuit breaker opened after "
            f"{breaker.errors} failures within {breaker.window:g}s (last: {breaker.last_failure}); "
            f"it lets a trial call through in {retry_ms} ms", retry_ms, breaker.current()))
        return False

    def dispatch_queue(self) -> None:
        """Hand queued requests to instances with room, oldest first."""
        queue = self.queue
        limit = self.host.config.max_in_flight
        while queue:
            inst = least_loaded(self.ready, limit)
            if inst is None:
                return
            item = queue.popleft()
            inst.forward(item.sink, item.message, item.deadline, item.client_modern)

    # ---- how calls end --------------------------------------------------------------------------

    def request_done(self, instance: Instance, pending: Pending, outcome: Outcome = OK) -> None:
        if pending.span is not None and tracing.active is not None:
            tracing.active.end(pending.span, None, None if outcome is OK else outcome.label)
        if not isinstance(pending.sink, Waiter):  # the daemon's own requests are not traffic
            now = self._monotonic()
            self.calls_total += 1
            self.last_active = now
            elapsed = now - pending.started
            self.latencies.append(elapsed)
            self.stats.record(pending.method, outcome, elapsed)
            if outcome is not OK:
                self.errors_total += 1
                self._settle(pending, outcome)
            elif self.breaker.state is not CLOSED and self.breaker.success():
                log.info("%s: circuit breaker closed: a trial call succeeded", self.host.name)
                self.host.refresh_serving()
        if instance.draining and not instance.pending:
            instance.drained.set()
        if self.queue:
            self.dispatch_queue()

    def slot_freed(self) -> None:
        """A call in a child stopped holding its slot without ending (parked for its client's
        input_required retry): a queued request may take it."""
        if self.queue:
            self.dispatch_queue()

    def _settle(self, pending: Pending, outcome: Outcome) -> None:
        """A call that did not end OK, told to the breaker (which opens or, for a trial that got an
        answer, closes)."""
        if getattr(pending.sink, "awaiting_client", False):
            # Parked for an input_required retry that never came (the call timed out, or the
            # child gave up waiting for the answer): the client left, the child is fine.
            self.breaker.neutral()
            return
        if outcome is Outcome.TIMEOUT:
            self.host.probe_soon()
        if self.breaker.settle(outcome, shown(pending.method)):
            if self.breaker.state is CLOSED:
                log.info("%s: circuit breaker closed: a trial call succeeded", self.host.name)
            else:
                log.warning("%s: %s", self.host.name, self.breaker.describe())
            self.host.refresh_serving()

    def cancel(self, sink: Sink, client_id: Any, reason: str) -> bool:
        """Drop the client's request from the queue, or cancel it in the child."""
        for item in self.queue:
            if origin_of(item.sink) is sink and item.message.get("id") == client_id:
                self.queue.remove(item)
                return True
        for inst in self.instances:
            for cid, pending in list(inst.pending.items()):
                if origin_of(pending.sink) is sink and pending.client_id == client_id:
                    inst.cancel(cid, reason)
                    self.request_done(inst, pending, Outcome.CANCELLED)
                    return True
        return False

    def drop(self, sink: Sink) -> int:
        """The client went away: forget its queued requests and cancel its in-flight ones."""
        dropped = 0
        if self.queue:
            kept = collections.deque(q for q in self.queue if origin_of(q.sink) is not sink)
            dropped += len(self.queue) - len(kept)
            self.queue = kept
        for inst in self.instances:
            for cid, pending in list(inst.pending.items()):
                if origin_of(pending.sink) is sink:
                    inst.cancel(cid, "the client disconnected")
                    self.request_done(inst, pending, Outcome.CANCELLED)
                    dropped += 1
        return dropped

    def expire(self, now: float) -> None:
        """End every call and queued request whose deadline is `now` or earlier."""
        for inst in list(self.instances):
            for pending in inst.expire(now):
                self.timeouts_total += 1
                self.request_done(inst, pending, Outcome.TIMEOUT)
        if self.queue and any(item.deadline <= now for item in self.queue):
            host = self.host
            kept: collections.deque[Queued] = collections.deque()
            for item in self.queue:
                if item.deadline <= now:
                    self.timeouts_total += 1
                    self.errors_total += 1
                    self.stats.refused(item.message["method"], Outcome.TIMEOUT)
                    # A server that is up but cannot keep up is failing; one still starting is not.
                    if host.state in SERVING and self.breaker.failure(
                            f"{shown(item.message['method'])} timed out in the queue"):
                        host.refresh_serving()
                    item.sink.deliver(errors.timed_out(
                        item.message["id"], host.name,
                        f"server '{host.name}' could not take the request within "
                        f"{now - item.enqueued:.1f}s ({host.state}: {host.reason or 'busy'})"))
                else:
                    kept.append(item)
            self.queue = kept

    def fail_queue(self, reason: str, *, only_unsafe: bool = False) -> None:
        """Answer every queued request "unavailable" (with `only_unsafe`, keep the ones that are
        safe to send to the next child)."""
        kept: collections.deque[Queued] = collections.deque()
        for item in self.queue:
            if only_unsafe and item.message.get("method") in protocol.RETRY_SAFE_METHODS:
                kept.append(item)
                continue
            self.stats.refused(item.message["method"], Outcome.UNAVAILABLE)
            item.sink.deliver(errors.unavailable(item.message["id"], self.host.name, reason))
        self.queue = kept
