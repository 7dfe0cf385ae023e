"""Which requests the cache answers, and how hits, misses, single-flight and invalidation flow.

One `CacheHub` per daemon holds the backends (the embedded `MemoryCache`, and a `RedisCache` when
`[cache] backend = "redis"`) and the counters. Each `Server` has a `CacheFront` that decides, on the
hot path, what happens to one request:

    Server.submit ── method not in front.methods ─────────────────────────────▶ the child
        │                                  (a frozenset test: all a non-cacheable request pays)
        └─ front.intercept
              ├─ not cacheable (tool not opted in, inputResponses/requestState, odd params) ▶ child
              ├─ identical request in flight ─────────▶ join its Flight (single-flight)
              ├─ memory hit ──────────────────────────▶ answered here, synchronously
              ├─ redis backend, breaker not open ─────▶ the server's cache worker: MGET, then hit
              │                                         (answer) or miss (route the Flight)
              └─ miss ────────────────────────────────▶ the child, with the Flight as its sink

A Flight answers every waiter when the child replies, and only then offers the result for storage:
memory stores synchronously after delivery (microseconds, no await), Redis stores are queued for
the worker, so the caller never waits for a store.

Why one worker task per server for Redis, rather than a task per miss: `Server.submit` is
synchronous and must stay cheap, so a lookup can only be handed off. A single consumer per server
keeps the number of concurrent Redis operations bounded (no task storm when Redis is slow), turns a
burst of lookups into one MGET and a burst of stores into one pipeline, and applies invalidations
strictly before any later lookup (a list_changed never lets a stale list back in). Every Redis
operation is bounded by the configured timeout and a breaker stops trying after repeated failures,
so a queued lookup waits at most about one timeout behind another.

What is cacheable (DESIGN.md section 5):
- lists (tools/prompts/resources/templates, every page) unless `lists = false`; until invalidated
  by the matching list_changed, by a child restart or by a config change (which changes the
  fingerprint in every key), or for `ttlMs` when a modern child gives one;
- tool results only for tools matching `[servers.X.cache] tools` globs; never `isError`; a tool
  annotated `destructiveHint: true` only when listed by its exact name; for `ttlMs` if given, else
  the server's `ttl`, else `[cache] ttl`;
- `resources/read` of a modern child only when the result carries `ttlMs > 0`;
- never an `input_required` result, never a retry carrying `inputResponses` / `requestState`;
- `cacheScope: "private"` results never go to Redis: they stay in this daemon's memory tier. The
  child only ever talks to the daemon, never to the end client, so the daemon is the one "client"
  a private result can belong to.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import time
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from supervisor.config import CacheSettings, ServerConfig
from supervisor.wire import protocol
from supervisor.wire.jsonrpc import Message, trimmed

from .store import KEY_ROOT, Clock, Entry, MemoryCache, RedisCache

if TYPE_CHECKING:
    from supervisor.core.instance import Instance
    from supervisor.wire.jsonrpc import Sink

Route = Callable[["Sink", Message, bool], None]
"""How a miss reaches the child: the server's admission (`Server.route`), past the cache."""

log = logging.getLogger("mcp_supervisor.caching")

# Lists live until invalidated; in a shared Redis they also expire, so keys of fingerprints that no
# daemon runs any more do not pile up.
SHARED_LIST_TTL = 3600.0
BATCH = 256
STORE_BACKLOG_BYTES = 8 * 1024 * 1024  # answers waiting to be written to Redis, per server
_SORT = orjson.OPT_SORT_KEYS
_dumps = orjson.dumps
# Canonical params up to this many bytes are the key themselves: hashing them cost more than the
# rest of a memory hit (blake2b and its hex digest, ~2 µs). Longer ones are hashed to bound the key.
# A raw key starts with "{", a hashed one is 32 hex digits: the two can never collide.
RAW_KEY_BYTES = 128
# An answer line of a hit is LINE_HEAD, the caller's id as JSON, then the stored `Answer.line_tail`.
LINE_HEAD = b'{"jsonrpc":"2.0","id":'
_LINE_RESULT = b',"result":'
_LINE_END = b"}\n"


def fingerprint(config: ServerConfig, tools: list[dict[str, Any]]) -> str:
    """The server's config entry and its tools list: equal on any daemon running the same server."""
    blob = config.fingerprint().encode() + orjson.dumps(tools, option=_SORT)
    return hashlib.sha256(blob).hexdigest()[:16]


def cacheable_tools(tools: list[dict[str, Any]], globs: tuple[str, ...]) -> frozenset[str]:
    """Tool names whose results may be cached: matching a glob, and not annotated destructive
    unless named exactly. (Tools absent from the list are never cached.)"""
    exact = set(globs)
    names = set()
    for tool in tools:
        name = tool.get("name")
        if not isinstance(name, str):
            continue
        listed = name in exact
        if not listed and not any(fnmatchcase(name, pattern) for pattern in globs):
            continue
        annotations = tool.get("annotations")
        if isinstance(annotations, dict) and annotations.get("destructiveHint") is True and not listed:
            continue
        names.add(name)
    return frozenset(names)


def result_ttl(method: str, result: dict[str, Any], tool_ttl: float) -> tuple[bool, float | None]:
    """(store it?, seconds or None for "until invalidated") for a successful result."""
    if result.get("isError") is True:
        return False, None
    kind = result.get("resultType")
    if kind is not None and kind != "complete":  # input_required and anything we do not know
        return False, None
    ttl_ms = result.get("ttlMs")
    given = ttl_ms / 1000 if isinstance(ttl_ms, int | float) and ttl_ms > 0 else None
    if method in protocol.LIST_METHODS:
        return True, given
    if method == "tools/call":
        return True, given if given is not None else tool_ttl
    return given is not None, given  # resources/read: only when the server says how long


class Answer:
    """A result in the memory tier. `line_tail` is the end of its answer line, everything after
    the id (the result's JSON is encoded once, when stored): a hit for a sink that writes lines
    (`deliver_answer_line`) is LINE_HEAD, the caller's id and this, joined; nothing is decoded
    or encoded again but the id. `result` is for every other sink."""

    __slots__ = ("line_tail", "result")

    def __init__(self, result: dict[str, Any], encoded: bytes) -> None:
        self.result = result
        # A join allocates exactly its length: `encoded` (orjson's buffer) is not kept.
        self.line_tail = b"".join((_LINE_RESULT, encoded, _LINE_END))


def _key_heads(prefix: str, methods: frozenset[str]) -> dict[str, tuple[bytes, bytes]]:
    """Per method, the start of its keys for (legacy, modern) clients: built once per
    configuration, so a lookup joins these bytes to the canonical params' bytes (a key is bytes:
    it is never decoded)."""
    return {method: (f"{prefix}{method}:l:".encode(), f"{prefix}{method}:m:".encode())
            for method in methods}


class Flight:
    """One cacheable request on its way to the child, and everyone waiting for its answer.

    It is the sink the child's answer is delivered to; it fans the answer out to each waiter under
    their own request id, then offers it to the cache.
    """

    __slots__ = ("epoch", "front", "key", "leader", "method", "routed_id", "waiters")

    def __init__(self, front: CacheFront, key: bytes, method: str, sink: Sink, client_id: Any) -> None:
        self.front = front
        self.key = key
        self.method = method
        self.leader = sink
        self.routed_id = client_id  # the id the child request is known by in `pending`
        self.waiters: list[tuple[Sink, Any]] = [(sink, client_id)]
        self.epoch = front.epoch

    def deliver(self, message: Message) -> None:
        if "method" in message:
            # A notification about the request (progress): its token is the leader's.
            if any(sink is self.leader for sink, _ in self.waiters):
                self.leader.deliver(message)
            return
        self.front.landed(self)
        for sink, client_id in self.waiters:
            sink.deliver({**message, "id": client_id})
        if "result" in message:
            self.front.store(self, message["result"])

    def answer(self, result: Any) -> None:
        self.front.landed(self)
        for sink, client_id in self.waiters:
            sink.deliver({"jsonrpc": "2.0", "id": client_id, "result": result})

    def forward_server_request(self, instance: Instance, message: Message) -> bool:
        forward = getattr(self.leader, "forward_server_request", None)
        if forward is None or not any(sink is self.leader for sink, _ in self.waiters):
            return False
        return bool(forward(instance, message))


class CacheFront:
    """One server's view of the cache: its key prefix, its tool policy, its flights and worker."""

    # Slots: a hit reads and bumps attributes of the front; a slot is cheaper than a dict entry.
    __slots__ = ("_clock", "_deletes", "_find", "_heads", "_lookups", "_ready_seen", "_store_bytes",
                 "_stores", "_touch", "_wake", "_worker_running", "coalesced", "config", "epoch", "flights",
                 "hits", "hub", "methods", "misses", "modern", "name", "prefix", "route", "stores_dropped",
                 "tool_ttl", "tools")

    def __init__(self, hub: CacheHub, config: ServerConfig, route: Route) -> None:
        self.hub = hub
        self.config = config  # what it caches never changes without a new server (and front)
        self.route = route
        self.name = config.name
        # The memory tier's read of a hit, without a Python call (`MemoryCache` says how).
        self._find, self._touch, self._clock = hub.local.find, hub.local.touch, hub.local.clock
        self.methods: frozenset[str] = frozenset()
        self._heads: dict[str, tuple[bytes, bytes]] = {}
        self.flights: dict[bytes, Flight] = {}
        self.epoch = 0
        self.prefix = f"{KEY_ROOT}{self.name}:-:"
        self.tools: frozenset[str] = frozenset()
        self.tool_ttl = hub.settings.ttl
        self.hits = 0
        self.misses = 0
        self.coalesced = 0
        self.modern = False
        self._ready_seen = False
        self._lookups: collections.deque[tuple[Flight, Message, bool]] = collections.deque()
        self._stores: collections.deque[tuple[bytes, bytes, float]] = collections.deque()
        self._store_bytes = 0  # of the answers in `_stores`
        self.stores_dropped = 0
        self._deletes: collections.deque[str] = collections.deque()
        self._wake = anyio.Event()
        self._worker_running = False
        self.configure([])

    # ---- policy -------------------------------------------------------------------------------

    def configure(self, tools: list[dict[str, Any]]) -> None:
        config = self.config
        self.prefix = f"{KEY_ROOT}{self.name}:{fingerprint(config, tools)}:"
        self.tools = cacheable_tools(tools, config.cache.tools)
        self.tool_ttl = config.cache.ttl if config.cache.ttl is not None else self.hub.settings.ttl
        methods: set[str] = set()
        if config.cache.lists:
            methods.update(protocol.LIST_METHODS)
        if self.tools:
            methods.add("tools/call")
        if self.modern:
            methods.add("resources/read")
        self.methods = frozenset(methods)
        self._heads = _key_heads(self.prefix, self.methods)

    def child_ready(self, instance: Instance) -> None:
        """A child finished its handshake: new fingerprint; after a restart, lists are stale."""
        restarted = self._ready_seen
        self._ready_seen = True
        self.modern = instance.modern
        self.tools_changed(instance.tools)
        if restarted:
            self.invalidate(protocol.LIST_METHODS)

    def tools_changed(self, tools: list[dict[str, Any]]) -> None:
        old = self.prefix
        self.configure(tools)
        if self.prefix != old:
            # A new tools list is a new fingerprint: nothing under the old one can be asked for
            # again here. (Redis keeps them until their TTL: another daemon may still use them.)
            self.epoch += 1
            self.hub.local.delete_prefix_now(old)

    def notification(self, method: str) -> None:
        methods = protocol.LIST_CHANGED.get(method)
        if methods is not None:
            self.invalidate(methods)

    def invalidate(self, methods: tuple[str, ...]) -> None:
        """Drop these lists now (memory) or before any later lookup (Redis); results already on
        their way from the child are not stored (the epoch moved)."""
        self.epoch += 1
        for method in methods:
            prefix = f"{self.prefix}{method}:"
            self.hub.local.delete_prefix_now(prefix)
            if self.hub.redis is not None and self._worker_running:
                if self._stores:
                    stale = prefix.encode()
                    self._stores = collections.deque(s for s in self._stores if not s[0].startswith(stale))
                    self._store_bytes = sum(len(s[1]) for s in self._stores)
                # An outage must not pile up the same invalidation: one may be under way (the head
                # of the queue, mid-SCAN) and one more after it covers all that came since.
                if self._deletes.count(prefix) < 2:
                    self._deletes.append(prefix)
                self._wake.set()

    # ---- the hot path -------------------------------------------------------------------------

    def intercept(self, sink: Sink, message: Message, client_modern: bool) -> Sink | None:
        """None when answered or joined here; else the sink to route the request with."""
        method = message["method"]
        heads = self._heads.get(method)
        if heads is None:
            return sink
        params = message.get("params")
        if params is None:
            if method == "tools/call":
                return sink
            canonical = b"{}"
        else:
            if params.__class__ is not dict:
                return sink
            if method == "tools/call":
                name = params.get("name")
                if name.__class__ is not str or name not in self.tools:
                    return sink
            if "inputResponses" in params or "requestState" in params:
                return sink
            if "_meta" in params:  # progress tokens and the 2026 envelope: not part of the question
                params = dict(params)
                del params["_meta"]
            try:
                canonical = _dumps(params, option=_SORT)
            except orjson.JSONEncodeError:
                return sink
        key = heads[client_modern] + (
            canonical if len(canonical) <= RAW_KEY_BYTES
            else hashlib.blake2b(canonical, digest_size=16).hexdigest().encode())
        # The memory tier first: a key is never both stored and in flight (a flight's answer is
        # stored only after the flight left `flights`), so a hit need not look at the flights.
        entry: Entry | None = self._find(key)
        if entry is not None:
            expires = entry.expires
            if expires is None or self._clock() < expires:
                self._touch(key)
                self.hits += 1
                answer: Answer = entry.value
                msg_id = message["id"]
                lines = getattr(sink, "deliver_answer_line", None)
                if lines is not None:
                    lines(msg_id, b"".join((LINE_HEAD, _dumps(msg_id), answer.line_tail)), answer.result)
                else:
                    sink.deliver({"jsonrpc": "2.0", "id": msg_id, "result": answer.result})
                return None
            self.hub.local.drop(key)  # stale: a miss
        flight = self.flights.get(key)
        if flight is not None:
            flight.waiters.append((sink, message["id"]))
            self.coalesced += 1
            return None
        flight = Flight(self, key, method, sink, message["id"])
        self.flights[key] = flight
        redis = self.hub.redis
        if redis is not None and self._worker_running and redis.breaker.may_try():
            self._lookups.append((flight, message, client_modern))
            self._wake.set()
            return None
        self.misses += 1
        return flight

    def landed(self, flight: Flight) -> None:
        if self.flights.get(flight.key) is flight:
            del self.flights[flight.key]

    def store(self, flight: Flight, result: Any) -> None:
        """Called after the answer went out to every waiter."""
        if flight.epoch != self.epoch or result.__class__ is not dict:
            return
        keep, ttl = result_ttl(flight.method, result, self.tool_ttl)
        if not keep:
            return
        encoded = orjson.dumps(result)
        if self.hub.redis is None or result.get("cacheScope") == "private" or not self._worker_running:
            # The Answer keeps its line tail, a join: an allocation of its own size, not orjson's
            # buffer of 4 KiB or more (wire.jsonrpc.trimmed; tests/test_wire_memory.py).
            self.hub.local.put(flight.key, Answer(result, encoded), len(encoded), ttl)
            return
        # Stores wait for a worker that may be slowed by Redis: bounded in bytes (and each kept in
        # an allocation of its own size, so the bound is the memory); the oldest give way, since
        # a store is only a saving, never something a client waits for.
        encoded = trimmed(encoded)
        stores = self._stores
        stores.append((flight.key, encoded, ttl if ttl is not None else SHARED_LIST_TTL))
        self._store_bytes += len(encoded)
        while self._store_bytes > STORE_BACKLOG_BYTES and len(stores) > 1:
            self._store_bytes -= len(stores.popleft()[1])
            self.stores_dropped += 1
        self._wake.set()

    # ---- leaving --------------------------------------------------------------------------------

    def withdraw(self, sink: Sink, client_id: Any) -> tuple[bool, Flight | None]:
        """A client cancelled `client_id`: (held, orphan). `held` when a flight held it; `orphan`
        is that flight once nobody waits for it any more: the caller cancels the shared request
        (queued or in the child) by the flight and its `routed_id`. A flight still waiting for
        Redis is dropped by the worker."""
        if not self.flights:
            return False, None
        flight = self.leave(sink, client_id)
        if flight is None:
            return False, None
        return True, None if flight.waiters else flight

    def leave(self, sink: Sink, client_id: Any) -> Flight | None:
        """Take one waiter out of whichever flight holds it; the flight, or None."""
        for flight in self.flights.values():
            for index, (waiter, wid) in enumerate(flight.waiters):
                if waiter is sink and wid == client_id:
                    del flight.waiters[index]
                    if not flight.waiters:
                        self.landed(flight)
                    return flight
        return None

    def leave_all(self, sink: Sink) -> list[Flight]:
        """A client went away: take it out of every flight; the flights nobody waits for now."""
        emptied: list[Flight] = []
        if not self.flights:
            return emptied
        for flight in list(self.flights.values()):
            flight.waiters = [(w, wid) for w, wid in flight.waiters if w is not sink]
            if not flight.waiters:
                self.landed(flight)
                emptied.append(flight)
        return emptied

    # ---- the Redis worker -----------------------------------------------------------------------

    @property
    def needs_worker(self) -> bool:
        return self.hub.redis is not None

    async def worker(self) -> None:
        """Consume this server's Redis work in order: invalidations, then stores, then lookups."""
        redis = self.hub.redis
        assert redis is not None
        self._worker_running = True
        try:
            while True:
                if self._deletes and redis.breaker.may_try():
                    # An invalidation that failed stays queued (and keeps lookups under it off
                    # Redis) until it succeeds: a list_changed must not be lost to an outage.
                    if await redis.delete_prefix(self._deletes[0]) >= 0:
                        self._deletes.popleft()
                elif self._stores:
                    stores = [self._stores.popleft() for _ in range(min(BATCH, len(self._stores)))]
                    self._store_bytes -= sum(len(item[1]) for item in stores)
                    await redis.put_many(stores)
                elif self._lookups:
                    await self._lookup([self._lookups.popleft()
                                        for _ in range(min(BATCH, len(self._lookups)))], redis)
                else:
                    self._wake = anyio.Event()
                    with anyio.move_on_after(redis.breaker.retry_in() if self._deletes else None):
                        await self._wake.wait()
        finally:
            self._worker_running = False
            # Anything still queued goes to the child rather than waiting for a worker that is gone.
            lookups, self._lookups = self._lookups, collections.deque()
            for flight, message, client_modern in lookups:
                if flight.waiters:
                    self.route(flight, message, client_modern)

    async def _lookup(self, batch: list[tuple[Flight, Message, bool]], redis: RedisCache) -> None:
        # Invalidated but not yet deleted in Redis: never read those.
        stale = tuple(prefix.encode() for prefix in self._deletes)
        keys = [flight.key for flight, _, _ in batch]
        asked = [key for key in keys if not (stale and key.startswith(stale))]
        found = dict(zip(asked, await redis.get_many(asked), strict=True)) if asked else {}
        values = [found.get(key) for key in keys]
        for (flight, message, client_modern), value in zip(batch, values, strict=True):
            if not flight.waiters:
                continue  # everyone cancelled or left while we looked
            if value is not None:
                self.hits += 1
                flight.answer(value)
            else:
                self.misses += 1
                self.route(flight, message, client_modern)

    def status(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "coalesced": self.coalesced,
                "stores_dropped": self.stores_dropped}


class CacheHub:
    """The daemon's cache: backends, counters, and one front per server."""

    def __init__(self, settings: CacheSettings, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self.local = MemoryCache(settings.max_entries, settings.max_bytes, clock)
        self.redis = (RedisCache(settings.url, settings.timeout, clock)
                      if settings.backend == "redis" else None)
        self.fronts: dict[str, CacheFront] = {}
        self._retired = collections.Counter[str]()

    def front(self, config: ServerConfig, route: Route) -> CacheFront:
        """A new front for the server `config` describes; a miss goes to `route`."""
        old = self.fronts.get(config.name)
        if old is not None:
            self.retire(old)
        front = CacheFront(self, config, route)
        self.fronts[config.name] = front
        return front

    def retire(self, front: CacheFront) -> None:
        """A server was removed or its config changed: its entries can never be asked for again."""
        front.epoch += 1
        self.local.delete_prefix_now(front.prefix)
        self._retired.update(front.status())
        if self.fronts.get(front.name) is front:
            del self.fronts[front.name]

    async def clear(self, server: str | None) -> int:
        prefix = f"{KEY_ROOT}{server}:" if server else KEY_ROOT
        for front in self.fronts.values():
            if server is None or front.name == server:
                front.epoch += 1
        cleared = self.local.delete_prefix_now(prefix)
        if self.redis is not None:
            cleared += max(0, await self.redis.delete_prefix(prefix))
        return cleared

    def counters(self) -> dict[str, Any]:
        """Hits, misses and errors so far: cheap and synchronous, for metrics scrapes."""
        fronts = self.fronts.values()
        return {
            "backend": self.settings.backend,
            "hits": self._retired["hits"] + sum(f.hits for f in fronts),
            "misses": self._retired["misses"] + sum(f.misses for f in fronts),
            "errors": self.redis.errors if self.redis is not None else 0,
        }

    async def status(self) -> dict[str, Any]:
        fronts = self.fronts.values()
        entries = len(self.local)
        status: dict[str, Any] = {
            **self.counters(),
            "entries": entries,
            "coalesced": self._retired["coalesced"] + sum(f.coalesced for f in fronts),
            "stores_dropped": self._retired["stores_dropped"] + sum(f.stores_dropped for f in fronts),
            "memory": self.local.stats(),
            "servers": {f.name: f.status() for f in fronts},
        }
        if self.redis is not None:
            shared = await self.redis.count()
            status["redis"] = {**self.redis.stats(), "entries": shared}
            status["entries"] = entries + (shared or 0)
        return status

    async def aclose(self) -> None:
        await self.local.aclose()
        if self.redis is not None:
            await self.redis.aclose()
