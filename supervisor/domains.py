"""Failure domains: the one boundary an unexpected exception stops at.

Why. The daemon exists so that a fleet keeps running while its parts misbehave, so nothing a
client, a child or a bug in one code path does may end it. The daemon is a tree of domains
(daemon → fleet → server → instance, and beside them every client connection, every HTTP request
and every background loop); what goes wrong inside one ends that one alone:

- a **client connection** closes, with a JSON-RPC error first when the failing message had an id
  (`MessageFailed` carries it out of the routing code);
- an **instance** counts as crashed, and its server's restart policy decides what comes next;
- a **background loop** (health, stats, watcher, cache worker, log writer) is run again after a
  backoff, and the log says so;
- an **HTTP request** answers 500 with a JSON-RPC error (the HTTP door uses the same helper).

Only the daemon's own start-up and shutdown may end the daemon.

How. Each domain runs inside `domain(kind, context)`, a context manager that catches `Exception`
(never cancellation, never `KeyboardInterrupt`/`SystemExit`), logs it once with the traceback and
the context, counts it by kind (`failures`, shown in status and metrics), and calls the domain's
own `on_failure`, which does the domain's ending (close, count as crash). `loop_domain` is that
boundary for a background loop, with the restart and backoff. This is a boundary, not error
handling: expected conditions (a peer hanging up, a timeout, invalid input) are handled where they
happen, and invalid peer data is refused at the edge before it is used (see `jsonrpc.is_valid_id`,
the depth bound in `jsonrpc.loads`). What reaches a domain boundary is a bug, and the boundary
keeps it small.

Kinds are code constants (a handful), so `failures` is bounded; the context is free text for the
log only.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final

import anyio

log = logging.getLogger("mcp_supervisor.domain")

# Unexpected exceptions caught at a domain boundary since the daemon started, by domain kind.
failures: collections.Counter[str] = collections.Counter()

LOOP_BACKOFF_INITIAL: Final = 1.0
LOOP_BACKOFF_MAX: Final = 60.0
LOOP_STABLE_AFTER: Final = 60.0  # a loop that ran this long before failing starts over at the initial backoff


class MessageFailed(Exception):
    """Handling one peer message raised: carries the message's id (None when it had none) out of
    the routing code, so the connection's boundary can answer that request before it closes."""

    def __init__(self, msg_id: Any) -> None:
        super().__init__(f"handling message id={msg_id!r} failed")
        self.msg_id = msg_id


class Outcome:
    """What a `domain` block ended with: `failure` is the exception its boundary caught, if any."""

    __slots__ = ("failure",)

    def __init__(self) -> None:
        self.failure: Exception | None = None

    @property
    def failed(self) -> bool:
        return self.failure is not None


@contextlib.contextmanager
def domain(kind: str, context: str = "", *,
           on_failure: Callable[[Exception], None] | None = None) -> Iterator[Outcome]:
    """Run the block as one failure domain of `kind` ("connection", "instance", "loop", ...).

    An `Exception` raised inside is logged once (with `context` and the traceback), counted,
    handed to `on_failure`, and goes no further. Cancellation passes through untouched; from an
    exception group only the `Exception` part is caught and whatever else is in it is re-raised.
    """
    outcome = Outcome()
    try:
        yield outcome
    except Exception as exc:
        _failed(kind, context, exc, on_failure)
        outcome.failure = exc
    except BaseExceptionGroup as group:
        caught, rest = group.split(Exception)
        if caught is not None:
            _failed(kind, context, caught, on_failure)
            outcome.failure = caught
        if rest is not None:
            raise rest from None


def _failed(kind: str, context: str, exc: Exception,
            on_failure: Callable[[Exception], None] | None) -> None:
    failures[kind] += 1
    where = f"{kind} {context}" if context else kind
    log.error("%s failed and was ended alone: %s: %s", where, type(exc).__name__, exc, exc_info=exc)
    if on_failure is not None:
        try:
            on_failure(exc)
        except Exception:  # ending the domain must not raise past the boundary either
            log.exception("%s: ending it after the failure failed too", where)


async def loop_domain(name: str, loop: Callable[[], Awaitable[Any]], *,
                      backoff_initial: float = LOOP_BACKOFF_INITIAL,
                      backoff_max: float = LOOP_BACKOFF_MAX,
                      stable_after: float = LOOP_STABLE_AFTER) -> None:
    """Run the background loop `loop()` as its own domain: when it fails it is run again after a
    backoff (doubling up to `backoff_max`, back to `backoff_initial` once it ran `stable_after`
    seconds), and the log says so. Returns when `loop()` returns (a loop that ends on purpose)."""
    delay = backoff_initial
    while True:
        started = time.monotonic()
        with domain("loop", name) as outcome:
            await loop()
        if not outcome.failed:
            return
        if time.monotonic() - started >= stable_after:
            delay = backoff_initial
        log.warning("loop %s restarts in %.1fs", name, delay)
        await anyio.sleep(delay)
        delay = min(delay * 2, backoff_max)
