"""The tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663) on behalf of every child.

A 2026-07-28 client that declares the extension on a `tools/call` of a task-supporting tool gets a
`CreateTaskResult` at once; the call runs on the child under a `TaskRun`, which is the child's
pending request's sink and outlives the client's connection. `tasks/get` shows the task (its result
or error inlined once it ends), `tasks/update` answers what the child asked meanwhile (a legacy
child's `elicitation/create` / `sampling/createMessage` / `roots/list` becomes the task's
`inputRequests`), `tasks/cancel` cancels the child's call (`notifications/cancelled`). Records live
in a bounded `TaskTable` until their `ttlMs`; with `[cache] backend = "redis"` every change is also
written to Redis, so another daemon answers `tasks/get` for a task it does not run.

Which tools are task-supporting: those whose definition says `execution.taskSupport` is
"optional" or "required" (the 2025-11-25 field a legacy child may already send), and those matching
the server's `tasks` globs in fleet.toml. A "required" tool called by a client that did not
declare the extension is refused with -32021. A modern child that declares the extension itself
runs its own tasks: its `CreateTaskResult`s pass through, and `tasks/*` for those ids are routed to
the instance that created them (`Passthrough`).
"""

from __future__ import annotations

import logging
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc

from supervisor.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    MISSING_CLIENT_CAPABILITY,
    busy,
)
from supervisor.policy.task_table import (
    CANCELLED,
    COMPLETED,
    FAILED,
    INPUT_REQUIRED,
    WORKING,
    TableFull,
    TaskRecord,
    TaskTable,
    new_task_id,
)
from supervisor.policy.tool_policy import origin_of
from supervisor.wire import protocol
from supervisor.wire.jsonrpc import Message, error_response

from .clock import SYSTEM_CLOCK, Clock
from .input_required import INPUT_METHODS, input_key
from .perclient import owner_of

if TYPE_CHECKING:
    from supervisor.config import TaskSettings
    from supervisor.wire.jsonrpc import Sink

    from .instance import Instance
    from .server import Server
    from .task_store import TaskStore

log = logging.getLogger("mcp_supervisor.tasks")

EXTENSION = "io.modelcontextprotocol/tasks"
TASK_METHODS = frozenset({"tasks/get", "tasks/update", "tasks/cancel"})
REMOVED_METHODS = frozenset({"tasks/result", "tasks/list"})  # v1 methods SEP-2663 removed
MAX_PASSTHROUGH = 10000  # child-run task ids remembered for routing
MAX_WATCHERS = 1024  # listen streams following tasks, daemon-wide
MAX_WATCHED = 256  # task ids one listen stream may follow
_CHILD_ID_PREFIX = "task:"


class Watcher(Protocol):
    """A stream that receives `notifications/tasks` (a 2026-07-28 listen stream)."""

    def task_notification(self, message: Message) -> None: ...


def declares_tasks(meta: Any) -> bool:
    """Did this request's `_meta` clientCapabilities declare the extension?"""
    if meta.__class__ is not dict:
        return False
    capabilities = meta.get(protocol.META_CLIENT_CAPABILITIES)
    extensions = capabilities.get("extensions") if capabilities.__class__ is dict else None
    return extensions.__class__ is dict and EXTENSION in extensions


def advertise(result: dict[str, Any]) -> dict[str, Any]:
    """A discover result with the extension under `capabilities.extensions` (a copy)."""
    capabilities = dict(result.get("capabilities") or {})
    extensions = capabilities.get("extensions")
    capabilities["extensions"] = {**(extensions if isinstance(extensions, dict) else {}), EXTENSION: {}}
    return {**result, "capabilities": capabilities}


def missing_capability(msg_id: Any, why: str) -> Message:
    return error_response(msg_id, MISSING_CLIENT_CAPABILITY, f"Missing required client capability: {why}",
                          {"requiredCapabilities": {"extensions": {EXTENSION: {}}}})


def child_runs_tasks(server: Server) -> bool:
    """A modern child that declares the extension runs its own tasks."""
    child = server.handshake
    if child is None or not child.modern:
        return False
    extensions = (child.capabilities or {}).get("extensions")
    return isinstance(extensions, dict) and EXTENSION in extensions


def task_support(server: Server, tool: str) -> str | None:
    """"required", "optional", or None (the tool's calls are never tasks). On the hot path of every
    2026-07-28 tools/call: the tools' declarations are read once per tools list (a new list object
    whenever the child's tools change) and kept with the server's config."""
    tools, patterns = server.tools, server.config.tasks
    memo = _SUPPORT.get(server.name)
    if memo is None or memo[0] is not tools or memo[1] is not patterns:
        declared: dict[str, str] = {}
        for definition in tools:
            execution = definition.get("execution")
            support = execution.get("taskSupport") if isinstance(execution, dict) else None
            name = definition.get("name")
            if support in ("required", "optional") and isinstance(name, str):
                declared[name] = str(support)
        if len(_SUPPORT) >= _MAX_SUPPORT_MEMO:
            _SUPPORT.clear()
        memo = _SUPPORT[server.name] = (tools, patterns, declared, {})
    found = memo[2].get(tool)
    if found is not None or not patterns:
        return found
    matched = memo[3].get(tool)
    if matched is None:
        matched = any(fnmatchcase(tool, pattern) for pattern in patterns)
        if len(memo[3]) < _MAX_SUPPORT_MEMO:
            memo[3][tool] = matched
    return "optional" if matched else None


_SUPPORT: dict[str, tuple[list[dict[str, Any]], tuple[str, ...], dict[str, str], dict[str, bool]]] = {}
_MAX_SUPPORT_MEMO = 4096


def _unwrap(target: Any) -> Any:
    """A client's view (`views.py`) of a server or of the aggregate: what it looks at."""
    inner = getattr(target, "inner", None)
    return target if inner is None else inner


def _is_server(target: Any) -> bool:
    target = _unwrap(target)
    return getattr(target, "_route_tool", None) is None and hasattr(target, "tools")


def resolve(target: Any, name: Any) -> tuple[Server, str] | None:
    """The server and its own tool name behind a `tools/call` name at a door's target (calls
    still go through the target itself, so a client's view decides what it may call)."""
    if not isinstance(name, str):
        return None
    target = _unwrap(target)
    route = getattr(target, "_route_tool", None)  # the aggregate: SERVER__tool names
    if route is not None:
        found: tuple[Server, str] | None = route(name)
        return found
    if _is_server(target):
        return target, name
    return None


class TaskRun:
    """The child's pending `tools/call` of one task: records what the child answers and asks."""

    translates_input = True  # the daemon answers for it: a roots/list is asked too

    def __init__(self, book: TaskBook, record: TaskRecord, target: Any, capabilities: dict[str, Any],
                 owner: str | None) -> None:
        self.book = book
        self.record = record
        self.target = target
        self.owner = owner  # the creator's identity: its instance of a `sharing = "per-client"` server
        self.client_id = _CHILD_ID_PREFIX + record.task_id
        self.capabilities = capabilities
        self.asked: dict[str, tuple[Instance, Any]] = {}  # input key -> (instance, child's id)
        self.done = False

    def deliver(self, message: Message) -> None:
        if "method" in message or self.done:
            return  # progress and log notifications are not part of tasks (SEP-2663)
        self.done = True
        record = self.record
        error = message.get("error")
        if "result" in message and message["result"].__class__ is dict:
            result = dict(message["result"])
            result.pop("resultType", None)
            self.book.finish(self, COMPLETED, result=result)
        else:
            shaped = error if error.__class__ is dict else {"code": INTERNAL_ERROR,
                                                              "message": "the child sent no result"}
            text = shaped.get("message")
            self.book.finish(self, FAILED, error=shaped,
                             message=f"{record.tool} failed: {text}" if isinstance(text, str) else None)

    def forward_server_request(self, instance: Instance, message: Message) -> bool:
        """The child asks its client something during the task: it becomes an input request."""
        method = message["method"]
        capability = INPUT_METHODS.get(method)
        if capability is None:
            instance.send(error_response(message["id"], METHOD_NOT_FOUND,
                                         f"mcp-supervisor cannot pass {method} to a task's client"))
            return True
        if capability not in self.capabilities:
            if capability == "roots":
                instance.send({"jsonrpc": "2.0", "id": message["id"], "result": {"roots": []}})
            else:
                instance.send(error_response(message["id"], INTERNAL_ERROR,
                                             f"the client did not declare the '{capability}' capability"))
            return True
        used = self.book.used_keys(self)
        key = input_key(message["id"], dict.fromkeys(used))
        serial = len(used)
        while key in used:  # keys are never reused over a task's life (SEP-2663)
            serial += 1
            key = f"{key}-{serial}"
        used.add(key)
        request: dict[str, Any] = {"method": method}
        if "params" in message:
            request["params"] = message["params"]
        self.asked[key] = (instance, message["id"])
        self.record.input_requests[key] = request
        self.book.update_status(self, INPUT_REQUIRED)
        return True

    def answer(self, responses: dict[str, Any]) -> None:
        """tasks/update: pass the responses to keys still outstanding to the child; ignore the rest."""
        answered = False
        for key, response in responses.items():
            asked = self.asked.pop(key, None)
            if asked is None or response.__class__ is not dict:
                continue
            instance, child_id = asked
            self.record.input_requests.pop(key, None)
            instance.send({"jsonrpc": "2.0", "id": child_id, "result": response})
            answered = True
        if answered:
            self.book.update_status(self, INPUT_REQUIRED if self.asked else WORKING)

    def cancel(self, reason: str) -> None:
        self.done = True
        self.target.cancel(self, self.client_id, reason)


class Passthrough:
    """The sink of a call to a child that runs its own tasks: remembers which instance made each
    task it creates, so `tasks/*` for that id reach the same instance."""

    def __init__(self, book: TaskBook, sink: Sink, server: Server) -> None:
        self.book = book
        self.sink = sink
        self.server = server
        self.instance: Instance | None = None  # found right after routing (None: it was queued)

    def deliver(self, message: Message) -> None:
        result = message.get("result")
        if result.__class__ is dict and result.get("resultType") == "task" \
                and isinstance(result.get("taskId"), str) and self.instance is not None:
            self.book.remember_child_task(result["taskId"], self.server, self.instance)
        self.sink.deliver(message)

    def __getattr__(self, name: str) -> Any:  # forward_server_request, owner, ... of the caller
        return getattr(self.sink, name)


class TaskBook:
    """The daemon's tasks: one table, shared by every door."""

    def __init__(self, settings: TaskSettings, store: TaskStore | None = None, node: str = "",
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.table = TaskTable(settings.max_tasks, settings.max_bytes)
        self.store = store
        self.node = node
        self.clock = clock  # tasks expire and are stamped by wall time (createdAt + ttl)
        self.runs: dict[str, TaskRun] = {}
        self.child_tasks: dict[str, tuple[Server, Instance]] = {}
        self.watchers: dict[Watcher, set[str]] = {}
        self._keys: dict[str, set[str]] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._wake = anyio.Event()
        self.created_total = 0
        if store is not None:
            store.on_control(node, self._control)

    # ---- the doors call these -------------------------------------------------------------------

    def intercept(self, target: Any, msg: Message, params: dict[str, Any], sink: Sink,
                  owner: str | None) -> bool:
        """A 2026-07-28 request at a door. True when the tasks extension answered it (or took it on)."""
        method = msg["method"]
        meta = params.get("_meta")
        if method in TASK_METHODS:
            self._task_method(target, method, msg, params, meta, sink, owner)
            return True
        if method in REMOVED_METHODS:
            sink.deliver(error_response(msg["id"], METHOD_NOT_FOUND, f"Method not found: {method} "
                                        "(removed by the 2026-07-28 tasks extension; use tasks/get)"))
            return True
        if method != "tools/call":
            return False
        found = resolve(target, params.get("name"))
        if found is None:
            return False
        server, tool = found
        if child_runs_tasks(server):
            if declares_tasks(meta):
                passthrough = Passthrough(self, sink, server)
                target.submit(passthrough, msg, True)
                passthrough.instance = next((inst for inst in server.instances for p in inst.pending.values()
                                             if origin_of(p.sink) is passthrough), None)
                return True
            return False
        support = task_support(server, tool)
        if support is None:
            return False
        if not declares_tasks(meta):
            if support == "required":
                sink.deliver(missing_capability(msg["id"], f"tool {params.get('name')!r} runs only "
                                                f"as a task: declare the {EXTENSION} extension"))
                return True
            return False
        self._create(target, server, msg, params, meta if isinstance(meta, dict) else {}, sink, owner)
        return True

    def _create(self, target: Any, server: Server, msg: Message, params: dict[str, Any],
                meta: dict[str, Any], sink: Sink, owner: str | None) -> None:
        now = self.clock.time()
        settings = self.settings
        record = TaskRecord(task_id=new_task_id(), server=server.name, tool=str(params.get("name")),
                            owner=owner, created_at=now,
                            ttl_ms=max(1, int(settings.ttl * 1000)),
                            poll_ms=max(1, int(settings.poll_interval * 1000)), node=self.node)
        try:
            self.table.add(record, now)
        except TableFull as exc:
            refusal = busy(msg["id"], server.name, f"too many tasks: {exc}",
                           max(10, int(settings.poll_interval * 1000)))
            refusal["error"]["data"]["max_tasks"] = settings.max_tasks
            sink.deliver(refusal)
            return
        self.created_total += 1
        capabilities = meta.get(protocol.META_CLIENT_CAPABILITIES)
        run = TaskRun(self, record, target, capabilities if isinstance(capabilities, dict) else {},
                      owner_of(sink))
        self.runs[record.task_id] = run
        child_params = {key: value for key, value in params.items() if key != "task"}
        child_msg: Message = {"jsonrpc": "2.0", "id": run.client_id, "method": "tools/call",
                              "params": child_params}
        answer = {"jsonrpc": "2.0", "id": msg["id"], "result": record.created()}
        self._wake.set()
        if self.store is not None and self.store.shared and self._tg is not None:
            # Durable first (the spec: a CreateTaskResult only once tasks/get resolves anywhere).
            self._tg.start_soon(self._create_shared, run, target, child_msg, sink, answer)
            return
        sink.deliver(answer)
        target.submit(run, child_msg, True)

    async def _create_shared(self, run: TaskRun, target: Any, child_msg: Message, sink: Sink,
                             answer: Message) -> None:
        assert self.store is not None
        await self.store.save_now(run.record)
        sink.deliver(answer)
        if not run.done:
            target.submit(run, child_msg, True)

    def _task_method(self, target: Any, method: str, msg: Message, params: dict[str, Any], meta: Any,
                     sink: Sink, owner: str | None) -> None:
        mid = msg["id"]
        if not declares_tasks(meta):
            sink.deliver(missing_capability(mid, f"{method} needs the {EXTENSION} extension declared "
                                            "in the request's clientCapabilities"))
            return
        task_id = params.get("taskId")
        if not isinstance(task_id, str):
            sink.deliver(error_response(mid, INVALID_PARAMS, "Invalid params: taskId must be a string"))
            return
        routed = self.child_tasks.get(task_id)
        if routed is not None:
            server, instance = routed
            if instance in server.ready_instances:
                instance.forward(sink, msg, instance.clock.monotonic() + server.config.request_timeout, True)
                return
            del self.child_tasks[task_id]  # the instance that ran it is gone, and its tasks with it
        if method == "tasks/update":
            responses = params.get("inputResponses")
            if not isinstance(responses, dict):
                sink.deliver(error_response(mid, INVALID_PARAMS, "Invalid params: inputResponses must "
                                            "map input request keys to their results"))
                return
        record = self.table.get(task_id, self.clock.time())
        if record is not None and record.owner is not None and record.owner != owner:
            record = None  # another caller's task: not found, as the spec's auth binding has it
        if record is None and task_id not in self.runs and _is_server(target) \
                and child_runs_tasks(_unwrap(target)):
            target.submit(sink, msg, True)  # the child's own task, made before we saw it (queued)
            return
        if record is None:
            if self.store is not None and self.store.shared and self._tg is not None:
                self._tg.start_soon(self._shared_method, method, msg, task_id, sink, owner)
                return
            sink.deliver(_not_found(mid, task_id))
            return
        self._answer(method, msg, params, record, sink)

    def _answer(self, method: str, msg: Message, params: dict[str, Any], record: TaskRecord,
                sink: Sink) -> None:
        mid = msg["id"]
        if method == "tasks/get":
            sink.deliver({"jsonrpc": "2.0", "id": mid, "result": {"resultType": "complete",
                                                                   **record.detailed()}})
            return
        run = self.runs.get(record.task_id)
        if method == "tasks/update":
            if run is not None:
                run.answer(params["inputResponses"])
        elif run is not None and not record.terminal:
            run.cancel("the task was cancelled (tasks/cancel)")
            self.finish(run, CANCELLED, message="cancelled by tasks/cancel")
        sink.deliver({"jsonrpc": "2.0", "id": mid, "result": {"resultType": "complete"}})

    async def _shared_method(self, method: str, msg: Message, task_id: str, sink: Sink,
                             owner: str | None) -> None:
        """A task this daemon does not hold: another daemon's, read from Redis."""
        assert self.store is not None
        record = await self.store.load(task_id)
        mid = msg["id"]
        if record is None or record.expires_at <= self.clock.time() \
                or (record.owner is not None and record.owner != owner):
            sink.deliver(_not_found(mid, task_id))
            return
        if method == "tasks/get":
            sink.deliver({"jsonrpc": "2.0", "id": mid, "result": {"resultType": "complete",
                                                                   **record.detailed()}})
            return
        if record.terminal:  # nothing left to change: the same ack the owner would give
            sink.deliver({"jsonrpc": "2.0", "id": mid, "result": {"resultType": "complete"}})
            return
        payload: dict[str, Any] = {"op": method, "taskId": task_id}
        if method == "tasks/update":
            payload["inputResponses"] = msg["params"]["inputResponses"]
        if await self.store.send_control(record.node, payload):  # the node that runs it acts on it
            sink.deliver({"jsonrpc": "2.0", "id": mid, "result": {"resultType": "complete"}})
            return
        sink.deliver(error_response(
            mid, INVALID_PARAMS, f"Invalid params: task {task_id} runs on node {record.node!r}, which "
            "cannot be reached now", {"node": record.node}))

    def _control(self, payload: dict[str, Any]) -> None:
        """Another daemon passes on a tasks/cancel or tasks/update for one of our tasks (it checked
        the caller against the task's owner; the payload's shape is checked here)."""
        task_id = payload.get("taskId")
        run = self.runs.get(task_id) if isinstance(task_id, str) else None
        if run is None or run.record.terminal:
            return
        if payload.get("op") == "tasks/cancel":
            run.cancel("the task was cancelled (tasks/cancel, through another daemon)")
            self.finish(run, CANCELLED, message="cancelled by tasks/cancel")
        elif payload.get("op") == "tasks/update" and isinstance(payload.get("inputResponses"), dict):
            run.answer(payload["inputResponses"])

    # ---- the task's life --------------------------------------------------------------------------

    def update_status(self, run: TaskRun, status: str, message: str | None = None) -> None:
        record = run.record
        if record.terminal:
            return
        record.status = status
        record.status_message = message
        record.updated_at = self.clock.time()
        self._changed(record)

    def finish(self, run: TaskRun, status: str, *, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None, message: str | None = None) -> None:
        record = run.record
        if record.terminal:
            return
        run.done = True
        for instance, child_id in run.asked.values():  # questions nobody will answer now
            instance.send(error_response(child_id, INTERNAL_ERROR, "the task ended"))
        run.asked.clear()
        record.input_requests.clear()
        record.status = status
        record.status_message = message
        record.result = result
        record.error = error
        if record.measure() > self.table.max_bytes:  # kept, it would push every other result out
            record.status, record.result = FAILED, None
            record.error = {"code": INTERNAL_ERROR, "message": f"the result ({record.size} bytes) is "
                            f"larger than the daemon keeps for a task ([tasks] max_bytes)"}
            record.status_message = record.error["message"]
        record.updated_at = self.clock.time()
        self.runs.pop(record.task_id, None)
        self._keys.pop(record.task_id, None)
        self._changed(record)

    def _changed(self, record: TaskRecord) -> None:
        for evicted in self.table.changed(record):
            self._forget(evicted)
        if self.store is not None:
            self.store.save(record)
        self._notify(record)

    def _forget(self, record: TaskRecord) -> None:
        run = self.runs.pop(record.task_id, None)
        self._keys.pop(record.task_id, None)
        if run is not None and not run.done:
            run.cancel("the task expired (its ttlMs passed)")

    def used_keys(self, run: TaskRun) -> set[str]:
        """Input request keys are unique over a task's life (the spec): never reused."""
        return self._keys.setdefault(run.record.task_id, set())

    # ---- passthrough ------------------------------------------------------------------------------

    def remember_child_task(self, task_id: str, server: Server, instance: Instance) -> None:
        if len(self.child_tasks) >= MAX_PASSTHROUGH:
            self.child_tasks.pop(next(iter(self.child_tasks)))
        self.child_tasks[task_id] = (server, instance)

    # ---- notifications/tasks ----------------------------------------------------------------------

    def watch(self, watcher: Watcher, task_ids: list[Any], owner: str | None) -> list[str]:
        """A listen stream asks for `notifications/tasks` of these tasks: the ids it will get."""
        if len(self.watchers) >= MAX_WATCHERS:
            return []
        now = self.clock.time()
        known = []
        for task_id in task_ids[:MAX_WATCHED]:
            if not isinstance(task_id, str):
                continue
            record = self.table.get(task_id, now)
            if record is not None and (record.owner is None or record.owner == owner):
                known.append(task_id)
        if known:
            self.watchers[watcher] = set(known)
            for task_id in known:  # one that already ended will not change again: say how it ended
                record = self.table.tasks[task_id]
                if record.terminal:
                    watcher.task_notification({"jsonrpc": "2.0", "method": "notifications/tasks",
                                               "params": record.detailed()})
        return known

    def unwatch(self, watcher: Watcher) -> None:
        self.watchers.pop(watcher, None)

    def _notify(self, record: TaskRecord) -> None:
        if not self.watchers:
            return
        message: Message | None = None
        for watcher, ids in list(self.watchers.items()):
            if record.task_id in ids:
                if message is None:
                    message = {"jsonrpc": "2.0", "method": "notifications/tasks",
                               "params": record.detailed()}
                watcher.task_notification(message)

    # ---- expiry, the store's writer, status -------------------------------------------------------

    async def run(self) -> None:
        """The book's loop (a daemon failure domain): expire tasks at their TTL, run the store's
        writer, and host the Redis lookups of tasks other daemons hold."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self.store is not None:
                tg.start_soon(self.store.run)
            try:
                while True:
                    self._wake = anyio.Event()
                    self.expire()
                    due = self.table.next_expiry()
                    wait = 3600.0 if due is None else max(0.01, due - self.clock.time())
                    with anyio.move_on_after(min(wait, 3600.0)):
                        await self._wake.wait()
            finally:
                self._tg = None

    def expire(self) -> int:
        gone = self.table.expire(self.clock.time())
        for record in gone:
            self._forget(record)
        return len(gone)

    def rows(self) -> list[dict[str, Any]]:
        now = self.clock.time()
        return [record.row(now) for record in self.table.tasks.values() if record.expires_at > now]

    def status(self) -> dict[str, Any]:
        return {**self.table.stats(), "running": len(self.runs), "created": self.created_total,
                "child_tasks": len(self.child_tasks), "shared": bool(self.store and self.store.shared)}


def _not_found(msg_id: Any, task_id: str) -> Message:
    return error_response(msg_id, INVALID_PARAMS, f"Failed to retrieve task: Task not found "
                          f"(no task {task_id!r}, or it has expired)")


_BOOK: TaskBook | None = None


def book() -> TaskBook | None:
    """The daemon's task book (None until the daemon configures one: tests of bare sessions)."""
    return _BOOK


def configure(settings: TaskSettings, store: TaskStore | None, node: str) -> TaskBook:
    global _BOOK
    _BOOK = TaskBook(settings, store, node)
    return _BOOK
