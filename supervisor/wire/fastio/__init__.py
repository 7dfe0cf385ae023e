"""What the hot paths ask of the runtime beyond public APIs: the event loop, the collector, uvicorn.

Every trick that leans on asyncio's, uvloop's or uvicorn's internals, or tunes the interpreter for
the daemon's workload, lives here behind a small interface, with contract tests
(tests/test_fastio.py) that fail when an upgrade changes what a trick relies on:

- `run(main)`: the daemon's event loop: uvloop (anyio's `use_uvloop`) when it is installed, unless
  `MCP_SUPERVISOR_LOOP=asyncio` asks for asyncio's own; asyncio's when it is not (BENCHMARKS.md).
- `tune_gc()`: fewer, cheaper garbage collections for a process whose allocations are almost all
  short-lived per-message dicts, and the start-up heap frozen out of every later collection.
- `pipe_transport(stream)` / `pipe_sender(transport, high_water)`: the loop transport under
  anyio's stream to a child's stdin (asyncio's or uvloop's), and a non-blocking write to it for
  `Outbox`'s direct path: one syscall in the routing callback instead of a pump task's wake-up.
- `watch_hang_up(receive, callback)` / `hung_up(cycle)`: an HTTP request waiting for its answer
  learns that its client closed the connection from the connection itself, with no task and no
  timer per request.
- `read_pipe_with_callback(stream, feed)` (`child_stdout`): a child's stdout fed from the pipe
  transport's own read callback (its protocol swapped for the read's lifetime) instead of through
  anyio's `receive`.
- `write_can_wait(loop)` (`loop_pass`): whether a batch's write may wait for the end of the loop
  pass, to join what other callbacks push, at no extra wait for I/O (asyncio: its ready queue is
  not empty; uvloop shows no queue: None).
- `http_connection`: the HTTP door's uvicorn connection (coalesced head and body writes, 64 KiB
  reads, head/body deadlines read off uvicorn's request cycle); a module of its own so that only
  a daemon with the HTTP door imports uvicorn.
"""

from __future__ import annotations

import gc
import importlib.util
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import anyio

# Generation 0 is collected after this many net allocations of container objects (CPython's
# default is 700). A busy door allocates a few dozen per call and frees nearly all of them by
# reference counting, so at 700 a collection ran every ~20 calls and re-traversed whatever those
# calls still held (under 500 connections: every in-flight request's frames, futures and dicts).
# Measured with gc.callbacks at 500 HTTP connections (BENCHMARKS.md): about a fifth of the
# daemon's CPU went to the collector at the default, less than half that at 10,000, and the
# collections that reached generation 2 (the long pauses in the tail) went from one every two
# seconds to none in the window. Cycles are still collected; generations 1 and 2 keep their
# defaults relative to this one.
GEN0_THRESHOLD = 10_000

LOOP_ENV = "MCP_SUPERVISOR_LOOP"


def uvloop_installed() -> bool:
    # find_spec, not import: asking must not load the loop (nor need its stubs to type-check).
    return importlib.util.find_spec("uvloop") is not None


def loop_name(environ: Mapping[str, str] | None = None) -> str:
    """The event loop `run` uses: "uvloop" when it is installed, unless `MCP_SUPERVISOR_LOOP=asyncio`
    asks for asyncio's own; "asyncio" when it is not installed."""
    env = os.environ if environ is None else environ
    if env.get(LOOP_ENV, "").strip().lower() != "asyncio" and uvloop_installed():
        return "uvloop"
    return "asyncio"


def run(main: Callable[[], Awaitable[Any]], environ: Mapping[str, str] | None = None) -> Any:
    """Run `main` on the daemon's event loop (`loop_name`) and return what it returns."""
    uvloop = loop_name(environ) == "uvloop"
    return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": uvloop})


def tune_gc() -> None:
    """Set the collector up for a long-running daemon: a higher generation-0 threshold, and the
    heap built so far (modules, config, the fleet's objects) frozen, so no later collection walks
    it again. Call once, after start-up and before serving."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
    gc.collect()
    gc.freeze()


# ---- a child's stdin: written straight from the routing callback ----------------------------------


class WriteBuffered(Protocol):
    """What a loop write transport offers (asyncio's are `asyncio.WriteTransport`; uvloop's are
    not subclasses of it, so this is duck-typed)."""

    def write(self, data: bytes) -> None: ...
    def is_closing(self) -> bool: ...
    def get_write_buffer_size(self) -> int: ...


def pipe_transport(stream: Any) -> WriteBuffered | None:
    """The transport under anyio's asyncio-backend byte stream to a process's stdin (a
    `StreamWriterWrapper` around an `asyncio.StreamWriter`), or None when it is not that."""
    transport = getattr(getattr(stream, "_stream", None), "transport", None)
    if all(callable(getattr(transport, name, None)) for name in ("write", "is_closing",
                                                                 "get_write_buffer_size")):
        return transport
    return None


def pipe_sender(transport: WriteBuffered, high_water: int) -> Callable[[bytes], int]:
    """A non-blocking write for `Outbox`'s direct path: the transport writes at once when its
    buffer is empty and buffers in order otherwise. Past `high_water` buffered bytes it takes
    nothing, so the pump's `send` (which awaits `drain`) applies the back-pressure."""
    def send(data: bytes) -> int:
        if transport.is_closing() or transport.get_write_buffer_size() > high_water:
            return 0
        transport.write(data)
        return len(data)
    return send


# ---- uvicorn: the client of a waiting request hung up ---------------------------------------------

_HANG_UP = "_mcp_supervisor_hang_up"


def watch_hang_up(receive: Callable[[], Awaitable[Any]], callback: Callable[[], None]) -> bool:
    """Have `callback` called when the client of the ASGI request whose `receive` this is closes
    its connection, once, from the loop. True when it is watched (uvicorn's httptools cycle, whose
    protocol calls `hung_up`); False otherwise, and the caller must watch some other way. If the
    client is already gone the callback runs now. `unwatch_hang_up` when the answer is written."""
    cycle = getattr(receive, "__self__", None)
    if cycle is None or not hasattr(cycle, "disconnected") or not hasattr(cycle, "__dict__"):
        return False
    if cycle.disconnected:
        callback()
        return True
    setattr(cycle, _HANG_UP, callback)
    return True


def unwatch_hang_up(receive: Callable[[], Awaitable[Any]]) -> None:
    cycle = getattr(receive, "__self__", None)
    if cycle is not None:
        vars(cycle).pop(_HANG_UP, None)


def hung_up(cycle: Any) -> None:
    """For the door's protocol, in `connection_lost`: the connection of `cycle` (its last request
    cycle, or None) is gone; tell whoever watches that request."""
    if cycle is not None:
        callback = vars(cycle).pop(_HANG_UP, None)
        if callback is not None:
            callback()


from .child_stdout import PIPE_READ_SIZE, read_pipe_with_callback  # noqa: E402  # after the core
from .loop_pass import write_can_wait  # noqa: E402

__all__ = [
    "GEN0_THRESHOLD",
    "LOOP_ENV",
    "PIPE_READ_SIZE",
    "WriteBuffered",
    "hung_up",
    "loop_name",
    "pipe_sender",
    "pipe_transport",
    "read_pipe_with_callback",
    "run",
    "tune_gc",
    "unwatch_hang_up",
    "uvloop_installed",
    "watch_hang_up",
    "write_can_wait",
]
