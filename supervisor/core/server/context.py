"""What a server is given: the fleet's shared context, and how it makes its children.

`FleetContext` is what every server of a fleet shares (environment, directories, pid records, the
event bus, the cache, the clock); `InstanceFactory` makes the child a slot runs (`Instance`, or a
test's fake). Both are leaves: nothing here knows the `Server` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from supervisor.config import ServerConfig
from supervisor.policy.ratelimit import ClientLimits

from ..clock import SYSTEM_CLOCK, Clock
from ..instance import Instance, InstanceOwner

if TYPE_CHECKING:
    from ..cache.front import CacheHub
    from ..cluster_limits import ClusterLimiter
    from ..eras import EraMemory
    from ..process import PidRegistry, ProcessRecord


class InstanceFactory(Protocol):
    """Makes the `Instance` a slot runs: `Instance` itself, or a test's fake child."""

    def __call__(self, *, server: str, index: int, argv: list[str], env: dict[str, str],
                 cwd: str | None, owner: InstanceOwner, init_timeout: float, stop_timeout: float,
                 max_message: int, roots: tuple[str, ...], era_hint: str | None,
                 on_spawn: Callable[[ProcessRecord], None], on_reaped: Callable[[int], None],
                 clock: Clock) -> Instance: ...


@dataclass
class FleetContext:
    """What servers share: the daemon's environment, directories, pid records, event bus."""

    environ: Mapping[str, str]
    state_dir: Path
    data_dir: Path
    publish: Callable[[dict[str, Any]], None] = lambda event: None
    pids: PidRegistry | None = None
    max_message: int = 16 * 1024 * 1024
    resolve_command: Callable[[ServerConfig, Path, Mapping[str, str]], list[str] | None] | None = None
    direct_children: set[int] = field(default_factory=set)
    cache: CacheHub | None = None
    client_limits: ClientLimits = field(default_factory=lambda: ClientLimits({}))
    env_file: Path | None = None  # `[supervisor] env_file` (resolved), read at every spawn
    config_dir: Path | None = None  # a relative per-server env_file is relative to fleet.toml
    secrets_seen: Callable[[Iterable[str]], None] = lambda values: None  # mask these from now on
    eras: EraMemory | None = None  # the era each server spoke last (state dir), spoken first
    cluster_limits: ClusterLimiter | None = None  # with [cluster]: buckets shared by every node
    clock: Clock = SYSTEM_CLOCK  # every time a server and its children read (tests pass their own)
    new_instance: InstanceFactory = Instance  # how a slot makes its child (tests pass fakes)
