"""Resumable SSE streams of legacy HTTP sessions (`Last-Event-ID`, 2025-03-26 … 2025-11-25).

Every SSE stream a legacy session gets (the answer stream of a POST, and the session's GET stream)
numbers its events `STREAM_SEQ` and keeps the last ones in a `ReplayStream`, bounded in events and
bytes. A POST stream starts with a priming event (an id and empty data, as the spec advises), so a
client that loses the connection can always say where it was. A client that comes back with
`GET` + `Last-Event-ID` gets what that stream sent after the id, then the stream carries on: a call
still running keeps its answer for the reconnect (on a legacy session a dropped connection is not
a cancellation; `notifications/cancelled` is), and the GET stream goes on with new notifications.
Events of other streams are never replayed on it.

A session keeps at most `MAX_STREAMS` of them; the oldest finished one goes first, and a call whose
stream has to go is cancelled (nobody could ever collect its answer).
"""

from __future__ import annotations

import secrets
from collections import deque
from typing import Any

import orjson

MAX_EVENTS = 1000  # kept per stream for a reconnect
MAX_BYTES = 4 * 1024 * 1024  # ... and at most this many bytes of them
MAX_STREAMS = 64  # per session
RETRY_MS = 1000  # the reconnection delay the priming event suggests


class ReplayStream:
    """One SSE stream's numbered events, the last ones kept."""

    __slots__ = ("call", "finished", "id", "kept", "kept_bytes", "seq", "taken")

    call: Any

    def __init__(self, call: Any = None) -> None:
        self.id = secrets.token_urlsafe(6).replace("_", "x")  # `_` separates id and sequence
        self.seq = 0
        self.kept: deque[tuple[int, bytes]] = deque()
        self.kept_bytes = 0
        self.call = call  # the POST call whose answer this stream carries (None: the GET stream)
        self.finished = False  # the call's answer has been framed: nothing more will come
        self.taken = False  # a client is reading it now

    def _keep(self, frame: bytes) -> bytes:
        self.kept.append((self.seq, frame))
        self.kept_bytes += len(frame)
        while len(self.kept) > MAX_EVENTS or self.kept_bytes > MAX_BYTES:
            _, old = self.kept.popleft()
            self.kept_bytes -= len(old)
        return frame

    def prime(self) -> bytes:
        """The first event of a POST stream: an id to resume from, a retry hint, no data."""
        self.seq += 1
        return self._keep(f"id: {self.id}_{self.seq}\nretry: {RETRY_MS}\ndata: \n\n".encode())

    def frame(self, message: Any) -> bytes:
        self.seq += 1
        return self._keep(f"id: {self.id}_{self.seq}\nevent: message\ndata: ".encode()
                          + orjson.dumps(message) + b"\n\n")

    def after(self, seq: int) -> list[bytes] | None:
        """What was sent after event `seq`; None when some of it is no longer kept."""
        if seq > self.seq:
            return None
        frames = [frame for n, frame in self.kept if n > seq]
        if self.seq - seq > len(frames):
            return None
        return frames


def parse_event_id(raw: bytes | None) -> tuple[str, int] | None:
    """`Last-Event-ID: STREAM_SEQ` -> (stream id, seq); None when it is not one of ours."""
    if raw is None:
        return None
    text = raw.decode("latin-1").strip()
    stream, sep, seq = text.rpartition("_")
    if not sep or not stream or not seq.isdigit() or len(text) > 64:
        return None
    return stream, int(seq)


class SessionStreams:
    """A legacy session's resumable streams, by stream id (bounded)."""

    def __init__(self) -> None:
        self.streams: dict[str, ReplayStream] = {}

    def open(self, call: Any = None) -> tuple[ReplayStream, list[ReplayStream]]:
        """A new stream, and those evicted to make room for it (their calls must be cancelled)."""
        stream = ReplayStream(call)
        evicted: list[ReplayStream] = []
        while len(self.streams) >= MAX_STREAMS:
            calls = [s for s in self.streams.values() if s.call is not None and not s.taken]
            victim = next((s for s in calls if s.finished), calls[0] if calls else None)
            if victim is None:
                break
            del self.streams[victim.id]
            evicted.append(victim)
        self.streams[stream.id] = stream
        return stream, evicted

    def get(self, stream_id: str) -> ReplayStream | None:
        return self.streams.get(stream_id)
