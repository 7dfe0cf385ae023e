"""May a batch's write wait for the end of the loop pass? (a `fastio` trick: asyncio's ready queue).

`Outbox` joins the writes of batches that end in the same loop pass; whether waiting for the end
of the pass is free is a property of the event loop. Contract tests in tests/test_fastio.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def write_can_wait(loop: asyncio.AbstractEventLoop) -> Callable[[], int] | None:
    """A check, cheap enough for every message, of whether a write deferred now (`call_soon`)
    joins what the rest of this loop pass pushes at no extra wait for I/O: not 0 when it may wait.

    asyncio runs a callback queued now in its next pass, after a `select`; that select costs
    nothing extra only when other callbacks are queued already (then it does not block, and they
    may push to the same outboxes): the length of its ready queue. None for a loop that shows no
    ready queue (uvloop): the caller must judge otherwise. (uvloop runs what an I/O callback
    queues after every other I/O callback of the same poll and before the next poll; what a task
    queues, after one poll that does not block.)"""
    ready = getattr(loop, "_ready", None)
    length = getattr(ready, "__len__", None)
    if callable(length):
        count: Callable[[], int] = length
        return count
    return None


__all__ = ["write_can_wait"]
