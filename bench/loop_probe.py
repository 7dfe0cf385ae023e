"""A bench-only probe of a daemon's event loop and garbage collector (`python -m bench --probe`).

The product never imports this. The bench starts a daemon with `bench/probe_site` on PYTHONPATH
and `MCP_SUPERVISOR_BENCH_PROBE=DIR`; that directory's `sitecustomize` calls `install`, which
records, for this process only (the variable is removed, so children do not inherit it):

- every collection, from `gc.callbacks`: per wall-clock second, count, wall and CPU milliseconds
  per generation, plus each pause of 1 ms or more (its generation, length and what it freed);
- the loop's lag: a timer on the loop re-arms itself every 10 ms and notes how late it ran. Per
  second, the latest it ran; and each stall over 50 ms (`MCP_SUPERVISOR_BENCH_PROBE_MS`)
  with what the loop's thread did meanwhile: CPU used, time runnable but waiting for a CPU
  (Linux schedstat: the machine was busy elsewhere), time in collections; what is left it slept
  (in the poll, or waiting for the GIL). All of it runs on the loop's own thread: a watchdog
  thread would take the GIL every few ms, and on a loaded box the loop then waits for that
  thread to be scheduled (which is what it first measured). Stacks are py-spy's job
  (`python -m bench.profile`).

It writes DIR/<pid>.json every 250 ms (from the timer) and at exit; `read` gives the records
inside a wall-clock window. Bounded: per-second buckets for one hour, the last 500 pauses and 200 stalls.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import gc
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

ENV = "MCP_SUPERVISOR_BENCH_PROBE"
ENV_MS = "MCP_SUPERVISOR_BENCH_PROBE_MS"
TICK_S = 0.01
FLUSH_S = 0.25
PAUSE_MS = 1.0
MAX_SECONDS = 3600
MAX_PAUSES = 500
MAX_STALLS = 200


class _Probe:
    def __init__(self, out: Path, stall_ms: float) -> None:
        self.out = out
        self.stall_s = stall_ms / 1000
        self.lock = threading.Lock()
        # second -> {"gc": {gen: [count, wall ms, CPU ms]}, "max_lag_ms": float}
        self.seconds: collections.OrderedDict[int, dict[str, Any]] = collections.OrderedDict()
        self.pauses: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_PAUSES)
        self.stalls: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_STALLS)
        self.gc_started = 0.0
        self.gc_cpu_started = 0.0
        self.gc_ms = 0.0  # wall milliseconds in collections so far
        # the timer's last run: perf_counter, the loop thread's CPU and run-queue wait, gc_ms
        self.last = (0.0, 0.0, 0.0, 0.0)
        self.flushed = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_tid = 0  # the kernel's id of the loop's thread, for its schedstat
        self.dirty = True

    def _second(self, wall: float) -> dict[str, Any]:
        key = int(wall)
        bucket = self.seconds.get(key)
        if bucket is None:
            bucket = self.seconds[key] = {"gc": {}, "max_lag_ms": 0.0}
            while len(self.seconds) > MAX_SECONDS:
                self.seconds.popitem(last=False)
        return bucket

    # ---- the collector -------------------------------------------------------------------------

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.gc_started, self.gc_cpu_started = time.perf_counter(), time.thread_time()
            return
        ms = (time.perf_counter() - self.gc_started) * 1000
        cpu_ms = (time.thread_time() - self.gc_cpu_started) * 1000
        wall = time.time()
        gen = str(info.get("generation"))
        with self.lock:
            self.gc_ms += ms
            count_ms = self._second(wall)["gc"].setdefault(gen, [0, 0.0, 0.0])
            count_ms[0] += 1
            count_ms[1] += ms
            count_ms[2] += cpu_ms
            if ms >= PAUSE_MS:
                self.pauses.append({"at": round(wall, 3), "generation": info.get("generation"),
                                    "ms": round(ms, 2), "cpu_ms": round(cpu_ms, 2),
                                    "collected": info.get("collected"),
                                    "uncollectable": info.get("uncollectable")})
            self.dirty = True

    # ---- the loop --------------------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called from the loop's thread when a loop starts running in it (the first one only)."""
        if self.loop is not None:
            return
        self.loop, self.loop_tid = loop, threading.get_native_id()
        self.last = (time.perf_counter(), time.thread_time(), self._run_delay(), self.gc_ms)
        self.flushed = self.last[0]
        loop.call_later(TICK_S, self._tick)

    def _tick(self) -> None:
        """The timer: how late it ran, and what the loop's thread did meanwhile."""
        now, cpu, wait, gc_ms = time.perf_counter(), time.thread_time(), self._run_delay(), self.gc_ms
        then, cpu0, wait0, gc0 = self.last
        self.last = (now, cpu, wait, gc_ms)
        late = now - then - TICK_S
        if late > 0:
            wall = time.time()
            with self.lock:
                bucket = self._second(wall)
                if late * 1000 > bucket["max_lag_ms"]:
                    bucket["max_lag_ms"] = round(late * 1000, 2)
                    self.dirty = True
                if late > self.stall_s:
                    self.stalls.append({
                        "at": round(wall - late, 3), "ms": round(late * 1000, 1),
                        "loop_thread_cpu_ms": round((cpu - cpu0) * 1000, 1),
                        "loop_thread_runnable_waiting_ms": round((wait - wait0) * 1000, 1),
                        "gc_ms": round(gc_ms - gc0, 1)})
        if now - self.flushed >= FLUSH_S:
            self.flushed = now
            self.flush()
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_later(TICK_S, self._tick)

    def _run_delay(self) -> float:
        """Seconds the loop's thread has spent runnable but waiting for a CPU (Linux schedstat)."""
        try:
            fields = Path(f"/proc/self/task/{self.loop_tid}/schedstat").read_text().split()
            return int(fields[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return 0.0

    # ---- output ------------------------------------------------------------------------------------

    def flush(self) -> None:
        with self.lock:
            if not self.dirty:
                return
            self.dirty = False
            data = {"pid": os.getpid(), "stall_ms": self.stall_s * 1000,
                    "seconds": {str(k): v for k, v in self.seconds.items()},
                    "pauses": list(self.pauses), "stalls": list(self.stalls)}
        tmp = self.out.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(data))
            tmp.replace(self.out)


def install() -> None:
    """Start probing this process if the bench asked for it (see the module's docstring)."""
    where = os.environ.pop(ENV, "")
    if not where:
        return
    probe = _Probe(Path(where) / f"{os.getpid()}.json", float(os.environ.pop(ENV_MS, "") or 50))
    gc.callbacks.append(probe.on_gc)
    atexit.register(probe.flush)
    # Both loops announce themselves through asyncio's `_set_running_loop` (uvloop looks it up when
    # it is imported, which is after this runs): wrap it to learn the daemon's loop.
    original = asyncio.events._set_running_loop

    def set_running_loop(loop: asyncio.AbstractEventLoop | None) -> None:
        original(loop)
        if loop is not None:
            probe.attach(loop)

    asyncio.events._set_running_loop = set_running_loop
    asyncio._set_running_loop = set_running_loop  # the re-exported name uvloop looks up


def read(directory: Path, pid: int, start: float, end: float) -> dict[str, Any] | None:
    """What the probe of process `pid` recorded between wall-clock `start` and `end`: pauses and
    stalls that began inside it; collection counts and the longest lag of every whole second that
    overlaps it (so a neighbouring window's second may be counted in both)."""
    try:
        data = json.loads((directory / f"{pid}.json").read_text())
    except (OSError, ValueError):
        return None
    seconds = {int(k): v for k, v in data["seconds"].items() if start - 1 < int(k) <= end}
    gc_totals: dict[str, list[float]] = {}
    for bucket in seconds.values():
        for gen, (count, ms, cpu_ms) in bucket["gc"].items():
            total = gc_totals.setdefault(gen, [0, 0.0, 0.0])
            total[0] += count
            total[1] += ms
            total[2] += cpu_ms
    pauses = [p for p in data["pauses"] if start <= p["at"] <= end]
    return {
        "gc": {f"gen{g}": {"count": int(c), "ms": round(ms, 1), "cpu_ms": round(cpu, 1)}
               for g, (c, ms, cpu) in sorted(gc_totals.items())},
        "gc_longest_ms": max((p["ms"] for p in pauses), default=0.0),
        "gc_pauses_over_10ms": [p for p in pauses if p["ms"] >= 10],
        "loop_max_lag_ms": max((b["max_lag_ms"] for b in seconds.values()), default=0.0),
        "stalls": [s for s in data["stalls"] if start <= s["at"] <= end],
    }
