"""The control socket's `supervisor/*` methods: one function each, whose docstring is its reference.

Each takes the connection it was called on (a `Caller`: the daemon, and the connection's own
outbox and event subscription) and the request's `params` (an object; absent means `{}`), and
returns the `result`, or raises a `SupervisorError` that the connection answers as the JSON-RPC
error (`InvalidParams` -32602 for a param of the wrong type, `UnknownServer` -32005, ...). Every
request runs as its own failure domain (`ControlConnection._control_request`): a bug here answers
-32603 and ends only that request.

`HANDLERS` maps each method name to its function. `supervisor/attach`, which turns the connection
itself into an MCP session, lives with the connection (`ControlConnection._attach`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import anyio.lowlevel

from supervisor.core.aggregate import Aggregate
from supervisor.core.events import EventBus
from supervisor.core.fleet import Fleet
from supervisor.core.server import Server
from supervisor.core.tasks import TaskBook
from supervisor.errors import INTERNAL_ERROR, InvalidParams, SupervisorError
from supervisor.policy.stderr_levels import level_of
from supervisor.wire.first_answer import FirstAnswer
from supervisor.wire.jsonrpc import encode
from supervisor.wire.outbox import Outbox

Params = dict[str, Any]


class DaemonView(Protocol):
    """What the methods read and ask of the daemon (`ops.daemon.Daemon` is the one there is)."""

    fleet: Fleet
    bus: EventBus
    aggregate: Aggregate
    tasks: TaskBook

    def info(self) -> dict[str, Any]: ...
    async def cache_status(self) -> dict[str, Any]: ...
    async def reload(self) -> dict[str, Any]: ...
    async def clear_cache(self, server: str | None) -> int: ...
    def metrics_text(self) -> bytes: ...
    def begin_drain(self, why: str) -> dict[str, Any]: ...
    async def cluster_status(self) -> dict[str, Any]: ...


class Caller(Protocol):
    """The control connection a method was called on."""

    daemon: DaemonView
    outbox: Outbox

    def subscribe(self, forward: Callable[[dict[str, Any]], None]) -> None:
        """Send this connection the daemon's events through `forward`, instead of any earlier."""
        ...


# Typed reads of control params: a wrong type is the caller's mistake (-32602), never a crash.

def _names(params: Params) -> list[str] | None:
    if params.get("all") is True:
        return None
    names = params.get("servers")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise InvalidParams("params.servers must be a non-empty list of names, or all: true")
    return names


def _text(params: Params, key: str, *, required: bool = False) -> str | None:
    value = params.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidParams(f"params.{key} must be a non-empty string")
    return value


def _required(params: Params, key: str) -> str:
    value = _text(params, key, required=True)
    assert value is not None
    return value


def _number(params: Params, key: str, default: float = 0.0) -> float:
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e9:
        raise InvalidParams(f"params.{key} must be a non-negative number")
    return float(value)


def _count(params: Params, key: str, default: int) -> int:
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams(f"params.{key} must be an integer")
    return value


def _text_list(params: Params, key: str) -> list[str]:
    value = params.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParams(f"params.{key} must be a list of names")
    return value


# ---- the methods --------------------------------------------------------------------------------


async def status(caller: Caller, params: Params) -> Any:
    """`supervisor/status` `{servers?: [name..], detail?: bool}` → `{daemon, servers: [..], cache,
    aggregate}`.

    One entry per server (all of them without `servers`), as `mcpctl status --json` prints it.
    With `detail` (the dashboard's detail screen) each entry adds `state_history` and
    `restart_history` (the last 50 of each, with times) and `config` (command, args, limits;
    secrets masked)."""
    daemon = caller.daemon
    names = _text_list(params, "servers") or None
    servers = daemon.fleet.status(names)
    if params.get("detail"):
        for entry in servers:
            entry.update(daemon.fleet.get(entry["name"]).detail())
    return {"daemon": daemon.info(), "servers": servers,
            "cache": await daemon.cache_status(), "aggregate": daemon.aggregate.status()}


async def _lifecycle(caller: Caller, params: Params, action: Callable[[Server], None]) -> Any:
    servers = caller.daemon.fleet.select(_names(params))
    for server in servers:
        action(server)
    wait = _number(params, "wait")
    if wait > 0:
        with anyio.move_on_after(wait):
            for server in servers:
                await anyio.lowlevel.checkpoint()
                await server.wait_settled(wait)
    return {"servers": [server.status() for server in servers]}


async def start(caller: Caller, params: Params) -> Any:
    """`supervisor/start` `{servers: [name..]} | {all: true}, wait?: seconds` → `{servers: [status..]}`.

    Starts the servers (a failed one is revived). With `wait`, answers once each has settled
    (ready, failed, unavailable or stopped) or `wait` has passed, whichever is first."""
    return await _lifecycle(caller, params, Server.start)


async def stop(caller: Caller, params: Params) -> Any:
    """`supervisor/stop` `{servers: [name..]} | {all: true}, wait?: seconds` → `{servers: [status..]}`.

    Stops the servers and ends their process trees; with `wait`, answers when they are down (or
    `wait` has passed)."""
    fleet = caller.daemon.fleet
    servers = fleet.select(_names(params))
    wait = _number(params, "wait")
    if wait:
        await fleet.stop_servers(servers, wait)
    else:
        for server in servers:
            server.stop()
    return {"servers": [server.status() for server in servers]}


async def restart(caller: Caller, params: Params) -> Any:
    """`supervisor/restart` `{servers: [name..]} | {all: true}, wait?: seconds` → `{servers: [status..]}`.

    Restarts the servers (reason "manual"); `wait` as for `supervisor/start`."""
    return await _lifecycle(caller, params, lambda server: server.restart("manual"))


async def logs(caller: Caller, params: Params) -> Any:
    """`supervisor/logs` `{server, lines?: N}` → `{server, lines: [..], levels: [..], times: [..]}`.

    The last N (default 100) stderr lines of one server, each with its level (debug | info |
    warning | error | critical, `stderr_levels.level_of`) and the unix time it arrived (null when
    unknown); the three lists are aligned."""
    server = caller.daemon.fleet.get(_required(params, "server"))
    count = _count(params, "lines", 100)
    lines = server.stderr.tail(count)
    return {"server": server.name, "lines": lines, "levels": [level_of(line) for line in lines],
            "times": server.stderr_times(len(lines))}


async def tools(caller: Caller, params: Params) -> Any:
    """`supervisor/tools` `{server?, diff?: true}` → `{servers: {name: [tool..]}, changed: {name: [tool..]}}`.

    The tools each server (or one) offers, from its cached list with the tool policy applied;
    `changed` names the tools whose definition differs from its pin. With `diff`:
    `{servers: {name: [{tool, since, blocked, pinned, current, diff}]}}`, the changed tools only."""
    fleet = caller.daemon.fleet
    name = _text(params, "server")
    servers = [fleet.get(name)] if name else list(fleet.servers.values())
    if params.get("diff"):
        return {"servers": {s.name: [
            {"tool": tool, "since": change["since"], "blocked": tool in s.blocked,
             "pinned": change["pinned"], "current": change["current"], "diff": s.pins.diff(tool)}
            for tool, change in s.pins.changes.items()] for s in servers}}
    return {"servers": {s.name: s.visible_tools for s in servers},
            "changed": {s.name: sorted(s.pins.changes) for s in servers if s.pins.changes}}


async def tools_approve(caller: Caller, params: Params) -> Any:
    """`supervisor/tools/approve` `{server, tool?}` → `{server, approved: [tool..]}`.

    Pins the current definition of `tool` (or of every changed tool of the server); a tool
    without an unapproved change is -32602."""
    server = caller.daemon.fleet.get(str(params.get("server")))
    tool = params.get("tool")
    if tool is not None and not isinstance(tool, str):
        raise InvalidParams("tool must be a string")
    if tool is not None and tool not in server.pins.changes:
        raise InvalidParams(f"tool {tool!r} of server '{server.name}' has no unapproved change "
                            f"(changed: {', '.join(sorted(server.pins.changes)) or 'none'})")
    return {"server": server.name, "approved": server.approve_tools(tool)}


async def call(caller: Caller, params: Params) -> Any:
    """`supervisor/call` `{server, tool, arguments?: {..}, timeout?: seconds}` → the `tools/call` result.

    Calls one tool through the server's admission like any client (`mcpctl call`). The child's
    error is answered with its own code, message and data; no answer within `timeout` (default
    the server's `request_timeout` + 5 s) cancels the call and is -32603."""
    server = caller.daemon.fleet.get(_required(params, "server"))
    tool = _required(params, "tool")
    arguments = params.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise InvalidParams("params.arguments must be an object")
    timeout = _number(params, "timeout") or server.config.request_timeout + 5
    sink = FirstAnswer()
    server.submit(sink, {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                         "params": {"name": tool, "arguments": arguments}}, False)
    with anyio.move_on_after(timeout):
        await sink.event.wait()
    if sink.message is None:
        server.cancel(sink, 1, "the control client gave up")
        raise SupervisorError(f"no answer from '{server.name}' within {timeout:g}s")
    if "error" in sink.message:
        error = sink.message["error"]  # checked for shape where the child's answer came in
        exc = SupervisorError(str(error.get("message")), data=error.get("data"))
        exc.code = int(error.get("code", INTERNAL_ERROR))
        raise exc
    return sink.message.get("result")


async def reload(caller: Caller, params: Params) -> Any:
    """`supervisor/reload` `{}` → `{added, removed, changed, unchanged, ..}`.

    Re-reads fleet.toml and applies it as a diff; an invalid file is refused with its
    `file:line: key` error and the running fleet is left untouched."""
    return await caller.daemon.reload()


async def cache_clear(caller: Caller, params: Params) -> Any:
    """`supervisor/cache/clear` `{server?}` → `{cleared: N}`.

    Drops the cached results of one server (or all), in memory and in a shared Redis."""
    name = _text(params, "server")
    if name:
        caller.daemon.fleet.get(name)
    return {"cleared": await caller.daemon.clear_cache(name)}


async def events(caller: Caller, params: Params) -> Any:
    """`supervisor/events` `{logs?: [name..], tail?: N}` → `{subscribed: true, at, lines: {name: [..]},
    levels: {name: [..]}}`, then notifications.

    After the answer the connection receives `supervisor/event` notifications
    `{type: state | restart | log | stats | tool_change, ..}`: log lines (`{server, line, level,
    at}`) only of the servers in `logs`, stats once a second (`{daemon, servers: [status + rates],
    cache}`). `lines` holds the last `tail` stderr lines of each server in `logs`, taken in the
    same step as the subscription, so no line is missed or shown twice (`mcpctl logs -f`). With
    `tail`, an unknown name in `logs` is -32005; without it (the dashboard) it is ignored."""
    logs = set(_text_list(params, "logs"))
    tail = _count(params, "tail", 0)
    fleet = caller.daemon.fleet
    if "tail" in params:  # asking for lines of an unknown server is an error (mcpctl logs -f)
        servers = [fleet.get(str(name)) for name in logs]
    else:  # a bare subscription may name servers a reload removed (the dashboard)
        servers = [s for name in logs if (s := fleet.servers.get(str(name)))]
    outbox = caller.outbox

    def forward(event: dict[str, Any]) -> None:
        if event.get("type") == "log" and event.get("server") not in logs:
            return
        outbox.push(encode({"jsonrpc": "2.0", "method": "supervisor/event", "params": event}))

    caller.subscribe(forward)
    # No await between subscribing and reading the rings: nothing can slip in between.
    lines = {s.name: s.stderr.tail(tail) for s in servers}
    levels = {name: [level_of(line) for line in tail_lines] for name, tail_lines in lines.items()}
    return {"subscribed": True, "at": time.time(), "lines": lines, "levels": levels}


async def prerequisites(caller: Caller, params: Params) -> Any:
    """`supervisor/prerequisites` `{}` → `{servers: [{name, problems: [[category, detail]..], command}]}`.

    What each server still needs before it can start, judged as a spawn now would: with the
    daemon's environment and secrets files (`mcpctl check --prerequisites` asks a running daemon)."""
    from supervisor.core.prerequisites import daemon_view

    fleet = caller.daemon.fleet
    ctx = fleet.ctx
    rows = []
    for server in list(fleet.servers.values()):
        try:
            own = server.server_env_file()
        except ValueError:
            own = None
        row = await anyio.to_thread.run_sync(daemon_view, server.config, ctx.data_dir,
                                             ctx.environ, ctx.env_file, own)
        rows.append({"name": row.name, "problems": [list(p) for p in row.problems],
                     "command": row.argv0})
    return {"servers": rows}


async def metrics(caller: Caller, params: Params) -> Any:
    """`supervisor/metrics` `{}` → `{content_type, text}`: the Prometheus exposition, as `/metrics`."""
    from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
    return {"content_type": CONTENT_TYPE, "text": caller.daemon.metrics_text().decode()}


async def drain(caller: Caller, params: Params) -> Any:
    """`supervisor/drain` `{}` → `{draining, in_flight, grace_s, timeout_s}`.

    Leave gracefully, as on SIGTERM (`mcpctl drain`): /healthz answers 503 at once, new HTTP
    sessions are refused, calls in flight finish (up to `[supervisor] drain_timeout`), then the
    daemon stops every child and exits."""
    return caller.daemon.begin_drain("mcpctl drain")


async def cluster(caller: Caller, params: Params) -> Any:
    """`supervisor/cluster` `{}` → `{node, nodes: [{node, at, pid, version, draining, ready, total,
    servers: {name: state}, ..}]}`: the nodes of the cluster that beat recently."""
    return await caller.daemon.cluster_status()


async def tasks(caller: Caller, params: Params) -> Any:
    """`supervisor/tasks` `{}` → `{tasks: [row..], stats}`: the tasks this daemon holds (`mcpctl
    tasks`), never their results: those belong to the clients that hold the task ids."""
    book = caller.daemon.tasks
    return {"tasks": book.rows(), "stats": book.status()}


Handler = Callable[[Caller, Params], Awaitable[Any]]

HANDLERS: dict[str, Handler] = {
    "supervisor/status": status,
    "supervisor/start": start,
    "supervisor/stop": stop,
    "supervisor/restart": restart,
    "supervisor/logs": logs,
    "supervisor/tools": tools,
    "supervisor/tools/approve": tools_approve,
    "supervisor/call": call,
    "supervisor/reload": reload,
    "supervisor/cache/clear": cache_clear,
    "supervisor/events": events,
    "supervisor/metrics": metrics,
    "supervisor/prerequisites": prerequisites,
    "supervisor/drain": drain,
    "supervisor/cluster": cluster,
    "supervisor/tasks": tasks,
}
