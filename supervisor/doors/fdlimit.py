"""The daemon's open-file limit: raised to what the system allows, and shared out.

A shell's `ulimit -n` is often 1024 while the hard limit is far higher; a daemon holding hundreds
of client connections and three pipes per child needs the room, so at start the soft limit goes up
to the hard one (systemd's advice for services: raise the soft limit yourself). The HTTP door
takes at most the limit less a reserve for everything else (children's pipes, control
connections, log files), so a flood of HTTP connections can never starve the rest of the daemon
of descriptors.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("mcp_supervisor.daemon")

RESERVE = 256  # descriptors kept from the HTTP door (at most half the limit)
_UNLIMITED = 1 << 30


def raise_soft_limit() -> int:
    """Set RLIMIT_NOFILE's soft limit to its hard limit; returns the soft limit now in force."""
    try:
        soft, ceiling = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return _UNLIMITED
    hard = ceiling
    if hard == resource.RLIM_INFINITY:
        # Linux refuses an infinite RLIMIT_NOFILE; fs.nr_open is the real ceiling.
        try:
            with open("/proc/sys/fs/nr_open") as f:
                hard = int(f.read())
        except (OSError, ValueError):
            return soft
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, ceiling))
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
            return soft
        log.debug("open-file limit raised from %d to %d", soft, hard)
        return hard
    return soft


def connection_budget() -> int:
    """How many connections the HTTP door may hold under the current soft limit."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return _UNLIMITED
    if soft == resource.RLIM_INFINITY:
        return _UNLIMITED
    return max(1, soft - min(RESERVE, soft // 2))
