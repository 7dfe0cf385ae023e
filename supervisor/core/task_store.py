"""Where task records are kept beyond this daemon's `TaskTable`: nowhere, or a Redis they share.

`MemoryTaskStore` is the default: the table in memory is the whole truth, `tasks/get` for a task
this daemon does not hold is "not found". `RedisTaskStore` (with `[cache] backend = "redis"`)
writes every change of a record under `mcps:task:<id>` with the record's remaining TTL, so any
daemon sharing the Redis answers `tasks/get`. Writes go through one writer task that always writes
a record's latest state (a burst of changes is one SET, and a later state is never overwritten by
an earlier one); `save_now` waits for the write, which task creation needs (the spec: a
CreateTaskResult only once `tasks/get` resolves). Every Redis operation is bounded by the cache
timeout and never raises: a failed write is counted and logged, a failed read is "not found".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import orjson

from supervisor.policy.task_table import TaskRecord

from .clock import SYSTEM_CLOCK, Clock

log = logging.getLogger("mcp_supervisor.tasks")

KEY_PREFIX = "mcps:task:"
CONTROL_CHANNEL = "mcps:task-control:"  # + node: tasks/cancel and tasks/update for that node's tasks
MAX_CONTROL = 1024 * 1024  # bytes of one control message (inputResponses) a node accepts
MAX_PENDING = 10000  # records waiting for the writer; beyond it the oldest waiting write is dropped
WRITE_TIMEOUT = 1.0  # seconds a batch of writes (or save_now) may take


Control = Callable[[dict[str, Any]], None]


class TaskStore(Protocol):
    shared: bool

    def on_control(self, node: str, handler: Control) -> None: ...
    async def send_control(self, node: str, payload: dict[str, Any]) -> bool: ...
    def save(self, record: TaskRecord) -> None: ...
    async def save_now(self, record: TaskRecord) -> None: ...
    async def load(self, task_id: str) -> TaskRecord | None: ...
    async def run(self) -> None: ...


class MemoryTaskStore:
    """Nothing beyond the table: one daemon's tasks."""

    shared = False

    def on_control(self, node: str, handler: Control) -> None:
        return None

    async def send_control(self, node: str, payload: dict[str, Any]) -> bool:
        return False

    def save(self, record: TaskRecord) -> None:
        return None

    async def save_now(self, record: TaskRecord) -> None:
        return None

    async def load(self, task_id: str) -> TaskRecord | None:
        return None

    async def run(self) -> None:
        await anyio.sleep_forever()


class RedisTaskStore:
    shared = True

    def __init__(self, url: str, timeout: float, clock: Clock = SYSTEM_CLOCK) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.timeout = timeout
        self.clock = clock
        self.errors = 0
        self.dropped = 0
        self._redis = Redis.from_url(url, socket_timeout=max(timeout, WRITE_TIMEOUT),
                                     socket_connect_timeout=max(timeout, WRITE_TIMEOUT),
                                     retry=Retry(NoBackoff(), 0), health_check_interval=0)
        self._pending: dict[str, TaskRecord] = {}
        self._wake = anyio.Event()
        self._flushed = anyio.Event()
        self._taken = 0  # batches the writer took
        self._written = 0  # ... and finished (written or failed)
        self._control: tuple[str, Control] | None = None

    def on_control(self, node: str, handler: Control) -> None:
        """Messages other daemons send about this node's tasks go to `handler` (see `run`)."""
        self._control = (node, handler)

    async def send_control(self, node: str, payload: dict[str, Any]) -> bool:
        """Tell the daemon `node` to cancel or update one of its tasks. False when no daemon of
        that name listens (it stopped) or Redis cannot be reached."""
        try:
            with anyio.fail_after(max(self.timeout, 0.25)):
                heard = await self._redis.publish(CONTROL_CHANNEL + node, orjson.dumps(payload))
        except Exception as exc:
            self.errors += 1
            log.warning("tasks: could not reach node %s through Redis: %s: %s", node,
                        type(exc).__name__, exc)
            return False
        return isinstance(heard, int) and heard > 0

    def save(self, record: TaskRecord) -> None:
        if record.task_id not in self._pending and len(self._pending) >= MAX_PENDING:
            self._pending.pop(next(iter(self._pending)))
            self.dropped += 1
        self._pending[record.task_id] = record
        self._wake.set()

    async def save_now(self, record: TaskRecord) -> None:
        """Queue `record` and wait (at most `WRITE_TIMEOUT`) until the write that includes it ends:
        the next batch the writer takes."""
        self.save(record)
        wanted = self._taken + 1
        with anyio.move_on_after(WRITE_TIMEOUT):
            while self._written < wanted:
                await self._flushed.wait()

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            if self._control is not None:
                tg.start_soon(self._listen, *self._control)
            await self._writer()

    async def _listen(self, node: str, handler: Control) -> None:
        """This node's control channel, resubscribed after a Redis failure (1 s later)."""
        while True:
            try:
                pubsub = self._redis.pubsub()
                try:
                    await pubsub.subscribe(CONTROL_CHANNEL + node)
                    while True:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message is None or message.get("type") != "message":
                            continue
                        data = message.get("data")
                        if not isinstance(data, bytes) or len(data) > MAX_CONTROL:
                            continue
                        try:
                            payload = orjson.loads(data)
                        except orjson.JSONDecodeError:
                            continue
                        if isinstance(payload, dict):
                            handler(payload)
                finally:
                    with anyio.move_on_after(1, shield=True):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves PubSub.aclose unannotated
            except Exception as exc:  # Redis went away: say so, and listen again shortly
                self.errors += 1
                log.warning("tasks: control channel of node %s: %s: %s", node, type(exc).__name__, exc)
            await anyio.sleep(1.0)

    async def _writer(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                batch, self._pending = self._pending, {}
                self._taken += 1
                await self._write(list(batch.values()))
                self._written = self._taken
                flushed, self._flushed = self._flushed, anyio.Event()
                flushed.set()
        finally:
            with anyio.move_on_after(1, shield=True):
                await self._redis.aclose()

    async def _write(self, records: list[TaskRecord]) -> None:
        now = self.clock.time()
        try:
            with anyio.fail_after(WRITE_TIMEOUT):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for record in records:
                        left = record.expires_at - now
                        if left > 0:
                            pipe.set(KEY_PREFIX + record.task_id, record.to_blob(),
                                     px=max(1, int(left * 1000)))
                    await pipe.execute()
        except Exception as exc:  # Redis trouble never reaches a caller: counted and logged
            self.errors += 1
            log.warning("tasks: could not write %d task records to Redis: %s: %s",
                        len(records), type(exc).__name__, exc)

    async def load(self, task_id: str) -> TaskRecord | None:
        try:
            with anyio.fail_after(max(self.timeout, 0.25)):
                blob = await self._redis.get(KEY_PREFIX + task_id)
        except Exception as exc:
            self.errors += 1
            log.warning("tasks: could not read task %s from Redis: %s: %s", task_id,
                        type(exc).__name__, exc)
            return None
        if not isinstance(blob, bytes):
            return None
        return TaskRecord.from_blob(blob)
