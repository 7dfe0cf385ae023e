"""Watching the fleet: memory ceilings, and reaping orphans the subreaper inherits.

psutil walks /proc and blocks, so each sampling round runs in one worker thread for the whole fleet
and the event loop only copies the numbers back and applies the rules. The rules themselves are
pure (`policy.samples`: `Consecutive`, `largest_offender`) and tested as tables. The watch never
writes an instance's fields: it hands each sample to the instance's server (`memory_sample`).

Cost: a round reads every process's parent once (one pass over /proc/*/stat, not one per server,
and not through psutil, which costs ~5x more) and then `statm` for each member of each tree: about
3 ms of CPU for 27 servers on a 100-process machine. RSS counts shared pages in every process, so
it over-states a tree; PSS is fairer but reading `smaps_rollup` costs several times more. PSS can
only be smaller than RSS, so a tree under its limit by RSS is under it by PSS too: we read PSS only
for trees whose RSS is over a limit, and judge them by that.

(Liveness probes live with each server, in `core/server/probes.py`: they are per-child requests on the
event loop, not blocking /proc reads.)
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import anyio
import psutil

from supervisor.policy.samples import BAD_SAMPLES, Consecutive, largest_offender
from supervisor.policy.states import Exit
from supervisor.units import format_size

from . import process

if TYPE_CHECKING:
    from .fleet import Fleet
    from .server import Server

log = logging.getLogger("mcp_supervisor.health")

MIN_TICK = 0.05
MAX_TICK = 5.0


# ---- sampling (worker thread) -------------------------------------------------------------------

def _children_map() -> tuple[dict[int, list[int]], dict[int, tuple[int, str]] | None]:
    if process.HAS_PROC:
        table = process.scan_processes()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        return children, table
    children = {}
    for proc in psutil.process_iter(["ppid"]):
        parent = proc.info.get("ppid")
        if parent:
            children.setdefault(int(parent), []).append(proc.pid)
    return children, None


def _tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    tree = [pid]
    i = 0
    while i < len(tree):
        tree.extend(children.get(tree[i], ()))
        i += 1
    return tree


def _rss(pid: int) -> int | None:
    if process.HAS_PROC:
        return process.statm_rss(pid)
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


def _measure(pids: list[int], pss: bool) -> tuple[int, int]:
    total = 0
    count = 0
    for pid in pids:
        if pss:
            with contextlib.suppress(psutil.Error, OSError):
                total += psutil.Process(pid).memory_full_info().pss
                count += 1
        else:
            size = _rss(pid)
            if size is not None:
                total += size
                count += 1
    return total, count


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (the ones still alive)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error, OSError):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def sample_trees(limits: dict[int, int | None], keep: set[int]
                 ) -> dict[int, tuple[int, int, bool]]:
    """For each root pid: (bytes, processes, precise). Blocking; run it in a worker thread."""
    return sample_fleet(limits, keep)[0]


def sample_fleet(limits: dict[int, int | None], keep: set[int], cpu_roots: frozenset[int] = frozenset()
                 ) -> tuple[dict[int, tuple[int, int, bool]], dict[int, float]]:
    """For each root pid: (bytes, processes, precise); and for each of `cpu_roots`, the CPU
    seconds its whole tree has used (two samples make a share of a core: autoscaling reads it,
    `mcpctl top` shows it).
    Blocking; run it in a worker thread.

    `limits` maps each root to its memory limit (or None); a tree over its limit by RSS is
    measured again by PSS. `keep` are the daemon's direct children, whose exit status belongs to
    the event loop's child watcher; other zombies (orphaned grandchildren) are reaped here.
    """
    children, table = _children_map()
    if table is not None:
        process.reap_orphans(table, keep)
    else:
        process.reap_zombies(keep)
    result: dict[int, tuple[int, int, bool]] = {}
    cpu: dict[int, float] = {}
    for pid, limit in limits.items():
        tree = _tree(pid, children)
        rss, count = _measure(tree, pss=False)
        precise = False
        if limit is not None and rss > limit:
            with contextlib.suppress(psutil.Error, OSError, AttributeError):
                pss_total, pss_count = _measure(tree, pss=True)
                if pss_total:
                    rss, count, precise = pss_total, pss_count, True
        if count:
            result[pid] = (rss, count, precise)
            if pid in cpu_roots:
                cpu[pid] = _cpu_seconds(tree)
    return result, cpu


# ---- the loop -----------------------------------------------------------------------------------

class MemoryWatch:
    """Samples every server at its own `memory_interval` (an autoscaled server more often, see
    `Server.sample_interval`), enforces per-server and fleet limits, and feeds the autoscalers."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.clock = fleet.ctx.clock.monotonic  # the servers' own clock: their samples' instants
        self.next_due: dict[str, float] = {}
        self.fleet_over = Consecutive(BAD_SAMPLES)

    def tick(self) -> float:
        intervals = [s.sample_interval for s in self.fleet.supervised()]
        return max(MIN_TICK, min([MAX_TICK, *intervals]))

    def due(self, supervised: list[Server]) -> list[Server]:
        """The servers whose sample is due now (each is then due again one interval later)."""
        now = self.clock()
        due = []
        for server in supervised:
            if self.next_due.get(server.name, 0.0) <= now:
                self.next_due[server.name] = now + server.sample_interval
                due.append(server)
        return due

    async def round(self) -> None:
        supervised = self.fleet.supervised()
        due = self.due(supervised)
        limits: dict[int, int | None] = {}
        cpu_roots: set[int] = set()
        for server in due:
            for inst in server.instances:
                if inst.pid is not None:
                    limits[inst.pid] = server.config.memory_limit
                    cpu_roots.add(inst.pid)  # autoscaling and the dashboard's CPU column
        fleet_limit = self.fleet.config.supervisor.memory_limit
        keep = set(self.fleet.ctx.direct_children)
        sizes, cpu = await anyio.to_thread.run_sync(sample_fleet, limits, keep, frozenset(cpu_roots))
        now = self.clock()
        for server in due:
            for inst in list(server.instances):
                sample = sizes.get(inst.pid) if inst.pid is not None else None
                if sample is None:
                    continue
                server.memory_sample(inst, sample, cpu.get(inst.pid) if inst.pid is not None else None,
                                     now)
        names = {server.name for server in supervised}
        for name in list(self.next_due):
            if name not in names:
                del self.next_due[name]
        self.check_fleet(fleet_limit)
        scaled = [server for server in due if server.autoscaler is not None]
        if scaled:
            used = sum(inst.memory_bytes or 0 for server in supervised for inst in server.instances)
            for server in scaled:
                server.autoscale(now, used, fleet_limit)

    def check_fleet(self, limit: int | None) -> None:
        if not limit:
            self.fleet_over.reset()
            return
        candidates = [(inst, server) for server in self.fleet.supervised()
                      for inst in server.instances
                      if inst.memory_bytes is not None and inst.restart_kind is None]
        total = sum(inst.memory_bytes or 0 for inst, _ in candidates)
        if not self.fleet_over.observe(total > limit):
            return
        self.fleet_over.reset()  # one restart per verdict; the next needs fresh samples
        keyed = {f"{server.name}#{inst.index}": (inst, server) for inst, server in candidates}
        worst = largest_offender((key, inst.memory_bytes or 0) for key, (inst, _) in keyed.items())
        if worst is None:
            return
        inst, server = keyed[worst]
        reason = (f"memory: fleet {format_size(total)} > {format_size(limit)} limit; "
                  f"'{server.name}' is the largest at {format_size(inst.memory_bytes or 0)}")
        log.warning("%s", reason)
        server.restart_instance(inst, Exit.MEMORY, reason, graceful=True)

    async def run(self) -> None:
        while True:
            try:
                await self.round()
            except Exception:  # a sampling hiccup must never stop the watch
                log.exception("memory sampling failed")
            await anyio.sleep(self.tick())


async def memory_loop(fleet: Fleet) -> None:
    await MemoryWatch(fleet).run()
