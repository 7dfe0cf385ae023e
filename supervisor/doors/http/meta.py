"""The door's paths that are not MCP: `GET /` (an index of the doors), `/healthz`, `/metrics`.

    GET    /healthz    200 {"status": "ok", "ready": n, "total": m} (the daemon's own answer, 503
                       while starting or draining, when it sets one)
    GET    /metrics    Prometheus exposition (bearer token when one is set: the door checks it)
    GET    /           a short JSON index of these doors (no server names: those need the token)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE

from supervisor.policy.states import SERVING

from .replies import Scope, Send, _send_empty, _send_json

if TYPE_CHECKING:
    from supervisor.core.fleet import Fleet

# What `GET /` answers: where the doors are, for a person or a client pointed at the bare address.
INDEX = {
    "name": "mcp-supervisor",
    "doors": {
        "/mcp": "Streamable HTTP MCP: the aggregate of every ready server (tools named SERVER__tool)",
        "/mcp/{server}": "Streamable HTTP MCP: one server",
        "/healthz": "liveness and how many servers are ready",
        "/metrics": "Prometheus metrics",
    },
}


async def index(send: Send) -> None:
    await _send_json(send, 200, INDEX)  # the doors, not the servers: no token needed


async def metrics(scope: Scope, send: Send, text: Callable[[], bytes] | None) -> None:
    """Prometheus exposition (`text`: the daemon's collector); behind the bearer token (checked
    by the caller) like everything but /healthz."""
    if scope["method"] != "GET":
        await _send_empty(send, 405, [(b"allow", b"GET")])
        return
    if text is None:
        await _send_empty(send, 404)
        return
    body = text()
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", METRICS_CONTENT_TYPE.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def healthz(send: Send, health: Callable[[], tuple[int, dict[str, Any]]] | None,
                  fleet: Fleet) -> None:
    """`health`: the daemon's status and body, when it set one; else how many servers serve."""
    if health is not None:
        status, payload = health()
        await _send_json(send, status, payload)
        return
    servers = fleet.servers.values()
    ready = sum(1 for s in servers if s.state in SERVING)
    await _send_json(send, 200, {"status": "ok", "ready": ready, "total": len(fleet.servers)})
