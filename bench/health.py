"""Health figures through the real daemon: hang → replacement ready, crash → ready, idle CPU.

    .venv/bin/python bench/health.py                 # everything (about 2.5 minutes)
    .venv/bin/python bench/health.py hang crash      # some of it
    .venv/bin/python bench/health.py idle --idle-seconds 30

- hang: a chaos child answers one call, then stops answering anything. Measured from that call's
  answer to the status showing a new pid `ready`. Detection needs `unhealthy_after` (2) probes to
  time out after the hang is first probed, so with the defaults (15 s interval, 5 s timeout) the
  expectation is uniform(0, 15) + 2 x 5 s + the restart; short intervals show the mechanism's floor.
- crash: a chaos child exits on its first tools/call. Measured from sending the call to a new pid
  `ready`: the first backoff step (0.5 s +/- 20 %) plus spawn and handshake.
- idle: 27 echo servers at default intervals, nothing calling; daemon CPU (user+sys, psutil
  cpu_times) over the window, as a share of one core. Goal < 1 %.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from supervisor.client.control import call  # noqa: E402
from supervisor.client.errors import RemoteError  # noqa: E402
from tests.conftest import CHAOS, ECHO, Daemon, alive_pids, daemon_env, server_toml, wait_for  # noqa: E402


def _daemon(config: str) -> Daemon:
    workdir = Path(tempfile.mkdtemp(prefix="mcps-bench-", dir="/tmp"))
    return Daemon(workdir, config, daemon_env(workdir)).start()


def _stop(daemon: Daemon) -> None:
    daemon.seen_pids |= daemon.descendants()
    daemon.stop()
    wait_for(lambda: not alive_pids(daemon.seen_pids), 15, what="children to exit")


def _replaced(daemon: Daemon, name: str, old_pid: int, timeout: float) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        s = daemon.status(name)
        return s if s["state"] == "ready" and s["pid"] not in (None, old_pid) else None
    return wait_for(check, timeout, interval=0.01, what=f"{name} replaced")


def _summary(label: str, samples: list[float]) -> None:
    if not samples:
        return
    shown = ", ".join(f"{s:.2f}" for s in samples)
    print(f"{label}: n={len(samples)} median {statistics.median(samples):.2f}s "
          f"min {min(samples):.2f}s max {max(samples):.2f}s  [{shown}]", flush=True)


def bench_hang(trials: int, **keys: Any) -> list[float]:
    names = [f"hang{i}" for i in range(trials)]
    daemon = _daemon("".join(server_toml(n, CHAOS, "--hang-after", "1", **keys) for n in names))
    results = []
    try:
        for name in names:
            pid = daemon.wait_state(name, "ready", timeout=60)["pid"]
            call(daemon.socket, "supervisor/call", {"server": name, "tool": "echo",
                                                    "arguments": {"text": "x"}}, 10)
            hung = time.monotonic()
            after = _replaced(daemon, name, pid, 120)
            results.append(time.monotonic() - hung)
            assert after["restart_reasons"] == {"unresponsive": 1}, after
    finally:
        _stop(daemon)
    return results


def bench_crash(trials: int) -> list[float]:
    names = [f"crash{i}" for i in range(trials)]
    daemon = _daemon("".join(server_toml(n, CHAOS, "--crash-after", "1") for n in names))
    results = []
    try:
        for name in names:
            pid = daemon.wait_state(name, "ready", timeout=60)["pid"]
            started = time.monotonic()
            with contextlib.suppress(RemoteError):  # -32003: it died under the call, as intended
                call(daemon.socket, "supervisor/call", {"server": name, "tool": "echo",
                                                        "arguments": {"text": "x"}}, 10)
            after = _replaced(daemon, name, pid, 30)
            results.append(time.monotonic() - started)
            assert after["restart_reasons"] == {"crash": 1}, after
    finally:
        _stop(daemon)
    return results


def bench_idle(servers: int, seconds: float) -> None:
    daemon = _daemon("".join(server_toml(f"echo{i:02d}", ECHO) for i in range(servers)))
    try:
        for i in range(servers):
            daemon.wait_state(f"echo{i:02d}", "ready", timeout=120)
        assert daemon.proc is not None
        proc = psutil.Process(daemon.proc.pid)
        time.sleep(3)  # let start-up work settle
        before, t0 = proc.cpu_times(), time.monotonic()
        children = [psutil.Process(p) for p in daemon.descendants()]
        child_before = sum(c.cpu_times().user + c.cpu_times().system for c in children)
        time.sleep(seconds)
        after, t1 = proc.cpu_times(), time.monotonic()
        child_after = sum(c.cpu_times().user + c.cpu_times().system for c in children)
        used = (after.user - before.user) + (after.system - before.system)
        share = used / (t1 - t0)
        rss = proc.memory_info().rss
        print(f"idle: {servers} children, default intervals, {t1 - t0:.1f}s window: daemon CPU "
              f"{used * 1000:.0f} ms = {share * 100:.2f}% of one core (goal < 1%); "
              f"children together {(child_after - child_before) * 1000:.0f} ms; "
              f"daemon RSS {rss / 2**20:.0f}MiB", flush=True)
    finally:
        _stop(daemon)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="*", help="hang, crash and/or idle (default: all)")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--default-trials", type=int, default=2,
                        help="hang trials at the default 15s/5s intervals (each ~15-30 s)")
    parser.add_argument("--servers", type=int, default=27)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()
    args.what = args.what or ["hang", "crash", "idle"]
    if set(args.what) - {"hang", "crash", "idle"}:
        parser.error("choose from hang, crash, idle")
    print(f"python {sys.version.split()[0]}, {psutil.cpu_count()} CPUs", flush=True)
    if "hang" in args.what:
        _summary("hang → ready (health_interval 1s, ping_timeout 500ms)",
                 bench_hang(args.trials, health_interval="1s", ping_timeout="500ms"))
        if args.default_trials:
            _summary("hang → ready (defaults: 15s, 5s, unhealthy_after 2)",
                     bench_hang(args.default_trials))
    if "crash" in args.what:
        _summary("crash → ready (backoff_initial 0.5s)", bench_crash(args.trials))
    if "idle" in args.what:
        bench_idle(args.servers, args.idle_seconds)


if __name__ == "__main__":
    main()
