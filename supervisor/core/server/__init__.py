"""One configured server: its instances, its state, its restart policy, and admission of requests.

Admission is synchronous: a request either goes straight to the least-loaded ready instance, waits
in a bounded queue, or is refused at once ("server busy"), so an overloaded server never makes a
caller hang. Deadlines are enforced by one sweeper task per server, not a timer per request.

`Server` is the facade; the package holds its parts, each one idea:

    context     FleetContext (what the fleet's servers share) and the InstanceFactory
    admission   which instance takes a request, its deadline, when to retry a refusal (pure)
    derived     the server's state from its slots' and its breaker's (pure)
    scaling     what the autoscaler is shown, and which instance a scale-down retires (pure)
    launch      prerequisites, secrets, argv and environment of a spawn (mixin)
    childlog    the children's stderr and log messages, and the server's own notes (mixin)

and the facade keeps what ties them together: the run loop and its slots, restart decisions,
probes, idle stop, the breaker, and status. Time comes from the context's injected `Clock` and
children from its instance factory, so tests/test_server_unit.py runs it in-process.
"""

from .admission import Queued
from .context import FleetContext, InstanceFactory
from .facade import Attached, ClientInstance, ClientSet, Server
from .launch import missing_reason

__all__ = ["Attached", "ClientInstance", "ClientSet", "FleetContext", "InstanceFactory", "Queued", "Server",
           "missing_reason"]
