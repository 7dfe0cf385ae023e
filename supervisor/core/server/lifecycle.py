"""A server's lifecycle: what it is (state, reason, since) and what it was asked to be.

`start`, `stop` and `restart` say what is wanted; `supervise` is the loop that makes it so, one run
of the slots at a time: stopped until wanted, unavailable while a prerequisite is missing (looked
at again when poked, or every `IDLE_RECHECK`), else the slots run until stopped, restarted or given
up. A per-client server runs no slots: it is ready at once and its client instances start on use.

Every state change is logged, published (the dashboard, `mcpctl status --watch`) and kept in a
short history; `wait_settled` lets a caller wait for a state that is not transitional.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from supervisor.policy.states import SERVING, State
from supervisor.telemetry.logs import REDACT

from .deadlines import IDLE_RECHECK

if TYPE_CHECKING:
    from supervisor.config import ServerConfig
    from supervisor.policy.breaker import CircuitBreaker

    from ..clock import Clock
    from ..instance import Instance
    from .capacity import Capacity
    from .intake import Admission
    from .restarts import RestartBook
    from .slots import Slots

log = logging.getLogger("mcp_supervisor.server")

HISTORY = 50  # state changes kept for `supervisor/status {detail: true}`


class LifeHost(Protocol):
    """The server whose life this is: what it checks before a start."""

    @property
    def name(self) -> str: ...
    @property
    def config(self) -> ServerConfig: ...
    @property
    def handshake(self) -> Instance | None: ...
    async def load_secrets(self) -> None: ...
    def check_prerequisites(self) -> str | None: ...
    def describe_variables(self) -> str: ...
    def note(self, text: str) -> None:
        """A line of our own in the server's log."""


class ClientRunner(Protocol):
    """A per-client server's instances, as its lifecycle runs them (`facade.ClientSet`)."""

    @property
    def taken(self) -> int: ...
    @property
    def cap(self) -> int: ...
    def any_instance(self) -> object: ...
    def stop_all(self, why: str) -> None: ...
    async def run(self) -> None: ...


class Lifecycle:
    def __init__(self, host: LifeHost, clock: Clock, publish: Callable[[dict[str, Any]], None],
                 slots: Slots, admission: Admission, capacity: Capacity, book: RestartBook,
                 breaker: CircuitBreaker, instances: list[Instance]) -> None:
        self.host = host
        self.clock = clock
        self._publish = publish
        self.slots = slots
        self.admission = admission
        self.capacity = capacity
        self.book = book
        self.breaker = breaker
        self.instances = instances  # the server's, shared
        self.clients: ClientRunner | None = None  # sharing = "per-client"
        self.state = State.STOPPED
        self.reason = "not started yet"
        self.since = clock.time()
        # The dashboard's detail screen: the last state changes, with times.
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY)
        self.desired = host.config.start == "eager"
        self.failed = False
        self.stopping = False
        self.idle_stopped = False  # stopped by idle_stop_after: the next request starts it again
        self._stop_reason = "stopped"
        self._poke = anyio.Event()
        self._changed = anyio.Event()

    def set(self, state: State, reason: str) -> None:
        reason = REDACT(reason)  # reasons quote the child's stderr and errors: never a secret
        if state == self.state and reason == self.reason:
            return
        self.state = state
        self.reason = reason
        self.since = self.clock.time()
        self.history.append({"at": self.since, "state": str(state), "reason": reason})
        self.changed()
        name = self.host.name
        log.info("%s: %s%s", name, state, f" ({reason})" if reason else "")
        self._publish({"type": "state", "server": name, "state": str(state), "reason": reason,
                       "at": self.since})

    def changed(self) -> None:
        """Wake whoever waits for the server to settle (the state, or a per-client handshake)."""
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_settled(self, timeout: float) -> None:
        """Wait until the server is in a state that is not transitional (or the timeout)."""
        if self.clients is not None and self.host.handshake is None and self.state in SERVING:
            self.clients.any_instance()  # the first handshake needs a child: start the spare
        with anyio.move_on_after(timeout):
            while self.transitional:
                await self._changed.wait()

    @property
    def transitional(self) -> bool:
        if self.clients is not None and self.state in SERVING:
            return self.host.handshake is None  # until the first instance has done its handshake
        return self.state in (State.STARTING, State.STOPPING, State.BACKOFF) or (
            self.desired and self.state == State.STOPPED and not self.failed)

    # ---- what is wanted -------------------------------------------------------------------------

    def start(self) -> None:
        self.desired = True
        self.failed = False
        self.idle_stopped = False
        self.slots.tracker.reset()
        self._recheck()
        self._poke.set()

    def start_on_request(self) -> bool:
        """A request came to a stopped server: start it if it stops only until then (lazy, or
        stopped while idle). True when it will start (the request waits in the queue)."""
        if not self.failed and (
                (self.host.config.start == "lazy" and self.state == State.STOPPED)
                or (self.idle_stopped and self.state in (State.STOPPED, State.STOPPING))):
            self.start()
            return True
        return False

    def _recheck(self) -> None:
        """A server that is not running and was asked to (re)start is `starting` at once: an
        unavailable one looks at its prerequisites again (a key may have been set, a package
        installed), a failed one is revived. A caller waiting for it to settle then waits for the
        outcome instead of reading the old state (and exiting 1 on it)."""
        if self.slots.scope is None and self.state in (State.UNAVAILABLE, State.FAILED):
            self.set(State.STARTING, "checking prerequisites" if self.state == State.UNAVAILABLE
                     else "restarting")

    def stop(self, reason: str = "stopped") -> None:
        self.desired = False
        self.idle_stopped = False
        self._stop_reason = reason
        if self.clients is not None:
            if self.state in SERVING:
                self.set(State.STOPPING, "stopping the client instances")
            self.clients.stop_all(reason)
            return
        if self.slots.scope is not None:
            self.stopping = True
            for inst in self.instances:
                inst.request_stop()
            self.set(State.STOPPING, "stop requested")
            self.slots.cancel()
        else:
            self._poke.set()

    def idle_stop(self, reason: str) -> None:
        """Stopped for being idle: the next request starts it again."""
        self.stop(reason)
        self.idle_stopped = True

    def restart(self, reason: str = "manual") -> None:
        """Replace every child now: an operator's `restart` ("manual"), a reload ("config").

        Forgets the restart history and closes the breaker: someone decided to try again.
        """
        self.book.count(reason, reason)
        if self.clients is not None:
            self.clients.stop_all(f"restarting ({reason})")  # new instances on next use
            return
        self.desired = True
        self.failed = False
        self.idle_stopped = False
        self.slots.tracker.reset()
        self.breaker.reset()
        if self.slots.scope is not None:
            for inst in self.instances:
                if inst.restart_reason is None:
                    inst.restart_reason = reason
            # Transitional at once, so a caller waiting for the server to settle waits for the
            # new child rather than seeing the old one still "ready".
            self.set(State.STOPPING, f"restarting ({reason})")
            self.slots.cancel()
        self._recheck()
        self._poke.set()

    def give_up(self, reason: str, state: State = State.FAILED) -> None:
        """The slots cannot go on (a crash loop, no command): every child ends, and the server
        stays `state` until started again (an unavailable one looks again when poked)."""
        self.failed = state == State.FAILED
        if state == State.UNAVAILABLE:
            self.desired = True
        self.set(state, reason)
        self.admission.fail_queue(f"server '{self.host.name}' {state}: {reason}")
        if self.slots.scope is not None:
            for inst in self.instances:
                inst.request_stop()
            self.slots.cancel()

    # ---- making it so ---------------------------------------------------------------------------

    async def supervise(self) -> None:
        """The server's whole life (runs until cancelled)."""
        if self.clients is not None:
            await self._per_client(self.clients)
            return
        host = self.host
        name = host.name
        while True:
            if not self.desired or self.failed:
                if not self.failed and self.state != State.UNAVAILABLE:
                    if host.config.start == "lazy" and not self.admission.calls_total:
                        self._stop_reason = "lazy: starts on first request"
                    self.set(State.STOPPED, self._stop_reason)
                await self._wait_poke()
                continue
            await host.load_secrets()
            unavailable = host.check_prerequisites()
            if unavailable:
                self.set(State.UNAVAILABLE, unavailable)
                self.admission.fail_queue(f"server '{name}' is unavailable: {unavailable}")
                await self._wait_poke()
                continue
            self.set(State.STARTING, "spawning")
            host.note(f"starting: {host.describe_variables()}")
            if self.capacity.autoscaler is not None:
                self.capacity.autoscaler.reset()
            await self.slots.run()
            self.stopping = False
            if not self.desired:
                self.admission.fail_queue(f"server '{name}' was stopped")

    async def _wait_poke(self) -> None:
        with anyio.move_on_after(IDLE_RECHECK):
            await self._poke.wait()
        self._poke = anyio.Event()

    def per_client_reason(self) -> str:
        assert self.clients is not None
        taken = self.clients.taken
        return (f"per-client: {taken} client instance{'s' if taken != 1 else ''} "
                f"of at most {self.clients.cap}")

    async def _per_client(self, clients: ClientRunner) -> None:
        """A per-client server: ready at once (its instances start on first use), until stopped."""
        while True:
            if not self.desired:
                self.set(State.STOPPED, self._stop_reason)
                await self._wait_poke()
                continue
            unavailable = self.host.check_prerequisites()
            if unavailable:
                self.set(State.UNAVAILABLE, unavailable)
                await self._wait_poke()
                continue
            self.set(State.READY, self.per_client_reason())
            await clients.run()  # returns once stop() asked and every instance has stopped
