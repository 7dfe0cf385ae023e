"""What the load is pointed at: processes the benchmark starts, and how to open a client on each path.

Every process started here is started by us and ended by us (by pid, whole process group), on loopback
and in a scratch directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil

from supervisor.client.control import call as control_call

from . import loop_probe
from .load import HttpClient, LineClient, Window

REPO = Path(__file__).resolve().parent.parent
ECHO = REPO / "tests" / "servers" / "echo_server.py"
PY = sys.executable
MCPCTL = str(Path(sys.executable).with_name("mcpctl"))
NODE_BIN = REPO / "tests" / "node" / "node_modules" / ".bin"
EVERYTHING = NODE_BIN / "mcp-server-everything"
PEERS = REPO / "bench" / ".peers"

ECHO_ARGV = [PY, str(ECHO)]
EVERYTHING_ARGV = [str(EVERYTHING), "stdio"]
PROBE_SITE = REPO / "bench" / "probe_site"


def probe_dir() -> Path | None:
    """Where daemons' loop probes write (`python -m bench --probe`, bench/loop_probe.py), if on."""
    where = os.environ.get(loop_probe.ENV)
    return Path(where) if where else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int, tree: bool = False) -> float:
    """User + system CPU seconds of a process (and, with tree, its live descendants)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)] if tree else [proc]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def rss_bytes(pid: int, tree: bool = False) -> int:
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)] if tree else [proc]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def end_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Close stdin, then TERM, then KILL the process group we started (never anything else)."""
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(1.0)
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


T = TypeVar("T")


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    """The predicate's first truthy answer, polled until `timeout` runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in items) + "]"


def server_entry(name: str, argv: list[str], **keys: int | str) -> str:
    lines = [f"[servers.{name}]", f'command = "{argv[0]}"', f"args = {toml_list(argv[1:])}"]
    for key, value in keys.items():
        lines.append(f"{key} = {value}" if isinstance(value, int) else f'{key} = "{value}"')
    return "\n".join(lines) + "\n"


# Generous limits so admission never throttles the benchmark: we measure the hot path, not the
# default 8-in-flight policy (which a real fleet sets per server).
BENCH_LIMITS: dict[str, int | str] = {"max_in_flight": 4096, "max_queue": 65536}


class Daemon:
    """A real `mcpctl serve` in a scratch directory."""

    def __init__(self, servers: str, *, http_port: int | None = None, fleet_file: Path | None = None,
                 env: dict[str, str] | None = None, workdir: Path | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="mcps-bench-", dir="/tmp"))
        self.socket = self.workdir / "ctl.sock"
        self.http_port = http_port
        self.config = fleet_file or self.workdir / "fleet.toml"
        if fleet_file is None:
            head = f'[supervisor]\nstate_dir = "{self.workdir / "state"}"\nwatch = false\n'
            head += f'[http]\nlisten = "{f"127.0.0.1:{http_port}" if http_port else ""}"\n'
            self.config.write_text(head + servers)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_SUPERVISOR", "XDG_"))}
        base.update({
            "XDG_STATE_HOME": str(self.workdir / "xdg-state"),
            "XDG_DATA_HOME": str(self.workdir / "xdg-data"),
            "XDG_CONFIG_HOME": str(self.workdir / "xdg-config"),
            "XDG_RUNTIME_DIR": str(self.workdir / "run"),
            "MCP_SUPERVISOR_DATA": str(self.workdir / "data"),
        })
        probes = probe_dir()
        if probes is not None:  # the bench's loop probe, in this daemon only (see bench/loop_probe.py)
            base[loop_probe.ENV] = str(probes)
            base["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(PROBE_SITE), str(REPO), base.get("PYTHONPATH")) if p)
            if os.environ.get(loop_probe.ENV_MS):
                base[loop_probe.ENV_MS] = os.environ[loop_probe.ENV_MS]
        base.update(env or {})
        self.env = base
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, wait_ready: list[str] | None = None, timeout: float = 60.0) -> Daemon:
        self.started_at = time.monotonic()
        log = open(self.workdir / "daemon.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [MCPCTL, "--config", str(self.config), "--socket", str(self.socket), "serve"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env,
            cwd=self.workdir, start_new_session=True)
        log.close()
        wait_for(self._answers, 30, "the daemon's control socket")
        if wait_ready:
            self.wait_ready(wait_ready, timeout)
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            self.status()
        except Exception:
            return False
        return True

    def log_tail(self, n: int = 2000) -> str:
        path = self.workdir / "daemon.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def status(self) -> Any:
        return control_call(self.socket, "supervisor/status", None, 10)

    def wait_ready(self, names: list[str], timeout: float) -> None:
        def ready() -> bool:
            states = {s["name"]: s["state"] for s in self.status()["servers"]}
            return all(states.get(n) == "ready" for n in names)
        wait_for(ready, timeout, f"{names} ready")

    def stop(self) -> None:
        if self.proc is not None:
            end_process(self.proc, 30.0)
            self.proc = None


@contextlib.contextmanager
def running_daemon(servers: str, **kwargs: Any) -> Iterator[Daemon]:
    wait = kwargs.pop("wait_ready", None)
    daemon = Daemon(servers, **kwargs)
    try:
        daemon.start(wait_ready=wait)
        yield daemon
    finally:
        daemon.stop()


# ---- opening clients on each path ----------------------------------------------------------------


async def open_pipes(argv: list[str], number: int, arg_name: str = "text",
                     env: dict[str, str] | None = None) -> tuple[LineClient, subprocess.Popen[bytes]]:
    """Spawn a stdio process (a server, or `mcpctl connect`) and attach a client to its pipes."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    loop = asyncio.get_running_loop()
    client = LineClient(number, Window(), arg_name)
    await loop.connect_read_pipe(lambda: client, proc.stdout)
    writer, _ = await loop.connect_write_pipe(asyncio.Protocol, proc.stdin)
    client.writer = writer
    # The transports own the pipes now: closing them (client.close) closes the fds, so the loop
    # never watches a stale descriptor number that a later process reuses.
    proc.stdin = proc.stdout = None
    return client, proc


async def open_socket_session(path: Path, server: str, number: int, arg_name: str = "text",
                              keys: int = 0) -> LineClient:
    """Attach an MCP session over the control socket, as `mcpctl connect` does, minus the bridge
    (`keys`: see `LineClient`)."""
    loop = asyncio.get_running_loop()
    client = LineClient(number, Window(), arg_name, keys)
    await loop.create_unix_connection(lambda: client, str(path))
    reply = await client.call({"jsonrpc": "2.0", "id": "attach", "method": "supervisor/attach",
                               "params": {"server": server, "client": "bench"}})
    if "error" in reply:
        raise RuntimeError(f"attach failed: {reply['error']}")
    return client


async def open_http(host: str, port: int, path: str, number: int, arg_name: str = "text") -> HttpClient:
    loop = asyncio.get_running_loop()
    client = HttpClient(number, Window(), host, port, path, arg_name)
    await loop.create_connection(lambda: client, host, port)
    return client


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    def up() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", port)) == 0
    wait_for(up, timeout, f"port {port}")
