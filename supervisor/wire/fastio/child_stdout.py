"""A child's stdout routed from the pipe transport's own read callback (a `fastio` trick).

anyio's `receive` on a process pipe costs a future, a task wake-up and an extra loop pass per chunk;
swapping the pipe transport's protocol for the read's lifetime feeds each chunk where it is read.
It leans on asyncio's StreamReader and the subprocess transports of asyncio and uvloop; the
contract tests are in tests/test_fastio.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import anyio

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


__all__ = ["PIPE_READ_SIZE", "read_pipe_with_callback"]
