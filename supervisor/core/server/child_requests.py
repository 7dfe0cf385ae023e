"""A child asks its client something (sampling, elicitation, roots): which client it goes to.

Only the one client whose call can have caused it may get it: among the calls the child has in
flight, the sinks that can forward a server request and are not parked waiting on their own
client's input_required retry. With none, or more than one, the child is told we cannot route it;
`roots/list` goes only to a 2026-07-28 call (everyone else gets the entry's roots: none).
"""

from __future__ import annotations

from supervisor.errors import INTERNAL_ERROR
from supervisor.wire.jsonrpc import Message, error_response

from ..instance import Instance


def answer_child_request(instance: Instance, message: Message) -> None:
    sinks = {id(p.sink): p.sink for p in instance.pending.values()}
    candidates = [s for s in sinks.values() if hasattr(s, "forward_server_request")
                  and not getattr(s, "awaiting_client", False)]
    roots = message["method"] == "roots/list"
    if roots:
        candidates = [s for s in candidates if getattr(s, "translates_input", False)]
    if len(candidates) == 1 and candidates[0].forward_server_request(instance, message):
        return
    if roots:
        instance.send({"jsonrpc": "2.0", "id": message["id"], "result": {"roots": []}})
        return
    instance.send(error_response(
        message["id"], INTERNAL_ERROR,
        f"mcp-supervisor cannot route {message['method']}: {len(candidates)} clients have "
        "requests in flight on this server, so the one that caused it is unknown"))
