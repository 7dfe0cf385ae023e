"""One configured server: its instances, its state, its restart policy, and admission of requests.

Admission is synchronous: a request either goes straight to the least-loaded ready instance, waits
in a bounded queue, or is refused at once ("server busy"), so an overloaded server never makes a
caller hang. Deadlines are enforced by one sweeper task per server, not a timer per request.

`Server` (facade.py) is the facade: it builds the parts, gives each the shared lists and objects
it reads, and ties them together. Each part is one idea; where it must ask its server something it
declares what as a Protocol, so none imports the facade:

    entry       a request's way in: per-client instance, tool gate, undeclared capability, cache
    intake      Admission: the queue, the counters, route/admit/dispatch, how calls end
    deadlines   the sweeper that ends what is past its deadline
    admission   which instance takes a request, its deadline, when to retry a refusal (pure)
    lifecycle   state, reason, history; start, stop, restart, give up; the supervise loop
    slots       one task per child: spawn, serve, restart decision; replace, retire
    restarts    how a child ended and what its slot does next (pure), and the restart record
    derived     the server's state from its slots' and its breaker's (pure)
    probes      liveness probes and the memory ceiling
    capacity    autoscaling verdicts applied, and idle stop
    scaling     what the autoscaler is shown, and which instance a scale-down retires (pure)
    tools       the tool policy: pins, the gate, approvals, what clients see
    status      the status row and its detail
    forward     the figures the facade shows, read from the part that keeps them
    context     FleetContext (what the fleet's servers share) and the InstanceFactory
    launch      prerequisites, secrets, argv and environment of a spawn (mixin)
    childlog    the children's stderr and log messages, and the server's own notes (mixin)

Time comes from the context's injected `Clock` and children from its instance factory, so
tests/test_server_unit.py and tests/test_server_parts.py run it in-process.
"""

from .admission import Queued
from .context import FleetContext, InstanceFactory
from .facade import Attached, ClientInstance, ClientSet, Server
from .launch import missing_reason

__all__ = ["Attached", "ClientInstance", "ClientSet", "FleetContext", "InstanceFactory", "Queued", "Server",
           "missing_reason"]
