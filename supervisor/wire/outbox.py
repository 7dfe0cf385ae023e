"""Batched writes: many producers push encoded lines, one pump task writes them out together.

Routing a message must never await (that would need a task per message), so producers append to an
`Outbox` and return. Everything pushed while the event loop runs one batch of callbacks is joined
into one write, which is what makes pipelined traffic cheap: one syscall for many messages.

Two ways out. With a `direct` sender (a non-blocking write that returns how many bytes it took),
the batch is written by a `call_soon` callback at the end of the current loop pass: no task switch,
no checkpoint, one syscall. Whatever the peer cannot take right now (or any error) goes to the pump
task, which waits for the stream to become writable and reports errors. Without one, the pump does
every write. Measured with `python -m bench.profile` (see BENCHMARKS.md): the pump's wake-up,
checkpoint and Event churn were most of the daemon's per-call loop passes at low concurrency.

Read batches. A reader callback that routes a chunk of lines wraps the work in `batch()`; outboxes
that got data inside it are written when it ends, in the same loop pass, instead of one pass later:
at low concurrency that is one `epoll_wait` and one loop iteration fewer per message and hop. Only
when other callbacks are already queued in this pass (they may push to the same outboxes) is the
write left to the end-of-pass callback, so batching across connections is kept under load. Which
is which the event loop says (`fastio.write_can_wait`: asyncio's ready queue). uvloop does not say,
so the flusher judges by the last write that waited: when it joined other batches, batches wait
(load); when it joined none, they are written at once, and one in PROBE_EVERY waits to find out
whether load came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable

import anyio
from anyio.abc import ByteSendStream

from . import fastio

DirectSend = Callable[[bytes], int]


class OutboxOverflow(Exception):
    """The reader on the other side stopped reading and too much piled up."""


PROBE_EVERY = 16  # without a ready queue to look at: one batch in this many waits, to see if others join


class _Flusher:
    """Per event loop: the outboxes with data waiting for their direct write."""

    __slots__ = ("_busy", "_can_wait", "_depth", "_dirty", "_joined", "_loop", "_scheduled",
                 "_until_probe")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # the registry is keyed weakly by the loop: no cycle
        # Not 0 at the end of a batch when its write may wait for the rest of the loop pass (other
        # callbacks may push to the same outboxes) without an extra wait for I/O; None when the
        # loop does not say (uvloop), and the flusher judges by what the last waiting write joined.
        self._can_wait = fastio.write_can_wait(loop)
        self._dirty: list[Outbox] = []
        self._depth = 0
        self._scheduled = False
        self._joined = 0  # batches that ended while a write was waiting for the end of the pass
        self._busy = False  # the last waiting write joined more than one batch
        self._until_probe = PROBE_EVERY

    def add(self, outbox: Outbox) -> None:
        self._dirty.append(outbox)
        if not self._depth and not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        loop = self._loop()
        if loop is not None:
            self._scheduled = True
            loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        self._busy = self._joined > 1
        self._joined = 0
        self.flush()

    def flush(self) -> None:
        while self._dirty:
            dirty, self._dirty = self._dirty, []
            for outbox in dirty:
                outbox._flush()

    # A batch: `with flusher:` around a reader callback's routing (re-entrant).
    def __enter__(self) -> None:
        self._depth += 1

    def __exit__(self, *exc_info: object) -> None:
        self._depth -= 1
        if self._depth or not self._dirty:
            return
        if self._scheduled:  # a write is waiting for the end of this pass already: join it
            self._joined += 1
            return
        can_wait = self._can_wait
        if can_wait is not None:
            wait = bool(can_wait())
        elif self._busy:
            wait = True
        else:  # a lone batch is written now; now and then one waits, to see whether others join
            self._until_probe -= 1
            wait = self._until_probe <= 0
            if wait:
                self._until_probe = PROBE_EVERY
        if wait:
            self._joined = 1
            self._schedule()
        else:
            self.flush()


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Flusher] = weakref.WeakKeyDictionary()


def _flusher(loop: asyncio.AbstractEventLoop) -> _Flusher:
    flusher = _flushers.get(loop)
    if flusher is None:
        flusher = _flushers[loop] = _Flusher(loop)
    return flusher


def batch() -> contextlib.AbstractContextManager[None]:
    """`with batch():` around a reader callback's routing: what it pushes is written when it ends.

    Take it once, in the task that registers the callback (it is the running loop's flusher)."""
    return _flusher(asyncio.get_running_loop())


DEFAULT_LIMIT = 64 * 1024 * 1024
JOIN_EVERY = 32  # waiting lines joined into one chunk (see Outbox.push)


class Outbox:
    """Bytes for one peer. Bounded: a push that takes the backlog past `limit` drops the backlog,
    closes the outbox and makes its pump raise OutboxOverflow, so the owner ends that connection
    (or restarts that child). Checked on push, not only in the pump: a pump blocked on a peer that
    never reads would otherwise never get to look."""

    __slots__ = ("_chunks", "_closed", "_direct", "_flush_scheduled", "_flusher", "_limit", "_loose",
                 "_overflow", "_send_scope", "_sending", "_size", "_wakeup")

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._loose = 0  # chunks at the end of `_chunks` not yet joined into one (see `push`)
        self._limit = limit
        self._wakeup = anyio.Event()
        self._closed = False
        self._direct: DirectSend | None = None
        self._flusher: _Flusher | None = None
        self._flush_scheduled = False
        self._sending = False  # the pump is inside stream.send: direct writes would reorder bytes
        self._overflow: str | None = None
        self._send_scope: anyio.CancelScope | None = None  # around the pump's send: an overflow ends it

    def push(self, data: bytes) -> None:
        if self._closed:
            return
        chunks = self._chunks
        chunks.append(data)
        self._size += len(data)
        if self._size > self._limit:
            self._overflowed()
            return
        # A backlog is counted in len() bytes, but each encoded line may sit in a buffer of 4 KiB
        # or more (orjson's, see wire.jsonrpc.trimmed): a peer that stops reading could hold 40x
        # the limit in memory. Joining every JOIN_EVERY waiting lines into one exact-size chunk
        # keeps what a backlog holds within a few buffers of what it counts; each line is copied
        # once, and a peer that keeps up never gets here (its batch is written within the pass).
        self._loose += 1
        if self._loose >= JOIN_EVERY:
            self._loose = 0
            tail = chunks[-JOIN_EVERY:]
            del chunks[-JOIN_EVERY:]
            chunks.append(b"".join(tail))
        if len(chunks) == 1:
            if self._direct is not None and not self._sending:
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    # `_flusher` is set together with `_direct` (`go_direct`), so it is not None
                    # here; an assert would cost a check per message on the hot path.
                    self._flusher.add(self)  # type: ignore[union-attr]
            else:
                self._wakeup.set()

    def _flush(self) -> None:
        self._flush_scheduled = False
        direct = self._direct
        chunks = self._chunks
        if direct is None or self._sending or not chunks:
            return
        data = b"".join(chunks) if len(chunks) > 1 else chunks[0]
        try:
            sent = direct(data)
        except OSError:  # BlockingIOError included: the pump waits, and reports real errors
            sent = 0
        self._loose = 0
        if sent >= len(data):
            self._chunks = []
            self._size = 0
            return
        self._chunks = [data[sent:]]
        self._size = len(data) - sent
        self._wakeup.set()

    def _overflowed(self) -> None:
        self._overflow = f"{self._size} bytes waiting for a peer that does not read (limit {self._limit})"
        self._chunks = []
        self._size = 0
        self._loose = 0
        self._closed = True
        self._wakeup.set()
        if self._send_scope is not None:  # the pump is stuck writing to a peer that does not read
            self._send_scope.cancel()

    @property
    def size(self) -> int:
        """Bytes waiting (not counting a batch the pump is writing right now)."""
        return self._size

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def overflowed(self) -> bool:
        return self._overflow is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop accepting data; the pump writes what is queued and returns."""
        self._closed = True
        self._wakeup.set()

    async def pump(self, stream: ByteSendStream, direct: DirectSend | None = None) -> None:
        """Write batches until closed. Raises OutboxOverflow when the peer stopped reading.

        `direct`, when given, must write without blocking to the same destination as `stream`
        (raising BlockingIOError or returning a short count when it cannot take everything).
        """
        if direct is not None:
            self._flusher = _flusher(asyncio.get_running_loop())
            self._direct = direct
            if self._chunks:
                self._wakeup.set()
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = anyio.Event()
                if self._overflow is not None:
                    raise OutboxOverflow(self._overflow)
                while self._chunks:
                    chunks = self._chunks
                    self._chunks = []
                    self._size = 0
                    self._loose = 0
                    self._sending = True
                    try:
                        with anyio.CancelScope() as self._send_scope:
                            await stream.send(b"".join(chunks) if len(chunks) > 1 else chunks[0])
                    finally:
                        self._sending = False
                        self._send_scope = None
                    if self._overflow is not None:
                        raise OutboxOverflow(self._overflow)
                if self._closed:
                    return
        finally:
            self._direct = None
