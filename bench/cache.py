"""Cache benchmark: uncached vs memory-hit vs Redis-hit tool calls, through the control socket.

    .venv/bin/python bench/cache.py [--requests 20000] [--rtt 3000] [--window 64]

Starts its own redis-server (free port, no persistence) and two daemons (`[cache] backend =
"memory"` and `"redis"`), each with the echo test server twice: `cached` (tools = ["echo"]) and
`plain` (nothing opted in). Every scenario runs in the same process, back to back:

    door       `ping`, answered by the daemon's session itself: the front door's own cost
    uncached   tools/call echo on `plain`: door + child round trip
    memory     tools/call echo on `cached`, memory backend, always a hit
    redis      tools/call echo on `cached`, Redis backend, always a hit

Requests cycle through 64 distinct arguments (all stored during warm-up), so with the default
window a pipelined hit is a real lookup, not a join onto an identical request in flight.
For each: round-trip latency of one request at a time (p50/p99 over --rtt calls) and throughput
with --window requests pipelined (calls/s over --requests calls).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from supervisor.client.control import call, connect, read_line  # noqa: E402

ECHO = REPO / "tests" / "servers" / "echo_server.py"
MCPCTL = str(Path(sys.executable).with_name("mcpctl"))
# Distinct arguments, as many as the default window: pipelined requests are then (almost) never
# identical while in flight, so hits are real cache hits, not single-flight joins.
KEYS = 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fleet(workdir: Path, cache: str) -> str:
    servers = ""
    for name, tools in (("cached", '["echo"]'), ("plain", "[]")):
        servers += (f'[servers.{name}]\ncommand = "{sys.executable}"\nargs = ["{ECHO}"]\n'
                    f"[servers.{name}.cache]\ntools = {tools}\n")
    return (f'[supervisor]\nstate_dir = "{workdir / "state"}"\nwatch = false\nlog_level = "warning"\n'
            f'[http]\nlisten = ""\n{cache}{servers}')


class Session:
    def __init__(self, sock_path: Path, server: str) -> None:
        self.sock = connect(sock_path, 30)
        self.buf = bytearray()
        self.send({"jsonrpc": "2.0", "id": "a", "method": "supervisor/attach", "params": {"server": server}})
        self.recv()
        self.send({"jsonrpc": "2.0", "id": "i", "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"}}})
        self.recv()
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, msg: Any) -> None:
        self.sock.sendall(orjson.dumps(msg) + b"\n")

    def recv(self) -> dict[str, Any]:
        while True:
            msg: dict[str, Any] = orjson.loads(read_line(self.sock, self.buf))
            if "id" in msg:
                return msg


def request(method: str, i: int) -> bytes:
    if method == "ping":
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": i, "method": "ping"}
    else:
        msg = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"text": f"hello cache {i % KEYS}"}}}
    return orjson.dumps(msg) + b"\n"


def rtt(session: Session, method: str, count: int) -> list[float]:
    out = []
    for i in range(count):
        data = request(method, i)
        start = time.perf_counter()
        session.sock.sendall(data)
        reply = session.recv()
        out.append(time.perf_counter() - start)
        assert "result" in reply, reply
    return out


def pipelined(session: Session, method: str, count: int, window: int) -> tuple[float, float]:
    """(calls/s, share of one CPU this client process used: near 1.0 means the client is the limit)."""
    start = time.perf_counter()
    cpu = time.process_time()
    sent = received = 0
    while received < count:
        room = min(window - (sent - received), count - sent)
        burst = b"".join(request(method, sent + k) for k in range(room))
        if burst:
            session.sock.sendall(burst)
            sent += burst.count(b"\n")
        reply = session.recv()
        assert "result" in reply, reply
        received += 1
    wall = time.perf_counter() - start
    return count / wall, (time.process_time() - cpu) / wall


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


def start_daemon(workdir: Path, cache: str) -> tuple[subprocess.Popen[bytes], Path]:
    workdir.mkdir()
    (workdir / "fleet.toml").write_text(fleet(workdir, cache))
    sock = workdir / "ctl.sock"
    env = {**os.environ, "XDG_STATE_HOME": str(workdir / "xdg"), "MCP_SUPERVISOR_DATA": str(workdir / "d")}
    proc = subprocess.Popen([MCPCTL, "--config", str(workdir / "fleet.toml"), "--socket", str(sock), "serve"],
                            stdout=subprocess.DEVNULL, stderr=open(workdir / "log", "wb"), env=env)  # noqa: SIM115
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            status = call(sock, "supervisor/status", None, 5)
            if all(s["state"] == "ready" for s in status["servers"]):
                return proc, sock
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit(f"daemon in {workdir} did not become ready")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rtt", type=int, default=3000)
    parser.add_argument("--window", type=int, default=64)
    args = parser.parse_args()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    tmp = Path(tempfile.mkdtemp(prefix="mcps-bench-", dir="/tmp"))
    port = free_port()
    redis = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL)
    procs = []
    try:
        mem_proc, mem_sock = start_daemon(tmp / "memory", "")
        procs.append(mem_proc)
        red_proc, red_sock = start_daemon(tmp / "redis", f'[cache]\nbackend = "redis"\nurl = '
                                          f'"redis://127.0.0.1:{port}/0"\n')
        procs.append(red_proc)
        scenarios = [
            ("door (ping)", Session(mem_sock, "plain"), "ping"),
            ("uncached", Session(mem_sock, "plain"), "echo"),
            ("memory hit", Session(mem_sock, "cached"), "echo"),
            ("redis hit", Session(red_sock, "cached"), "echo"),
        ]
        for _, session, method in scenarios:  # warm up: stores the cached result, JITs nothing
            rtt(session, method, 200)
            time.sleep(0.2)
        print(f"{'scenario':<14} {'p50 ms':>8} {'p99 ms':>8} {'calls/s':>10}   "
              f"(rtt n={args.rtt}, pipelined n={args.requests} window={args.window})")
        results = {}
        for name, session, method in scenarios:
            lat = rtt(session, method, args.rtt)
            rate, client_cpu = pipelined(session, method, args.requests, args.window)
            results[name] = (pct(lat, 0.5), pct(lat, 0.99), rate)
            print(f"{name:<14} {pct(lat, 0.5):8.3f} {pct(lat, 0.99):8.3f} {rate:10.0f}   "
                  f"client cpu {client_cpu:.0%}")
        door = results["door (ping)"][0]
        print(f"memory hit over the door: p50 +{results['memory hit'][0] - door:.3f} ms "
              f"(goal < 0.1); redis hit p50 {results['redis hit'][0]:.3f} ms (goal < 1), "
              f"p99 {results['redis hit'][1]:.3f} ms (goal < 2)")
        for label, sock in (("memory", mem_sock), ("redis", red_sock)):
            cache = call(sock, "supervisor/status", None, 5)["cache"]
            print(f"{label} daemon cache: hits={cache['hits']} misses={cache['misses']} "
                  f"coalesced={cache['coalesced']} errors={cache['errors']} entries={cache['entries']}")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
        redis.kill()
        redis.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
