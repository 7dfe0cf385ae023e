"""`FirstAnswer`: a sink for one request whose answer somebody awaits.

The daemon's own requests to a child (handshake, lists, probes) and a control-socket
`supervisor/call` all need the same thing from a `Sink`: keep the first answer (a message without
a `method`), wake the waiter, and drop what comes after (a late duplicate, a notification about the
request). Anything richer (progress, streaming, several answers) is its own sink.
"""

from __future__ import annotations

import anyio

from supervisor.wire.jsonrpc import Message


class FirstAnswer:
    """The first answer delivered wins; `event` is set when it lands."""

    __slots__ = ("event", "message")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.message: Message | None = None

    def deliver(self, message: Message) -> None:
        if self.message is None and "method" not in message:
            self.message = message
            self.event.set()
