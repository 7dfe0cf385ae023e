"""sd_notify(3) without libsystemd: tell systemd we are ready, reloading, stopping, and alive.

The protocol is one datagram of `KEY=VALUE` lines to the `AF_UNIX` socket named by `$NOTIFY_SOCKET`
(a leading `@` means the Linux abstract namespace). With no `$NOTIFY_SOCKET` every call here is a
no-op, so the daemon behaves the same outside systemd.

What the daemon sends, and when (see `Daemon.run` and `Daemon.reload`):

    READY=1 + STATUS=      once every eager server has left `starting` (ready, failed, unavailable),
                           or after READY_DEADLINE, so one slow child cannot fail the whole unit
    STATUS=25/27 ready     whenever the fleet's states change (coalesced)
    WATCHDOG=1             every WATCHDOG_USEC/2, from the event loop itself: a stuck loop stops
                           the pings and systemd restarts us
    RELOADING=1 + MONOTONIC_USEC=   before a reload is applied; READY=1 after it
    STOPPING=1             when shutdown begins
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("mcp_supervisor.sdnotify")


def _address(name: str) -> str | bytes:
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


def watchdog_interval(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when not asked for.

    `WATCHDOG_PID`, when set, names the process the watchdog is for; any other process ignores it.
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(pid if pid is not None else os.getpid()):
        return None
    return int(usec) / 2 / 1e6


class Notifier:
    """Sends notifications to systemd; does nothing when the daemon was not started by it."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        name = environ.get("NOTIFY_SOCKET", "")
        self.enabled = bool(name) and (name.startswith(("@", "/")))
        self.watchdog = watchdog_interval(environ) if self.enabled else None
        self._address = _address(name) if self.enabled else ""
        self._sock: socket.socket | None = None
        self._last_status: str | None = None

    def notify(self, *lines: str) -> bool:
        """Send one datagram; never raises and never blocks (systemd's socket is a datagram one)."""
        if not self.enabled:
            return False
        payload = "\n".join(lines).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(payload, self._address)
            return True
        except OSError as exc:  # systemd went away or the queue is full: not worth dying for
            log.debug("sd_notify %r failed: %s", lines, exc)
            return False

    def ready(self, status: str) -> None:
        self._last_status = status
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        if status != self._last_status:
            self._last_status = status
            self.notify(f"STATUS={status}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading fleet.toml")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping every child")

    def ping(self) -> None:
        self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


__all__ = ["Notifier", "watchdog_interval"]
