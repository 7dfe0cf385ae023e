"""Throughput and latency of the Streamable HTTP door, against the ceiling of a do-nothing endpoint.

    .venv/bin/python bench/http_door.py [--calls 3000] [--concurrency 1,10,100]

Starts its own daemon (`mcpctl serve`, one echo child) and a do-nothing ASGI app on uvicorn with the
same settings, then drives both with the same load generator: raw asyncio sockets, one keep-alive
HTTP/1.1 connection per concurrent client, a 2026-07-28 `tools/call echo` per request (the noop
endpoint gets the same bytes). Reports calls/s, p50/p95/p99 and the daemon's CPU per call
(psutil user+system of the daemon process only, children excluded). Standalone: no test imports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
ECHO = REPO / "tests" / "servers" / "echo_server.py"
MCPCTL = str(Path(sys.executable).with_name("mcpctl"))

NOOP_APP = '''
BODY = b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"x"}]}}'
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]})
    await send({"type": "http.response.body", "body": BODY})
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def request_bytes(port: int, path: str) -> bytes:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "echo", "arguments": {"text": "x"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}}).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
            "accept: application/json, text/event-stream\r\nmcp-protocol-version: 2026-07-28\r\n"
            f"mcp-method: tools/call\r\nmcp-name: echo\r\ncontent-length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def one_client(port: int, request: bytes, calls: int, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for _ in range(calls):
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200") or b'"result"' not in body:
                raise RuntimeError(f"bad answer: {head[:40]!r} {body[:200]!r}")
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def run_load(port: int, path: str, concurrency: int, total: int) -> tuple[float, list[float]]:
    request = request_bytes(port, path)
    per_client = max(1, total // concurrency)
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(one_client(port, request, per_client, latencies) for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))] * 1000


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per run")
    parser.add_argument("--concurrency", default="1,10,100")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    work = Path(tempfile.mkdtemp(prefix="mcps-bench-", dir="/tmp"))
    daemon_port, noop_port = free_port(), free_port()
    (work / "noop_app.py").write_text(NOOP_APP)
    (work / "fleet.toml").write_text(
        f'[supervisor]\nstate_dir = "{work / "state"}"\nwatch = false\nlog_level = "warning"\n'
        f'[http]\nlisten = "127.0.0.1:{daemon_port}"\n'
        f'[servers.echo]\ncommand = "{sys.executable}"\nargs = ["{ECHO}"]\nmax_queue = 100000\n')
    env = {**os.environ, "XDG_RUNTIME_DIR": str(work), "XDG_STATE_HOME": str(work / "xdg")}
    daemon = subprocess.Popen([MCPCTL, "--config", str(work / "fleet.toml"), "--socket",
                               str(work / "ctl.sock"), "serve"], env=env, stderr=subprocess.DEVNULL)
    noop = subprocess.Popen([sys.executable, "-m", "uvicorn", "noop_app:app", "--port", str(noop_port),
                             "--log-level", "warning", "--no-access-log", "--lifespan", "off"],
                            cwd=work, env=env)
    try:
        wait_port(daemon_port)
        wait_port(noop_port)
        time.sleep(1.0)  # the echo child's handshake
        proc = psutil.Process(daemon.pid)
        rows = []
        targets = (("noop uvicorn", noop_port, "/"), ("daemon /mcp/echo", daemon_port, "/mcp/echo"))
        for name, port, path in targets:
            asyncio.run(run_load(port, path, 10, 200))  # warm up
            for level in levels:
                cpu0 = proc.cpu_times()
                elapsed, lat = asyncio.run(run_load(port, path, level, args.calls))
                cpu1 = proc.cpu_times()
                lat.sort()
                cpu_us = ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / len(lat) * 1e6
                rows.append((name, level, len(lat) / elapsed, pct(lat, .5), pct(lat, .95), pct(lat, .99),
                             cpu_us if port == daemon_port else None))
        print(f"{'endpoint':<18} {'conc':>5} {'calls/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
              f"{'daemon CPU/call':>16}")
        for name, level, rate, p50, p95, p99, cpu in rows:
            cpu_text = f"{cpu:.0f} µs" if cpu is not None else "-"
            print(f"{name:<18} {level:>5} {rate:>9.0f} {p50:>8.2f} {p95:>8.2f} {p99:>8.2f} {cpu_text:>16}")
        print(f"(cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f})")
    finally:
        for proc_ in (daemon, noop):
            proc_.terminate()
            try:
                proc_.wait(15)
            except subprocess.TimeoutExpired:
                proc_.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
