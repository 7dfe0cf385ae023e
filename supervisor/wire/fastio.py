"""What the hot paths ask of the runtime beyond public APIs: the event loop, the collector, uvicorn.

Every trick that leans on asyncio's, uvloop's or uvicorn's internals, or tunes the interpreter for
the daemon's workload, lives here behind a small interface, with contract tests
(tests/test_fastio.py) that fail when an upgrade changes what a trick relies on:

- `run(main)`: the daemon's event loop: asyncio's own; uvloop (anyio's `use_uvloop`) with
  `MCP_SUPERVISOR_LOOP=uvloop` when it is installed. Not the default: the outbox batches the writes
  of many HTTP requests into one only by looking at asyncio's ready queue, which uvloop does not
  expose, and at 100 and 500 connections that cost more than uvloop saved (BENCHMARKS.md).
- `tune_gc()`: fewer, cheaper garbage collections for a process whose allocations are almost all
  short-lived per-message dicts, and the start-up heap frozen out of every later collection.
- `pipe_transport(stream)` / `pipe_sender(transport, high_water)`: the loop transport under
  anyio's stream to a child's stdin (asyncio's or uvloop's), and a non-blocking write to it for
  `Outbox`'s direct path: one syscall in the routing callback instead of a pump task's wake-up.
- `watch_hang_up(receive, callback)` / `hung_up(cycle)`: an HTTP request waiting for its answer
  learns that its client closed the connection from the connection itself, with no task and no
  timer per request.
- `read_pipe_with_callback(stream, feed)`: a child's stdout fed from the pipe transport's own read
  callback (its protocol swapped for the read's lifetime) instead of through anyio's `receive`.
- `write_can_wait(loop)`: whether a batch's write may wait for the end of the loop pass, to join
  what other callbacks push, at no extra wait for I/O (asyncio: its ready queue is not empty;
  uvloop shows no queue: None).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import anyio

# Generation 0 is collected after this many net allocations of container objects (CPython's
# default is 700). A busy door allocates a few dozen per call and frees nearly all of them by
# reference counting, so at 700 a collection ran every ~20 calls and re-traversed whatever those
# calls still held (under 500 connections: every in-flight request's frames, futures and dicts).
# Measured with gc.callbacks at 500 HTTP connections (BENCHMARKS.md): about a fifth of the
# daemon's CPU went to the collector at the default, less than half that at 10,000, and the
# collections that reached generation 2 (the long pauses in the tail) went from one every two
# seconds to none in the window. Cycles are still collected; generations 1 and 2 keep their
# defaults relative to this one.
GEN0_THRESHOLD = 10_000

LOOP_ENV = "MCP_SUPERVISOR_LOOP"


def uvloop_installed() -> bool:
    # find_spec, not import: asking must not load the loop (nor need its stubs to type-check).
    return importlib.util.find_spec("uvloop") is not None


def loop_name(environ: Mapping[str, str] | None = None) -> str:
    """The event loop `run` uses: "uvloop" when it is installed, unless `MCP_SUPERVISOR_LOOP=asyncio`
    asks for asyncio's own; "asyncio" when it is not installed."""
    env = os.environ if environ is None else environ
    if env.get(LOOP_ENV, "").strip().lower() != "asyncio" and uvloop_installed():
        return "uvloop"
    return "asyncio"


def run(main: Callable[[], Awaitable[Any]], environ: Mapping[str, str] | None = None) -> Any:
    """Run `main` on the daemon's event loop (`loop_name`) and return what it returns."""
    uvloop = loop_name(environ) == "uvloop"
    return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": uvloop})


def tune_gc() -> None:
    """Set the collector up for a long-running daemon: a higher generation-0 threshold, and the
    heap built so far (modules, config, the fleet's objects) frozen, so no later collection walks
    it again. Call once, after start-up and before serving."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
    gc.collect()
    gc.freeze()


# ---- a child's stdin: written straight from the routing callback ----------------------------------


class WriteBuffered(Protocol):
    """What a loop write transport offers (asyncio's are `asyncio.WriteTransport`; uvloop's are
    not subclasses of it, so this is duck-typed)."""

    def write(self, data: bytes) -> None: ...
    def is_closing(self) -> bool: ...
    def get_write_buffer_size(self) -> int: ...


def pipe_transport(stream: Any) -> WriteBuffered | None:
    """The transport under anyio's asyncio-backend byte stream to a process's stdin (a
    `StreamWriterWrapper` around an `asyncio.StreamWriter`), or None when it is not that."""
    transport = getattr(getattr(stream, "_stream", None), "transport", None)
    if all(callable(getattr(transport, name, None)) for name in ("write", "is_closing",
                                                                 "get_write_buffer_size")):
        return transport
    return None


def pipe_sender(transport: WriteBuffered, high_water: int) -> Callable[[bytes], int]:
    """A non-blocking write for `Outbox`'s direct path: the transport writes at once when its
    buffer is empty and buffers in order otherwise. Past `high_water` buffered bytes it takes
    nothing, so the pump's `send` (which awaits `drain`) applies the back-pressure."""
    def send(data: bytes) -> int:
        if transport.is_closing() or transport.get_write_buffer_size() > high_water:
            return 0
        transport.write(data)
        return len(data)
    return send


# ---- uvicorn: the client of a waiting request hung up ---------------------------------------------

_HANG_UP = "_mcp_supervisor_hang_up"


def watch_hang_up(receive: Callable[[], Awaitable[Any]], callback: Callable[[], None]) -> bool:
    """Have `callback` called when the client of the ASGI request whose `receive` this is closes
    its connection, once, from the loop. True when it is watched (uvicorn's httptools cycle, whose
    protocol calls `hung_up`); False otherwise, and the caller must watch some other way. If the
    client is already gone the callback runs now. `unwatch_hang_up` when the answer is written."""
    cycle = getattr(receive, "__self__", None)
    if cycle is None or not hasattr(cycle, "disconnected") or not hasattr(cycle, "__dict__"):
        return False
    if cycle.disconnected:
        callback()
        return True
    setattr(cycle, _HANG_UP, callback)
    return True


def unwatch_hang_up(receive: Callable[[], Awaitable[Any]]) -> None:
    cycle = getattr(receive, "__self__", None)
    if cycle is not None:
        vars(cycle).pop(_HANG_UP, None)


def hung_up(cycle: Any) -> None:
    """For the door's protocol, in `connection_lost`: the connection of `cycle` (its last request
    cycle, or None) is gone; tell whoever watches that request."""
    if cycle is not None:
        callback = vars(cycle).pop(_HANG_UP, None)
        if callback is not None:
            callback()


# ---- a child's stdout: routed from the pipe transport's read callback -----------------------------

PIPE_READ_SIZE = 65536  # under glibc's mmap threshold: a bigger read buffer costs mmap+munmap per read


class _FeedProtocol(asyncio.Protocol):
    """Stands in for the pipe transport's own protocol while `read_pipe_with_callback` runs.

    Each chunk the transport reads goes to `feed` right there; end of stream and errors are passed
    on to the protocol it replaced, which keeps the subprocess transport's bookkeeping (it reaps
    the child only once every pipe reported closed)."""

    def __init__(self, original: asyncio.BaseProtocol, feed: Callable[[bytes], None]) -> None:
        self.original = original
        self.feed = feed
        self.done = anyio.Event()
        self.failure: BaseException | None = None

    def data_received(self, data: bytes) -> None:
        if self.failure is not None:
            return
        try:
            self.feed(data)
        except BaseException as exc:  # surface it in the reading task, not the loop's handler
            self.failure = exc
            self.done.set()

    def eof_received(self) -> bool | None:
        eof_received = getattr(self.original, "eof_received", None)
        return eof_received() if eof_received is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.original.connection_lost(exc)
        finally:
            self.done.set()


def _resume(transport: Any) -> None:
    """Make sure the transport reads: the StreamReader pauses it while its buffer is full."""
    try:
        paused = not transport.is_reading()
    except NotImplementedError:
        # Pipe transports gained is_reading in a 3.11 point release (Debian's 3.11.2 lacks it and
        # inherits ReadTransport's, which raises); resume_reading is a no-op on a transport that
        # is reading, so ask it anyway.
        paused = True
    if paused:
        transport.resume_reading()


async def read_pipe_with_callback(stream: Any, feed: Callable[[bytes], None]) -> bool:
    """Feed what arrives on anyio's receive stream of a process pipe (asyncio backend) to `feed`
    from the pipe transport's read callback, until end of stream; False (nothing read) when
    `stream` is not that, and the caller reads with `receive`.

    anyio's `receive` costs a future, a task wake-up and an extra loop pass per chunk (the
    transport already read the data in a callback, then hands it to a StreamReader the task
    awaits). Swapping the transport's protocol for this call's lifetime feeds each chunk where it
    is read; the swap is undone when the call ends, however it ends. What the StreamReader took in
    before the swap goes first, in the same step, then what was still on its way to it, so no byte
    is lost or reordered. An exception
    from `feed` ends the read and is raised here. Measured in BENCHMARKS.md."""
    reader = getattr(stream, "_stream", None)
    transport = getattr(reader, "_transport", None)
    buffer = getattr(reader, "_buffer", None)
    if (not isinstance(reader, asyncio.StreamReader) or not isinstance(buffer, bytearray)
            or not hasattr(transport, "set_protocol") or not hasattr(transport, "get_protocol")):
        return False
    assert transport is not None
    original = transport.get_protocol()
    proto = _FeedProtocol(original, feed)
    if buffer:
        data = bytes(buffer)
        buffer.clear()
        feed(data)
    if reader.at_eof():
        return True
    with contextlib.suppress(AttributeError):  # asyncio's pipe transports read max_size at a time
        transport.max_size = PIPE_READ_SIZE
    transport.set_protocol(proto)
    # A chunk the transport read just before the swap may still be on its way to the StreamReader
    # (both loops' subprocess transports hand pipe data over with call_soon): it comes to `feed`
    # too, and before anything read after the swap, which can only arrive in a later pass.
    setattr(reader, "feed_data", proto.data_received)  # noqa: B010  # shadows the method on this one
    try:
        _resume(transport)
        await proto.done.wait()
    finally:
        vars(reader).pop("feed_data", None)
        if transport.get_protocol() is proto:
            transport.set_protocol(original)
    if proto.failure is not None:
        raise proto.failure
    return True


# ---- the loop pass in progress: may a batch's write wait for the rest of it? ----------------------


def write_can_wait(loop: asyncio.AbstractEventLoop) -> Callable[[], int] | None:
    """A check, cheap enough for every message, of whether a write deferred now (`call_soon`)
    joins what the rest of this loop pass pushes at no extra wait for I/O: not 0 when it may wait.

    asyncio runs a callback queued now in its next pass, after a `select`; that select costs
    nothing extra only when other callbacks are queued already (then it does not block, and they
    may push to the same outboxes): the length of its ready queue. None for a loop that shows no
    ready queue (uvloop): the caller must judge otherwise. (uvloop runs what an I/O callback
    queues after every other I/O callback of the same poll and before the next poll; what a task
    queues, after one poll that does not block.)"""
    ready = getattr(loop, "_ready", None)
    length = getattr(ready, "__len__", None)
    if callable(length):
        count: Callable[[], int] = length
        return count
    return None


__all__ = [
    "GEN0_THRESHOLD",
    "LOOP_ENV",
    "PIPE_READ_SIZE",
    "WriteBuffered",
    "hung_up",
    "loop_name",
    "pipe_sender",
    "pipe_transport",
    "read_pipe_with_callback",
    "run",
    "tune_gc",
    "unwatch_hang_up",
    "uvloop_installed",
    "watch_hang_up",
]
