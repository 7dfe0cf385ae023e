"""Watching the fleet: whole-tree memory sampling, and reaping orphans the subreaper inherits.

psutil walks /proc and blocks, so each round runs in one worker thread for the whole fleet and the
event loop only copies the numbers back.
"""

from __future__ import annotations

import logging

import anyio

from . import process
from .fleet import Fleet

log = logging.getLogger("mcp_supervisor.health")


def _sample(pids: list[int], keep: set[int]) -> dict[int, tuple[int, int]]:
    process.reap_zombies(keep)
    return {pid: process.tree_memory(pid) for pid in pids}


async def sample_memory(fleet: Fleet) -> None:
    instances = [inst for server in fleet.servers.values() for inst in server.instances
                 if inst.pid is not None]
    pids = [inst.pid for inst in instances if inst.pid is not None]
    keep = set(fleet.ctx.direct_children)
    sizes = await anyio.to_thread.run_sync(_sample, pids, keep)
    for inst in instances:
        if inst.pid in sizes:
            inst.memory_bytes, inst.process_count = sizes[inst.pid]


async def memory_loop(fleet: Fleet, interval: float) -> None:
    while True:
        await sample_memory(fleet)
        await anyio.sleep(interval)
