"""Admission's rules: which instance takes a request, its deadline, when to retry a refusal, and
the answer to a call the child cannot serve.

Pure functions of what the server knows at that instant; `Server` applies them on the hot path
(`submit` → `route` → `_admit`), and `Queued` is one request waiting for a free slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from supervisor.errors import METHOD_NOT_FOUND
from supervisor.policy import counters
from supervisor.wire import protocol
from supervisor.wire.jsonrpc import error_response

if TYPE_CHECKING:
    from supervisor.config import ServerConfig
    from supervisor.wire.jsonrpc import Message, Sink

    from ..instance import Instance


class Queued:
    """A request waiting in a server's bounded queue for an instance with room."""

    __slots__ = ("client_modern", "deadline", "enqueued", "message", "sink")

    def __init__(self, sink: Sink, message: Message, deadline: float, client_modern: bool,
                 enqueued: float) -> None:
        self.sink = sink
        self.message = message
        self.deadline = deadline
        self.client_modern = client_modern
        self.enqueued = enqueued


def least_loaded(ready: Sequence[Instance], limit: int) -> Instance | None:
    """The ready instance with the fewest requests in flight, under `limit`, not draining and
    reading its stdin; the first on a tie. None when every one is full."""
    best = None
    best_load = limit
    for inst in ready:
        # A call parked for its client's input_required retry holds no slot, except where one
        # call at a time is the promise (max_in_flight = 1): there it keeps the child, which is
        # also what tells whose call the child's next question belongs to.
        load = len(inst.pending) - (inst.parked if limit > 1 else 0)
        if load < best_load and not inst.draining and inst.stdin_backlog <= inst.stdin_busy_at:
            best = inst
            best_load = load
    return best


def timeout_for(config: ServerConfig, message: Message) -> float:
    """The request's time limit: its tool's `tool_timeouts` entry, else `request_timeout`."""
    overrides = config.tool_timeouts
    if overrides and message.get("method") == "tools/call":
        params = message.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        if isinstance(name, str) and name in overrides:
            return overrides[name]
    return config.request_timeout


def retry_after_ms(max_in_flight: int, ready: int, queued: int, latencies: Sequence[float]) -> int:
    """When a refused caller should try again: the typical call's time, scaled by how many
    capacities' worth of requests wait ahead of it (at least 10 ms)."""
    capacity = max(1, max_in_flight * max(1, ready))
    typical = sorted(latencies)[len(latencies) // 2] if latencies else 0.05
    return max(10, int(1000 * typical * (queued / capacity + 1)))


def shown(method: str) -> str:
    """A client's method name as shown in reasons and errors: bounded like its metric label."""
    limit = counters.MAX_METHOD_LENGTH
    return method if len(method) <= limit else method[:limit] + "…"


def undeclared_answer(server: str, message: Message, capability: str, client_modern: bool) -> Message:
    """Capability-aware routing: the answer to a call the child said it cannot serve (it never
    sees it). An empty list is the right answer to a list method; anything else is unknown."""
    method = message["method"]
    list_key = protocol.LIST_ITEMS.get(method)
    if list_key is not None:
        result: dict[str, Any] = {list_key[0]: []}
        if client_modern:
            protocol.modernize_result({"result": result}, method)
        return {"jsonrpc": "2.0", "id": message["id"], "result": result}
    return error_response(
        message["id"], METHOD_NOT_FOUND,
        f"Method not found: server '{server}' does not declare the "
        f"'{capability}' capability, so it does not serve {method}")
