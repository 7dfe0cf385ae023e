"""Apply edits of fleet.toml as they are saved (`[supervisor] watch = true`).

Editors save in bursts (write, rename, chmod) and sometimes in pieces, so a change is applied only
once the file has stopped changing: watchfiles debounces the burst, then we wait until two stats in
a row agree. The reload itself validates first, so a file caught half-written is rejected and the
next event, when the write completes, applies it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import watchfiles

log = logging.getLogger("mcp_supervisor.watcher")

SETTLE = 0.2


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


async def wait_settled(path: Path, settle: float = SETTLE, limit: float = 5.0) -> None:
    """Return once the file's size, mtime and inode stayed the same for `settle` seconds."""
    with anyio.move_on_after(limit):
        previous = _signature(path)
        while True:
            await anyio.sleep(settle)
            current = _signature(path)
            if current == previous and current is not None:
                return
            previous = current


async def watch_config(path: Path, apply: Callable[[], Awaitable[object]],
                       debounce_ms: int = 300) -> None:
    """Call `apply` after each settled change of `path` (absolute; a rename onto it counts)."""
    target = path
    directory = target.parent

    def relevant(change: watchfiles.Change, changed: str) -> bool:
        return Path(changed) == target and change != watchfiles.Change.deleted

    last = _signature(target)
    async for _ in watchfiles.awatch(directory, watch_filter=relevant, debounce=debounce_ms,
                                     step=50, recursive=False):
        await wait_settled(target)
        current = _signature(target)
        if current is None or current == last:
            continue
        last = current
        log.info("%s changed on disk: reloading", target)
        try:
            await apply()
        except Exception as exc:  # reported by the reload itself; the fleet is untouched
            log.error("reload after file change rejected: %s", exc)
