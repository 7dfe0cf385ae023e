"""Node registry: each daemon of a cluster says it is alive in the shared Redis.

Every `[cluster] heartbeat` a node writes one key, `mcps:node:<name>`, holding a small summary
(pid, version, whether it drains, its servers' states) with a time to live of three beats: a node
that dies simply disappears after that, with nobody to tell. `mcpctl status --cluster` reads every
node's key. There is no membership protocol, no leader and no consensus: the balancer decides
where traffic goes (from /healthz), and Redis only remembers who said hello recently.

The registry is its own failure domain: Redis down, slow or full costs the listing, never a call
and never the daemon; an outage is said once when it starts and once when it ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import orjson

log = logging.getLogger("mcp_supervisor.cluster")

KEY_PREFIX = "mcps:node:"
TIMEOUT = 2.0  # one Redis operation of the registry
MAX_NODES = 1000  # what a listing reads at most


class NodeRegistry:
    def __init__(self, url: str, node: str, interval: float,
                 summary: Callable[[], dict[str, Any]]) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.node = node
        self.interval = interval
        self.summary = summary
        self.failing: str | None = None
        self._redis = Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT,
                                     max_connections=4, retry=Retry(NoBackoff(), 0),
                                     health_check_interval=0)

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.node

    async def run(self) -> None:
        """Beat until cancelled; then take this node's key away (a clean exit is not a death)."""
        try:
            while True:
                await self.beat()
                await anyio.sleep(self.interval)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(TIMEOUT):
                await self._quietly("leave", self._redis.delete(self.key))
            with anyio.CancelScope(shield=True), anyio.move_on_after(TIMEOUT):
                await self._redis.aclose()

    async def beat(self) -> None:
        entry = {"node": self.node, "at": time.time(), **self.summary()}
        ttl_ms = int(self.interval * 3 * 1000)
        await self._quietly("heartbeat", self._redis.set(self.key, orjson.dumps(entry), px=ttl_ms))

    async def nodes(self) -> list[dict[str, Any]]:
        """Every node that beat within its time to live, by name; raises OSError-like errors
        (the caller says Redis is unreachable)."""
        keys: list[bytes] = []
        with anyio.fail_after(TIMEOUT * 2):
            async for key in self._redis.scan_iter(match=KEY_PREFIX + "*", count=500):
                keys.append(key)
                if len(keys) >= MAX_NODES:
                    break
            values = await self._redis.mget(keys) if keys else []
        found = []
        for raw in values:
            try:
                entry = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                continue  # not ours to interpret; someone else wrote under our prefix
            if isinstance(entry, dict) and isinstance(entry.get("node"), str):
                found.append(entry)
        return sorted(found, key=lambda e: str(e["node"]))

    async def _quietly(self, what: str, operation: Any) -> None:
        try:
            with anyio.fail_after(TIMEOUT):
                await operation
        except Exception as exc:  # a Redis outage is this loop's business, not the daemon's
            text = f"{type(exc).__name__}: {exc}"
            if self.failing is None:
                log.warning("cluster registry: %s failed (%s); this node is not listed until "
                            "Redis answers again", what, text)
            self.failing = text
            return
        if self.failing is not None:
            log.info("cluster registry: Redis answers again; node %s listed", self.node)
            self.failing = None
