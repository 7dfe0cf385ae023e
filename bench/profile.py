"""Profile the daemon's hot path under load: `python -m bench.profile [--path PATH] [-c N]`.

Starts a daemon with the echo server, drives the chosen path at concurrency N, and samples the
daemon with py-spy (`pip install '.[bench]'`) for the duration. Prints the top functions by own
time and by inclusive time from the collapsed stacks, and leaves the raw stacks (and an SVG flame
graph) under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import load
from .load import drive
from .targets import (
    BENCH_LIMITS,
    ECHO_ARGV,
    MCPCTL,
    REPO,
    cpu_seconds,
    end_process,
    free_port,
    open_http,
    open_pipes,
    open_socket_session,
    running_daemon,
    server_entry,
    wait_port,
)

RESULTS = REPO / "bench" / "results"
CACHE_KEYS = 64  # distinct arguments of `--path cache`: each stored during the warm-up, then hits


def top(stacks: Path, n: int = 25) -> str:
    """Own and inclusive sample counts per frame from py-spy's collapsed (`raw`) output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        frames_text, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = frames_text.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "own time:"]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(n)]
    lines += ["", "inclusive time:"]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in inclusive.most_common(n)]
    return "\n".join(lines)


async def profile(path: str, concurrency: int, seconds: float, rate: int, native: bool) -> int:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not await asyncio.to_thread(Path(spy).exists):
        print("py-spy is not installed: pip install '.[bench]'", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    raw = RESULTS / f"profile-{path}-c{concurrency}-{stamp}.txt"
    port = free_port() if path.startswith("http") else None
    entry = server_entry("echo", ECHO_ARGV, **BENCH_LIMITS)
    if path == "cache":  # memory cache hits: a socket session cycling through 64 stored arguments
        entry = entry.replace("[servers.echo]", "[servers.cached]") + 'cache.tools = ["echo"]\n'
    with running_daemon(entry, wait_ready=["cached" if path == "cache" else "echo"],
                        http_port=port) as daemon:
        procs = []
        clients: list[Any]
        depth = concurrency
        if path == "bridge":
            client, proc = await open_pipes([MCPCTL, "--socket", str(daemon.socket), "connect", "echo"], 0)
            procs.append(proc)
            clients = [client]
        elif path.startswith("http"):
            assert port is not None
            await asyncio.to_thread(wait_port, port, 30)
            url = "/mcp" if path == "http-aggregate" else "/mcp/echo"
            clients = [await open_http("127.0.0.1", port, url, n) for n in range(concurrency)]
            depth = 1  # HTTP/1.1: one connection per request in flight
        elif path == "cache":
            clients = [await open_socket_session(daemon.socket, "cached", 0, keys=CACHE_KEYS)]
        else:
            clients = [await open_socket_session(daemon.socket, "echo", 0)]
        await asyncio.gather(*(c.initialize() for c in clients))
        cmd = [spy, "record", "--pid", str(daemon.pid), "--duration", str(int(seconds)), "--rate", str(rate),
               "--format", "raw", "--output", str(raw)]
        # py-spy reads C frames only from a paused process: --native cannot be --nonblocking.
        cmd.append("--native" if native else "--nonblocking")
        before = cpu_seconds(daemon.pid)
        sampler = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.DEVNULL,
                                                       stderr=subprocess.PIPE)
        saved = load.ECHO_CALL
        if path == "http-aggregate":  # the aggregate names the tool `<server>__<tool>`
            load.ECHO_CALL = saved.replace(b'"name":"echo"', b'"name":"echo__echo"')
        try:
            result = await drive(clients, depth, 0.5, seconds, None)
        finally:
            load.ECHO_CALL = saved
        used = cpu_seconds(daemon.pid) - before
        _, complaint = await sampler.communicate()
        for client in clients:
            client.close()
        for proc in procs:
            await asyncio.to_thread(end_process, proc)
    summary = result.summary()
    per_call = used / max(1, result.tally.answered) * 1e6
    print(f"{path} c={concurrency}: {summary['ops_per_s']:,.0f} calls/s, p50 {summary['p50_ms']} ms; "
          f"daemon {per_call:.1f} µs CPU/call (py-spy attached, sampling adds some)")
    if not raw.exists():
        print(f"py-spy recorded nothing: {complaint.decode(errors='replace').strip()}", file=sys.stderr)
        return 1
    print(top(raw))
    print(f"\nraw stacks: {raw}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", choices=("socket", "bridge", "http", "http-aggregate", "cache"),
                        default="socket",
                        help="cache: memory cache hits over a socket session; http-aggregate: /mcp")
    parser.add_argument("-c", "--concurrency", type=int, default=100)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--native", action="store_true", help="include C frames (py-spy --native)")
    args = parser.parse_args()
    return asyncio.run(profile(args.path, args.concurrency, args.duration, args.rate, args.native))


if __name__ == "__main__":
    sys.exit(main())
