"""The tasks the daemon holds (io.modelcontextprotocol/tasks), as plain data: no I/O, time passed in.

A `TaskRecord` is one task's whole observable state; `detailed()` is what `tasks/get` and
`notifications/tasks` show, `created()` the `CreateTaskResult`. `TaskTable` keeps records bounded
in count (a new task beyond `max_tasks` is refused, never an old one silently lost before its
TTL) and in result bytes (past `max_bytes` the oldest finished tasks are forgotten first: a
result nobody can be holding a slot for). Expiry is by wall clock (`createdAt + ttlMs`), so a
record read back from Redis by another daemon expires at the same moment.
"""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson

WORKING = "working"
INPUT_REQUIRED = "input_required"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})
STATUSES = frozenset({WORKING, INPUT_REQUIRED, *TERMINAL})


def new_task_id() -> str:
    """128 random bits: task ids are bearer tokens for their results (the spec's unguessability)."""
    return secrets.token_urlsafe(16)


def iso(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


@dataclass
class TaskRecord:
    task_id: str
    server: str  # the server whose child runs it (through /mcp/NAME or the aggregate)
    tool: str
    owner: str | None  # the caller it belongs to (an HTTP token's client name), None: anyone
    created_at: float  # wall clock
    ttl_ms: int
    poll_ms: int
    node: str = ""  # the daemon running it (with Redis, others answer from the stored record)
    status: str = WORKING
    updated_at: float = 0.0
    status_message: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    input_requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    size: int = 0  # bytes of result / error / input requests, for the table's byte bound

    def __post_init__(self) -> None:
        if not self.updated_at:
            self.updated_at = self.created_at

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def expires_at(self) -> float:
        return self.created_at + self.ttl_ms / 1000

    def _base(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "taskId": self.task_id, "status": self.status, "createdAt": iso(self.created_at),
            "lastUpdatedAt": iso(self.updated_at), "ttlMs": self.ttl_ms, "pollIntervalMs": self.poll_ms}
        if self.status_message is not None:
            out["statusMessage"] = self.status_message
        return out

    def created(self) -> dict[str, Any]:
        """The CreateTaskResult: the task's seed state, never its payload."""
        return {"resultType": "task", **self._base()}

    def detailed(self) -> dict[str, Any]:
        """The DetailedTask of `tasks/get` (with resultType "complete") and `notifications/tasks`."""
        out = self._base()
        if self.status == COMPLETED and self.result is not None:
            out["result"] = self.result
        elif self.status == FAILED and self.error is not None:
            out["error"] = self.error
        elif self.status == INPUT_REQUIRED:
            out["inputRequests"] = dict(self.input_requests)
        return out

    def row(self, now: float) -> dict[str, Any]:
        """One line of `mcpctl tasks`: what it is, never what it returned."""
        return {"task_id": self.task_id, "server": self.server, "tool": self.tool,
                "status": self.status, "owner": self.owner, "node": self.node,
                "created_at": self.created_at, "updated_at": self.updated_at,
                "expires_in": round(max(0.0, self.expires_at - now), 3), "bytes": self.size,
                "status_message": self.status_message}

    def measure(self) -> int:
        size = 0
        for part in (self.result, self.error, self.input_requests or None):
            if part is not None:
                size += len(orjson.dumps(part))
        self.size = size
        return size

    def to_blob(self) -> bytes:
        return orjson.dumps({
            "id": self.task_id, "server": self.server, "tool": self.tool, "owner": self.owner,
            "created": self.created_at, "updated": self.updated_at, "ttl": self.ttl_ms,
            "poll": self.poll_ms, "node": self.node, "status": self.status,
            "message": self.status_message, "result": self.result, "error": self.error,
            "input": self.input_requests})

    @classmethod
    def from_blob(cls, blob: bytes) -> TaskRecord | None:
        """A record stored by some daemon; None for anything that is not one (a peer's data is
        checked for shape before use, even when the peer is another of our daemons)."""
        try:
            raw = orjson.loads(blob)
        except orjson.JSONDecodeError:
            return None
        if raw.__class__ is not dict:
            return None
        try:
            record = cls(
                task_id=_typed(raw["id"], str), server=_typed(raw["server"], str),
                tool=_typed(raw["tool"], str), owner=_optional(raw["owner"], str),
                created_at=float(_typed(raw["created"], (int, float))),
                ttl_ms=_typed(raw["ttl"], int), poll_ms=_typed(raw["poll"], int),
                node=_typed(raw["node"], str), status=_typed(raw["status"], str),
                updated_at=float(_typed(raw["updated"], (int, float))),
                status_message=_optional(raw["message"], str), result=_optional(raw["result"], dict),
                error=_optional(raw["error"], dict), input_requests=_typed(raw["input"], dict))
        except (KeyError, TypeError):
            return None
        if record.status not in STATUSES:
            return None
        record.measure()
        return record


def _typed(value: Any, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(value)
    return value


def _optional(value: Any, kind: type) -> Any:
    return None if value is None else _typed(value, kind)


class TableFull(Exception):
    """`max_tasks` tasks are kept and none has expired: the new one is refused."""


class TaskTable:
    """This daemon's tasks by id, oldest first."""

    def __init__(self, max_tasks: int, max_bytes: int) -> None:
        self.max_tasks = max_tasks
        self.max_bytes = max_bytes
        self.tasks: dict[str, TaskRecord] = {}
        self.bytes = 0
        self.refused_total = 0
        self.evicted_total = 0
        self.expired_total = 0

    def __len__(self) -> int:
        return len(self.tasks)

    def get(self, task_id: str, now: float) -> TaskRecord | None:
        record = self.tasks.get(task_id)
        if record is not None and record.expires_at <= now:
            self._drop(record)
            self.expired_total += 1
            return None
        return record

    def add(self, record: TaskRecord, now: float) -> None:
        if len(self.tasks) >= self.max_tasks:
            self.expire(now)
        if len(self.tasks) >= self.max_tasks:
            self.refused_total += 1
            raise TableFull(f"{len(self.tasks)} tasks are kept (the [tasks] max_tasks limit)")
        self.tasks[record.task_id] = record
        self.bytes += record.measure()

    def changed(self, record: TaskRecord) -> list[TaskRecord]:
        """`record`'s payload changed: re-measure it, and forget the oldest finished tasks while
        the table holds more than `max_bytes`. Returns the forgotten ones."""
        if self.tasks.get(record.task_id) is not record:
            return []
        old = record.size
        self.bytes += record.measure() - old
        evicted: list[TaskRecord] = []
        if self.bytes > self.max_bytes:
            for other in list(self.tasks.values()):
                if self.bytes <= self.max_bytes:
                    break
                if other.terminal:
                    self._drop(other)
                    evicted.append(other)
            self.evicted_total += len(evicted)
        return evicted

    def expire(self, now: float) -> list[TaskRecord]:
        """Drop every task past its TTL (running ones too: the caller ends their calls)."""
        gone = [r for r in self.tasks.values() if r.expires_at <= now]
        for record in gone:
            self._drop(record)
        self.expired_total += len(gone)
        return gone

    def next_expiry(self) -> float | None:
        return min((r.expires_at for r in self.tasks.values()), default=None)

    def remove(self, task_id: str) -> None:
        record = self.tasks.get(task_id)
        if record is not None:
            self._drop(record)

    def _drop(self, record: TaskRecord) -> None:
        if self.tasks.pop(record.task_id, None) is not None:
            self.bytes -= record.size

    def stats(self) -> dict[str, int]:
        return {"tasks": len(self.tasks), "bytes": self.bytes, "max_tasks": self.max_tasks,
                "max_bytes": self.max_bytes, "refused": self.refused_total,
                "evicted": self.evicted_total, "expired": self.expired_total}
