"""Batched writes: many producers push encoded lines, one pump task writes them out together.

Routing a message must never await (that would need a task per message), so producers append to an
`Outbox` and return; the pump joins whatever accumulated into one `send`, which is also what makes
pipelined traffic cheap: one syscall for many messages.
"""

from __future__ import annotations

import anyio
from anyio.abc import ByteSendStream


class OutboxOverflow(Exception):
    """The reader on the other side stopped reading and too much piled up."""


class Outbox:
    __slots__ = ("_chunks", "_closed", "_limit", "_size", "_wakeup")

    def __init__(self, limit: int = 64 * 1024 * 1024) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._limit = limit
        self._wakeup = anyio.Event()
        self._closed = False

    def push(self, data: bytes) -> None:
        if self._closed:
            return
        self._chunks.append(data)
        self._size += len(data)
        if len(self._chunks) == 1:
            self._wakeup.set()

    @property
    def overflowing(self) -> bool:
        return self._size > self._limit

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop accepting data; the pump writes what is queued and returns."""
        self._closed = True
        self._wakeup.set()

    async def pump(self, stream: ByteSendStream) -> None:
        """Write batches until closed. Raises OutboxOverflow when the peer stopped reading."""
        while True:
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
            while self._chunks:
                if self._size > self._limit:
                    raise OutboxOverflow(f"{self._size} bytes waiting for a peer that does not read")
                chunks = self._chunks
                self._chunks = []
                self._size = 0
                await stream.send(b"".join(chunks) if len(chunks) > 1 else chunks[0])
            if self._closed:
                return
