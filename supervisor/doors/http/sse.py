"""SSE framing and the bounded frame queue of a long-lived stream (a legacy GET stream, a
2026-07-28 `subscriptions/listen` stream).

A stream holds at most `STREAM_BACKLOG` frames and `STREAM_BACKLOG_BYTES` for a client that does not
read; past either bound it is marked overflowed and ended (the client reconnects and lists again),
never grown. `PING_INTERVAL` comment lines keep proxies from closing quiet streams.
"""

from __future__ import annotations

import anyio
import orjson

from supervisor.wire.jsonrpc import Message

PING_INTERVAL = 15.0  # SSE comment lines keep proxies from closing quiet streams
# What a long-lived stream may hold for a client that does not read: past either bound the stream
# is ended (the client reconnects and lists again), never grown.
STREAM_BACKLOG = 1000
STREAM_BACKLOG_BYTES = 4 * 1024 * 1024
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no")]


def sse_event(message: Message) -> bytes:
    return b"event: message\ndata: " + orjson.dumps(message) + b"\n\n"


class _Stream:
    """SSE frames waiting for a long-lived stream (a legacy GET stream, a listen stream)."""

    __slots__ = ("frames", "overflowed", "size", "wake")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.size = 0
        self.wake = anyio.Event()
        self.overflowed = False

    def push(self, frame: bytes) -> None:
        if len(self.frames) >= STREAM_BACKLOG or self.size + len(frame) > STREAM_BACKLOG_BYTES:
            self.overflowed = True
        else:
            self.frames.append(frame)
            self.size += len(frame)
        self.wake.set()

    def take(self) -> list[bytes]:
        frames, self.frames = self.frames, []
        self.size = 0
        self.wake = anyio.Event()
        return frames
