"""Child processes as whole trees: spawn in a new session, measure the tree, end the tree.

`npx` starts `sh` starts `node`; a signal to one pid leaves the rest running (supervisord's
long-standing hole). So every child leads its own process group, we snapshot its descendants before
signalling, signal the group, and finally kill any snapshot member that escaped the group. psutil
calls block, so everything here that walks /proc is synchronous and meant for a worker thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil

from .clock import SYSTEM_CLOCK, Clock

log = logging.getLogger("mcp_supervisor.process")

# Variables a child inherits from the daemon; everything else comes from its `env` entry.
INHERITED_VARS = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ",
    "TMPDIR", "TERM",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "NPM_CONFIG_REGISTRY",
)


def child_environment(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    env = {key: base[key] for key in INHERITED_VARS if key in base}
    env.update(extra)
    return env


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """Enough to recognise a process later: pids are reused, (pid, create_time) pairs are not."""

    server: str
    pid: int
    create_time: float


def identify(pid: int, server: str) -> ProcessRecord | None:
    try:
        return ProcessRecord(server, pid, psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def same_process(record: ProcessRecord) -> psutil.Process | None:
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) < 0.01:
            return proc
    except psutil.Error:
        pass
    return None


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
HAS_PROC = os.path.exists("/proc/self/stat")


def scan_processes() -> dict[int, tuple[int, str]]:
    """Every process's (parent pid, state letter), in one pass over /proc.

    psutil builds a Process object per process for the same answer and costs ~50x more; this runs
    every few seconds for the whole fleet, so it reads `/proc/PID/stat` itself (Linux only; use
    `psutil` elsewhere). The command name may contain spaces and parentheses, hence `rpartition`.
    """
    table: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue  # exited meanwhile
        fields = data.rpartition(b")")[2].split(None, 2)
        if len(fields) >= 2:
            table[int(entry)] = (int(fields[1]), fields[0].decode("ascii", "replace"))
    return table


def statm_rss(pid: int) -> int | None:
    """Resident bytes of one process from /proc/PID/statm, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def reap_orphans(table: dict[int, tuple[int, str]], keep: set[int]) -> int:
    """`reap_zombies` from a `scan_processes` table: no second pass over /proc."""
    me = os.getpid()
    reaped = 0
    for pid, (ppid, state) in table.items():
        if ppid == me and state == "Z" and pid not in keep:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
                reaped += 1
    return reaped


def kill_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def kill_processes(procs: Iterable[psutil.Process], sig: int = signal.SIGKILL) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def alive(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    result = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                result.append(proc)
    return result


def group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        # os.getpgid raises ProcessLookupError, not psutil.Error, for a process that just exited.
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def reap_zombies(keep: set[int]) -> int:
    """Reap orphaned grandchildren that the subreaper flag handed to us; `keep` are our direct
    children, whose exit status belongs to the event loop's child watcher."""
    reaped = 0
    for proc in psutil.Process().children():
        if proc.pid in keep:
            continue
        with contextlib.suppress(psutil.Error, ChildProcessError, OSError):
            if proc.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(proc.pid, os.WNOHANG)
                reaped += 1
    return reaped


def become_subreaper() -> bool:
    """PR_SET_CHILD_SUBREAPER: orphaned grandchildren come back to us instead of init, so the
    descendant sweep still sees processes whose parent died first (Linux only)."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        return int(libc.prctl(36, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def sweep_tree(root_pid: int, pgid: int, known: list[psutil.Process]) -> int:
    """SIGKILL whatever is left of a tree: the group, the snapshot, and anything still below root.
    Returns how many processes were still alive."""
    leftovers = {p.pid: p for p in alive(known)}
    for proc in descendants(root_pid):
        leftovers.setdefault(proc.pid, proc)
    for proc in group_members(pgid):
        leftovers.setdefault(proc.pid, proc)
    kill_group(pgid, signal.SIGKILL)
    kill_processes(leftovers.values())
    return len(leftovers)


class PidRegistry:
    """Our children, on disk, so a daemon started after a SIGKILLed one can end the orphans.

    Written on every change (spawns are rare) with an atomic rename. It is bookkeeping: when the
    file cannot be written (a read-only directory, a full disk, no descriptors left) the daemon
    says so once and carries on without it (the records stay in memory and the next change tries
    again); only a later daemon's clean-up after a SIGKILL is lost.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: dict[int, ProcessRecord] = {}
        self._failing = False

    def add(self, record: ProcessRecord) -> None:
        self._records[record.pid] = record
        self._save()

    def remove(self, pid: int) -> None:
        if self._records.pop(pid, None) is not None:
            self._save()

    def _save(self) -> None:
        data = [{"server": r.server, "pid": r.pid, "create_time": r.create_time}
                for r in self._records.values()]
        from supervisor.paths import write_private

        try:  # 0600: which pids are ours is nobody's business
            write_private(self.path, orjson.dumps(data))
        except OSError as exc:
            if not self._failing:
                self._failing = True
                log.warning("cannot write the pid registry %s (%s): children of this daemon will "
                            "not be ended by the next one if this one is killed", self.path,
                            exc.strerror or exc)
            return
        if self._failing:
            self._failing = False
            log.info("the pid registry %s is written again", self.path)

    def load_leftovers(self) -> list[ProcessRecord]:
        try:
            raw = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return []
        records = []
        for item in raw if isinstance(raw, list) else []:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                records.append(ProcessRecord(str(item["server"]), int(item["pid"]),
                                             float(item["create_time"])))
        return records


def end_leftovers(records: list[ProcessRecord], grace: float = 2.0, *, clock: Clock = SYSTEM_CLOCK,
                  sleep: Callable[[float], None] = time.sleep) -> list[ProcessRecord]:
    """End the trees of a previous daemon's children that are still running. Blocking: each tree
    gets `grace` seconds on `clock` after SIGTERM, then SIGKILL (a test passes a clock that
    `sleep` advances)."""
    ended = []
    for record in records:
        proc = same_process(record)
        if proc is None:
            continue
        tree = [proc, *descendants(record.pid)]
        try:
            pgid = os.getpgid(record.pid)
        except ProcessLookupError:
            continue
        members = group_members(pgid) if pgid == record.pid else []
        kill_group(pgid, signal.SIGTERM) if pgid == record.pid else kill_processes(tree, signal.SIGTERM)
        deadline = clock.monotonic() + grace
        while clock.monotonic() < deadline and alive(tree):
            sleep(0.05)
        kill_processes(alive([*tree, *members]))
        ended.append(record)
    return ended


__all__ = [
    "INHERITED_VARS",
    "PidRegistry",
    "ProcessRecord",
    "alive",
    "become_subreaper",
    "child_environment",
    "descendants",
    "end_leftovers",
    "identify",
    "kill_group",
    "reap_orphans",
    "reap_zombies",
    "scan_processes",
    "statm_rss",
    "sweep_tree",
]
