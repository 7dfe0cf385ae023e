"""Is each child still fit to serve: liveness probes and the memory ceiling.

Every `health_interval` each ready child gets a probe (`ping`, or `server/discover` for a
2026-07-28 child), and one comes sooner when a real call timed out (`soon`). `unhealthy_after`
probes in a row without an answer replace the child; an error answer is still an answer.
`memory_sample` (from health.MemoryWatch) hands the child its sample and replaces it, gracefully,
after `memory_limit` was exceeded for consecutive samples. The replacement is the server's
(`Replacer.restart_instance`): this part only judges.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import anyio

from supervisor.config import ServerConfig
from supervisor.errors import SupervisorError, UpstreamGone, UpstreamTimeout
from supervisor.policy.states import Exit
from supervisor.units import format_size

from ..instance import Instance

log = logging.getLogger("mcp_supervisor.server")

PROBE_SPACING = 1.0  # at most one extra probe per second when real requests time out


class Replacer(Protocol):
    """The server the probes judge for: its config and ready children, and how it replaces one."""

    @property
    def name(self) -> str: ...
    @property
    def config(self) -> ServerConfig: ...
    def restart_instance(self, inst: Instance, kind: Exit, reason: str, *,
                         graceful: bool = False) -> None: ...


class Probes:
    def __init__(self, server: Replacer, ready: list[Instance], monotonic: Callable[[], float]) -> None:
        self.server = server
        self.ready = ready  # the server's ready instances, shared
        self._monotonic = monotonic
        self._soon = anyio.Event()

    def soon(self) -> None:
        """Probe now rather than at the next round (a real call timed out)."""
        self._soon.set()

    async def run(self) -> None:
        """Probe every ready child each `health_interval`, and soon after a real request timed out.

        After a failed probe the next one follows at once (the `ping_timeout` just spent is the
        spacing), so a hung child is replaced `unhealthy_after` timeouts after it is first caught.
        """
        interval = self.server.config.health_interval
        last = -PROBE_SPACING
        while True:
            with anyio.move_on_after(interval):
                await self._soon.wait()
            if self._soon.is_set():
                self._soon = anyio.Event()
                wait = last + min(PROBE_SPACING, interval) - self._monotonic()
                if wait > 0:
                    await anyio.sleep(wait)
            last = self._monotonic()
            targets = [inst for inst in self.ready if inst.restart_kind is None]
            if len(targets) == 1:
                await self.probe(targets[0])
            elif targets:
                async with anyio.create_task_group() as tg:
                    for inst in targets:
                        tg.start_soon(self.probe, inst)

    async def probe(self, inst: Instance) -> None:
        """Probe one child until it answers, or until `unhealthy_after` probes in a row did not."""
        server = self.server
        timeout = server.config.ping_timeout
        while inst.ready and inst.restart_kind is None:
            try:
                await inst.probe(timeout)
            except UpstreamTimeout:
                pass
            except UpstreamGone:
                return  # it exited; the slot deals with that
            except SupervisorError:
                inst.unhealthy.observe(False)  # an error answer is still an answer
                return
            else:
                inst.unhealthy.observe(False)
                return
            if not inst.ready or inst.restart_kind is not None:
                return
            failures = inst.unhealthy.count + 1
            if inst.unhealthy.observe(True):
                probe = "server/discover" if inst.modern else "ping"
                server.restart_instance(inst, Exit.UNRESPONSIVE,
                                        f"unresponsive: {failures} {probe} probes in a row got no "
                                        f"answer within {timeout:g}s")
                return
            log.warning("%s: pid %s did not answer a health probe within %gs (%d/%d)", server.name,
                        inst.pid, timeout, failures, inst.unhealthy.threshold)

    def memory_sample(self, inst: Instance, sample: tuple[int, int, bool], cpu_seconds: float | None,
                      now: float) -> None:
        """A sample of `inst`'s tree (bytes, processes, whether the bytes are PSS; CPU seconds):
        the instance keeps it, and `memory_limit` is enforced."""
        inst.took_sample(*sample, cpu_seconds, now)
        server = self.server
        limit = server.config.memory_limit
        size = inst.memory_bytes or 0
        if not limit or inst.restart_kind is not None:
            inst.over_memory.reset()
            return
        over = size > limit
        if inst.over_memory.observe(over):
            server.restart_instance(inst, Exit.MEMORY,
                                    f"memory: {format_size(size)} > {format_size(limit)} limit",
                                    graceful=True)
        elif over:
            log.warning("%s: pid %s uses %s, over its %s limit (sample %d/%d)", server.name, inst.pid,
                        format_size(size), format_size(limit), inst.over_memory.count,
                        inst.over_memory.threshold)
