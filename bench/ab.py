"""Interleaved A/B of two daemon code trees on a shared box: `python -m bench.ab [--base DIR] ...`.

    git archive BASE_COMMIT supervisor | tar -x -C /tmp/perf-base      # the "before" tree
    python -m bench.ab --base /tmp/perf-base --path socket --levels 1,10,100 --rounds 4

Each round starts one daemon per tree (the base tree through PYTHONPATH, which wins over the
editable install; the other is this checkout), alternating which goes first, and measures every
level on the chosen path (`--path cache`: memory cache hits over a socket session, arguments
cycling through keys the warm-up stored). Reported per tree: median calls/s and p50 over the
rounds, and the daemon's CPU per call split into user and system time (psutil cpu_times of the
daemon process), which is what the shared 2-core box cannot blur. `--strace` adds one strace -c -f
window per tree and level and prints syscalls per call (strace slows the daemon, so its rates are
not used).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

from .load import drive
from .profile import CACHE_KEYS
from .targets import (
    BENCH_LIMITS,
    ECHO_ARGV,
    MCPCTL,
    Daemon,
    end_process,
    free_port,
    open_http,
    open_pipes,
    open_socket_session,
    server_entry,
    wait_port,
)


def _cpu(pid: int) -> tuple[float, float]:
    t = psutil.Process(pid).cpu_times()
    return t.user, t.system


def _switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of the daemon's main thread so far: a voluntary
    one is the loop going to sleep in epoll_wait, so their count per call is its wake-ups."""
    c = psutil.Process(pid).num_ctx_switches()
    return c.voluntary, c.involuntary


async def _clients(daemon: Daemon, path: str, level: int) -> tuple[list[Any], list[Any], int]:
    """(clients, processes, depth per client) for one level on one path."""
    if path == "socket":
        return [await open_socket_session(daemon.socket, "echo", 0)], [], level
    if path == "cache":  # memory cache hits: arguments cycle through keys stored in the warm-up
        return [await open_socket_session(daemon.socket, "cached", 0, keys=CACHE_KEYS)], [], level
    if path == "bridge":
        client, proc = await open_pipes([MCPCTL, "--socket", str(daemon.socket), "connect", "echo"], 0)
        return [client], [proc], level
    assert daemon.http_port is not None
    url = "/mcp" if path == "http-aggregate" else "/mcp/echo"
    return [await open_http("127.0.0.1", daemon.http_port, url, i) for i in range(level)], [], 1


async def _measure(daemon: Daemon, path: str, level: int, warmup: float, duration: float,
                   strace: bool) -> dict[str, Any]:
    from . import load
    saved = load.ECHO_CALL
    if path == "http-aggregate":  # the aggregate names tools <server>__<tool>
        load.ECHO_CALL = saved.replace(b'"name":"echo"', b'"name":"echo__echo"')
    clients, procs, depth = await _clients(daemon, path, level)
    try:
        await asyncio.gather(*(c.initialize() for c in clients))
        tracer = None
        out = Path(tempfile.mkstemp(prefix="ab-strace-", suffix=".txt")[1])
        if strace:
            tracer = subprocess.Popen(["strace", "-c", "-f", "-o", str(out), "-p", str(daemon.pid)],
                                      stderr=subprocess.DEVNULL)
            await asyncio.sleep(0.3)
        switches: list[tuple[int, int]] = []

        def probe() -> dict[str, float]:
            switches.append(_switches(daemon.pid))
            return dict(zip(("user", "sys"), _cpu(daemon.pid), strict=True))

        result = await drive(clients, depth, warmup, duration, probe)
        summary = result.summary()
        calls = max(1, summary["calls"])
        summary["wakeups_per_call"] = round((switches[1][0] - switches[0][0]) / calls, 2)
        summary["preempted_per_call"] = round((switches[1][1] - switches[0][1]) / calls, 2)
        if tracer is not None:
            tracer.send_signal(2)
            tracer.wait(10)
            summary["syscalls"] = _syscalls(await asyncio.to_thread(out.read_text), result.tally.answered)
        await asyncio.to_thread(out.unlink, True)
        return summary
    finally:
        load.ECHO_CALL = saved
        for c in clients:
            c.close()
        for p in procs:
            await asyncio.to_thread(end_process, p)


def _syscalls(text: str, calls: int) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and re.fullmatch(r"[\d.]+", parts[0]) and parts[-1] != "total":
            try:
                counts[parts[-1]] = round(int(parts[3]) / max(1, calls), 2)
            except ValueError:
                continue
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:8])


def _start(tree: Path | None, path: str, extra_env: dict[str, str], extra_toml: str = "") -> Daemon:
    env = dict(extra_env)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    port = free_port() if path.startswith("http") else None
    entry = server_entry("echo", ECHO_ARGV, **BENCH_LIMITS)
    name = "echo"
    if path == "cache":
        name = "cached"
        entry = entry.replace("[servers.echo]", "[servers.cached]") + 'cache.tools = ["echo"]\n'
    daemon = Daemon(extra_toml + "\n" + entry, http_port=port, env=env)
    daemon.start(wait_ready=[name])
    if port:
        wait_port(port, 30)
    return daemon


async def main_async(args: argparse.Namespace) -> int:
    trees: dict[str, Path | None] = {"base": args.base, "new": None}
    levels = [int(x) for x in args.levels.split(",")]
    rows: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for rnd in range(args.rounds):
        order = list(trees) if rnd % 2 == 0 else list(reversed(trees))
        for name in order:
            env = {}
            if name == "new" and args.new_env:
                env.update(dict(kv.split("=", 1) for kv in args.new_env))
            if name == "base" and args.base_env:
                env.update(dict(kv.split("=", 1) for kv in args.base_env))
            toml = (args.new_toml if name == "new" else args.base_toml) or ""
            daemon = await asyncio.to_thread(_start, trees[name], args.path, env, toml)
            try:
                await asyncio.sleep(0.5)
                for level in levels:
                    s = await _measure(daemon, args.path, level, args.warmup, args.duration,
                                       args.strace and rnd == 0)
                    rows.setdefault((name, level), []).append(s)
                    cpu = s["cpu_us_per_call"]
                    print(f"round {rnd} {name:<4} c={level:<4} {s['ops_per_s']:>9,.0f}/s "
                          f"p50 {s['p50_ms']} ms "
                          f"p99 {s['p99_ms']} ms  daemon user {cpu.get('user', 0):.1f} + sys "
                          f"{cpu.get('sys', 0):.1f} µs/call  wake-ups/call {s['wakeups_per_call']} "
                          f"(+{s['preempted_per_call']} preempted)  errors {sum(s['errors'].values())}"
                          + (f"  syscalls/call {s['syscalls']}" if "syscalls" in s else ""),
                          file=sys.stderr, flush=True)
            finally:
                await asyncio.to_thread(daemon.stop)
                shutil.rmtree(daemon.workdir, ignore_errors=True)
    print(f"\n{args.path}: median of {args.rounds} interleaved rounds (load avg {os.getloadavg()[0]:.1f})")
    print("| tree | conc. | calls/s | p50 ms | p99 ms | daemon user µs/call | sys µs/call | total µs/call "
          "| wake-ups/call |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for level in levels:
        for name in trees:
            samples = rows[(name, level)]
            med = statistics.median
            user = med(s["cpu_us_per_call"].get("user", 0) for s in samples)
            sys_ = med(s["cpu_us_per_call"].get("sys", 0) for s in samples)
            total = med(sum(s["cpu_us_per_call"].values()) for s in samples)
            print(f"| {name} | {level} | {med(s['ops_per_s'] for s in samples):,.0f} | "
                  f"{med(s['p50_ms'] for s in samples):.3f} | {med(s['p99_ms'] for s in samples):.3f} | "
                  f"{user:.1f} | {sys_:.1f} | {total:.1f} | "
                  f"{med(s['wakeups_per_call'] for s in samples):.2f} |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="a tree holding the 'before' supervisor/")
    parser.add_argument("--path", choices=("socket", "bridge", "http", "http-aggregate", "cache"),
                        default="socket", help="http: /mcp/echo; http-aggregate: /mcp (tools named "
                        "echo__…); cache: memory cache hits over a socket session")
    parser.add_argument("--levels", default="1,10,100")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--strace", action="store_true", help="syscalls per call (first round only)")
    parser.add_argument("--new-env", nargs="*", help="KEY=VALUE for the new tree's daemon")
    parser.add_argument("--base-env", nargs="*", help="KEY=VALUE for the base tree's daemon")
    parser.add_argument("--new-toml", help="fleet.toml tables for the new tree's daemon only, e.g. "
                        "'[tracing]\\nenabled = true' (an A/B of one setting on one tree: --base .)")
    parser.add_argument("--base-toml", help="fleet.toml tables for the base tree's daemon only")
    args = parser.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
