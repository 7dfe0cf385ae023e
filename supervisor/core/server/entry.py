"""A request's way in to a server, before admission: every check that can answer it first.

`submit` takes one request through, in order: a per-client server hands it to its client's own
instance; the tool policy's gate may refuse it (or wrap the sink); a capability the child never
declared is answered here (an empty list, or -32601) without asking the child; the cache may
answer it or join it to an identical request in flight. What is left goes to `Admission.route`.
`cancel` and `drop` take a client's requests back the same way (the cache's flights first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from supervisor.wire import protocol

from .admission import undeclared_answer

if TYPE_CHECKING:
    from supervisor.wire.jsonrpc import Message, Sink

    from ..cache.front import CacheFront
    from ..instance import Instance
    from .intake import Admission
    from .tools import ToolPolicy


class Handshaken(Protocol):
    """The server, for what changes under the entry: which child answered the handshake."""

    @property
    def name(self) -> str: ...
    @property
    def handshake(self) -> Instance | None: ...


class ClientRouter(Protocol):
    """A per-client server's instances, as requests reach them (`facade.ClientSet`)."""

    def submit(self, sink: Sink, message: Message, client_modern: bool) -> None: ...
    def cancel(self, sink: Sink, client_id: Any, reason: str) -> bool: ...
    def drop_sink(self, sink: Sink) -> int: ...


class Entry:
    def __init__(self, server: Handshaken, tools: ToolPolicy, cache: CacheFront | None,
                 admission: Admission, clients: ClientRouter | None) -> None:
        self.server = server
        self.tools = tools
        self.cache = cache
        self.admission = admission
        self.clients = clients

    def submit(self, sink: Sink, message: Message, client_modern: bool) -> None:
        """Route one request; its answer (or a precise error) is delivered to `sink`."""
        if self.clients is not None:
            self.clients.submit(sink, message, client_modern)  # to the client's own instance
            return
        gate = self.tools.gate
        if gate is not None and message["method"] in gate.methods:
            admitted = gate.admit(sink, message)
            if admitted is None:
                return  # refused by the tool policy
            sink = admitted
        capability = protocol.METHOD_CAPABILITY.get(message["method"])
        if capability is not None:
            child = self.server.handshake
            if child is not None and capability not in child.capabilities:
                # The child never sees a call it said it cannot serve.
                sink.deliver(undeclared_answer(self.server.name, message, capability, client_modern))
                return
        cache = self.cache
        if cache is not None and message["method"] in cache.methods:
            routed = cache.intercept(sink, message, client_modern)
            if routed is None:
                return  # answered from the cache, or joined an identical request in flight
            sink = routed
        self.admission.route(sink, message, client_modern)

    def cancel(self, sink: Sink, client_id: Any, reason: str = "cancelled by the client") -> bool:
        """A client's notifications/cancelled: drop it from the queue or cancel it in the child."""
        if self.clients is not None:
            return self.clients.cancel(sink, client_id, reason)
        left_flight = False
        if self.cache is not None:
            held, orphan = self.cache.withdraw(sink, client_id)
            if held:
                if orphan is None:
                    return True  # others still wait for the same answer: the child keeps working
                # Nobody waits any more: cancel the shared request itself.
                sink, client_id, left_flight = orphan, orphan.routed_id, True
        return self.admission.cancel(sink, client_id, reason) or left_flight

    def drop_sink(self, sink: Sink) -> int:
        """The client went away: forget its queued requests and cancel its in-flight ones."""
        if self.clients is not None:
            return self.clients.drop_sink(sink)
        dropped = 0
        if self.cache is not None:
            for flight in self.cache.leave_all(sink):
                if self.cancel(flight, flight.routed_id, "the client disconnected"):
                    dropped += 1
        return dropped + self.admission.drop(sink)
