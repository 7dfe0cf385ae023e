"""Deadlines: one sweeper task per server, not a timer per request.

Every `SWEEP_INTERVAL` while anything is queued or in a child, the sweeper asks its `Expiring`
(the server's admission) to end what is past its deadline. With nothing to watch it sleeps until
`wake` (admission calls it when it takes a request and the sweeper is `idle`), so an idle server
costs no wake-ups.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import anyio

SWEEP_INTERVAL = 0.05
IDLE_RECHECK = 30.0


class Expiring(Protocol):
    """What the sweeper watches."""

    @property
    def busy(self) -> bool:
        """Anything queued or in flight, so anything that can expire."""
    def expire(self, now: float) -> None: ...


class Sweeper:
    def __init__(self, target: Expiring, monotonic: Callable[[], float]) -> None:
        self._target = target
        self._monotonic = monotonic
        self.idle = True
        self._work = anyio.Event()

    def wake(self) -> None:
        self.idle = False
        self._work.set()

    async def run(self) -> None:
        while True:
            if not self._target.busy:
                self.idle = True
                self._work = anyio.Event()
                with anyio.move_on_after(IDLE_RECHECK):
                    await self._work.wait()
                continue
            await anyio.sleep(SWEEP_INTERVAL)
            self._target.expire(self._monotonic())
