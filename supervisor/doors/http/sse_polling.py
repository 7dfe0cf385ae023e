"""SSE polling (2025-11-25 Streamable HTTP, SEP-1699): letting go of a slow call's POST connection.

Since 2025-11-25 a server that has sent an event id on a stream may close the connection before the
answer ("at will"), saying with the SSE `retry` field how long the client should wait; the client
then reconnects with `GET` + `Last-Event-ID` and the stream carries on there. The daemon does so
for a call of a 2025-11-25 session still unanswered `[http] sse_poll_after` after it arrived:

    client ── POST tools/call ─────────────► daemon ── tools/call ──► child (still working)
    client ◄─ id: S_1, retry: 1000, data: "" ── (events so far) ── retry ── connection closed
    client ── GET, Last-Event-ID: S_1 ─────► daemon
    client ◄─ what S sent after S_1 ... the answer ◄──────────────────────── child

So no client holds a connection through a proxy for the length of a long call at first asking; the
resumed stream stays open until the answer (the client reconnects once, as the reference SDKs do),
and the numbered events and their replay are `sse_replay.py`'s. Older sessions (2025-06-18 and
before) have no such reconnection, and 2026-07-28 calls no resumption at all: their responses
stay open until the answer.
"""

from __future__ import annotations

import time
from typing import Any

from supervisor.wire import protocol

from .sse_replay import RETRY_MS

# The legacy versions whose clients reconnect to a stream the server closed (SEP-1699).
POLLING_VERSIONS = frozenset(v for v in protocol.LEGACY_VERSIONS if v >= "2025-11-25")

# Sent before closing a stream that is not finished: when to come back (no id, no data, so it
# dispatches nothing and is not kept for replay).
RETRY_FRAME = f"retry: {RETRY_MS}\n\n".encode()


def session_polls(requested_version: Any) -> bool:
    """Whether a session opened with `initialize` asking for this version may be polled."""
    return protocol.negotiate_legacy(requested_version) in POLLING_VERSIONS


def poll_deadline(after: float, session: Any) -> float | None:
    """The monotonic time at which a call arriving now has its POST connection let go, or None
    when it is held until the answer (polling off, or a session that cannot reconnect)."""
    if after <= 0 or not getattr(session, "polls", False):
        return None
    return time.monotonic() + after
