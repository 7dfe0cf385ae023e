"""What `mcpctl status` and the dashboard show of one server: its status row, and its detail.

Built when asked (a status call, a dashboard refresh, a metrics scrape), never on the hot path:
plain reads of the server (`Shown`) and of its parts, which each keep their own figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from supervisor.config.summary import summarize
from supervisor.policy.breaker import CLOSED
from supervisor.policy.states import State
from supervisor.telemetry.logs import REDACT

if TYPE_CHECKING:
    from supervisor.config import ServerConfig
    from supervisor.policy.breaker import CircuitBreaker

    from ..instance import Instance
    from .capacity import Capacity
    from .intake import Admission
    from .restarts import RestartBook
    from .tools import ToolPolicy


class Shown(Protocol):
    """The server's own facts that its status row shows."""

    @property
    def name(self) -> str: ...
    @property
    def config(self) -> ServerConfig: ...
    @property
    def state(self) -> State: ...
    @property
    def reason(self) -> str: ...
    @property
    def since(self) -> float: ...
    @property
    def instances(self) -> list[Instance]: ...
    @property
    def ready_instances(self) -> list[Instance]: ...
    @property
    def all_instances(self) -> list[Instance]: ...
    @property
    def tools(self) -> list[dict[str, Any]]: ...
    @property
    def target_instances(self) -> int: ...
    @property
    def last_exit(self) -> str | None: ...
    @property
    def last_stderr(self) -> list[str]: ...
    @property
    def protocol_errors_total(self) -> int: ...
    def variables(self) -> dict[str, list[str]]: ...


def detail(config: ServerConfig, states: list[dict[str, Any]], restarts: RestartBook) -> dict[str, Any]:
    """What `status` leaves out for size: recent history and the config (secrets masked)."""
    return {"state_history": states, "restart_history": list(restarts.history),
            "config": summarize(config)}


def status_row(server: Shown, now: float, admission: Admission, tools: ToolPolicy, capacity: Capacity,
               restarts: RestartBook, breaker: CircuitBreaker,
               clients: list[dict[str, Any]] | None) -> dict[str, Any]:
    """`now`: wall time; `clients`: a per-client server's instances and who owns each."""
    config = server.config
    pids = [inst.pid for inst in server.all_instances if inst.pid is not None]
    ready = server.ready_instances
    started = min((i.started_at for i in ready if i.started_at), default=None)
    memory = [i.memory_bytes for i in server.all_instances if i.memory_bytes is not None]
    first = ready[0] if ready else None
    visible = tools.visible(server.tools)
    policy = capacity.policy
    floor = capacity.slots.floor
    return {
        "name": server.name,
        "state": str(server.state),
        # A degraded server's reason counts down to the breaker's next trial call.
        "reason": (breaker.describe() if server.state == State.DEGRADED
                   and breaker.state is not CLOSED else server.reason),
        "since": server.since,
        "pid": pids[0] if pids else None,
        "pids": pids,
        "restarts": restarts.restarts,
        "restart_reasons": dict(restarts.reasons),
        "uptime_s": round(now - started, 3) if started else None,
        "memory_bytes": sum(memory) if memory else None,
        "memory_limit": config.memory_limit,
        "in_flight": admission.in_flight,
        "queued": len(admission.queue),
        "protocol_version": first.protocol_version if first else None,
        "era": ("modern" if first.modern else "legacy") if first else None,
        "tools": len(visible),
        "tools_hidden": len(server.tools) - len(visible),
        # Tools whose definition differs from the pinned one (the dashboard marks them).
        "tool_changes": len(tools.pins.changes),
        "changed_tools": sorted(tools.pins.changes),
        "tool_changes_total": tools.changes_total,
        "on_tool_change": config.on_tool_change,
        "instances": len(ready),
        "target_instances": server.target_instances,
        "min_instances": policy.min_instances if policy else floor,
        "max_instances": policy.max_instances if policy else floor,
        "autoscale": policy is not None,
        "draining": sum(1 for i in ready if i.draining),
        "cpu": (round(sum(shares) / len(shares), 3)
                if (shares := [i.cpu_share for i in ready if i.cpu_share is not None]) else None),
        # Every instance's whole process tree, in percent of one core (None until two samples).
        "cpu_percent": (round(100 * sum(trees), 1)
                        if (trees := [i.cpu_share for i in server.instances
                                      if i.cpu_share is not None]) else None),
        "last_scale": dict(capacity.last_scale) if capacity.last_scale else None,
        "scale_events": dict(capacity.scale_events),
        "calls_total": admission.calls_total,
        "errors_total": admission.errors_total,
        "timeouts_total": admission.timeouts_total,
        "busy_total": admission.busy_total,
        "rate_limited_total": admission.rate_limited_total,
        "protocol_errors": server.protocol_errors_total,
        "rate_limit": config.rate_limit.text if config.rate_limit else None,
        "last_exit": REDACT(server.last_exit) if server.last_exit else None,
        "last_stderr": server.last_stderr,
        "breaker": breaker.status(),
        "probe_failures": max((i.unhealthy.count for i in ready), default=0),
        "start": config.start,
        "sharing": config.sharing,
        # sharing = "per-client": which client owns which instance.
        "clients": clients,
        "variables": server.variables(),
    }
