"""Shared fixtures: a real daemon (`mcpctl serve` as a subprocess) on a private socket and fleet.

Everything is real: the daemon process, the control socket, the CLI, the child servers. Waiting is
always "poll with a deadline", never a fixed sleep. Every daemon started here is checked at the end
for leftover processes (children and grandchildren).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psutil
import pytest
from hypothesis import HealthCheck, Phase, settings

from supervisor.client.control import call

from .server_fakes import Children, FakeClock

# Hypothesis profiles (tests/test_fuzz.py): "ci", the default, is derandomized (the same examples
# on every run, so a red CI is reproducible) with each test's own small max_examples, and reports
# the first failing example as generated: a failure usually kills the daemon, and shrinking it
# (a daemon restart per attempt) would take minutes. "chaos" is the long random run of
# `python -m bench chaos`, which shrinks. Examples drive a real daemon, hence no deadline.
_FUZZ_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                HealthCheck.large_base_example]
settings.register_profile("ci", derandomize=True, deadline=None, database=None,
                          phases=(Phase.explicit, Phase.generate), suppress_health_check=_FUZZ_HEALTH)
settings.register_profile("chaos", derandomize=False, deadline=None, database=None,
                          suppress_health_check=_FUZZ_HEALTH)
settings.load_profile(os.environ.get("MCP_SUPERVISOR_HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parent.parent
SERVERS = REPO / "tests" / "servers"
ECHO = SERVERS / "echo_server.py"
CHAOS = SERVERS / "chaos_server.py"
PY = sys.executable
MCPCTL = str(Path(sys.executable).with_name("mcpctl"))
NODE_BIN = REPO / "tests" / "node" / "node_modules" / ".bin"


def server_toml(name: str, script: Path = ECHO, *args: str, **keys: Any) -> str:
    """A `[servers.NAME]` table running one of our test servers with this Python."""
    argv = ", ".join(f'"{a}"' for a in (str(script), *args))
    lines = [f"[servers.{name}]", f'command = "{PY}"', f"args = [{argv}]"]
    for key, value in keys.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        elif isinstance(value, list):
            lines.append(f"{key} = [{', '.join(repr(v).replace(chr(39), chr(34)) for v in value)}]")
        else:
            lines.append(f'{key} = "{value}"')
    return "\n".join(lines) + "\n"


def everything_bin() -> Path:
    """The reference `mcp-server-everything` (Node), a real third-party child."""
    path = NODE_BIN / "mcp-server-everything"
    assert path.exists(), f"{path} is missing: `make test` installs tests/node (npm ci)"
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


T = TypeVar("T")


def wait_for(predicate: Callable[[], T | None], timeout: float = 20.0, interval: float = 0.05,
             what: str = "condition") -> T:
    """The predicate's first truthy answer, polled every `interval` until `timeout` runs out."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def alive_pids(pids: set[int]) -> set[int]:
    found: set[int] = set()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.add(pid)
    return found


def none_alive(pids: set[int]) -> bool:
    return not alive_pids(pids)


class Daemon:
    """A running `mcpctl serve`, its files, and helpers to drive it."""

    def __init__(self, workdir: Path, config_text: str, env: dict[str, str], watch: bool = False,
                 supervisor_keys: str = "") -> None:
        self.workdir = workdir
        self.watch = watch
        self.supervisor_keys = supervisor_keys  # extra `[supervisor]` lines (memory_limit = ...)
        self.config = workdir / "fleet.toml"
        self.socket = workdir / "ctl.sock"
        self.log = workdir / "daemon.log"
        self.env = env
        self.seen_pids: set[int] = set()
        self.proc: subprocess.Popen[bytes] | None = None
        self.serve_args: list[str] = []  # extra `mcpctl serve` options, e.g. ["--log-format", "json"]
        self.nofile: tuple[int, int] | None = None  # RLIMIT_NOFILE (soft, hard) to start the daemon with
        self.write_config(config_text)

    def write_config(self, text: str) -> None:
        self.config_text = text
        watch = "true" if self.watch else "false"
        header = f'[supervisor]\nstate_dir = "{self.workdir / "state"}"\nwatch = {watch}\n'
        header += self.supervisor_keys
        if "[http]" not in text:
            header += '[http]\nlisten = ""\n'
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(header + text)
        os.replace(tmp, self.config)

    def start(self, wait: bool = True) -> Daemon:
        self._log_file = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [MCPCTL, "--config", str(self.config), "--socket", str(self.socket), "serve", *self.serve_args],
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            env=self.env, cwd=self.workdir, preexec_fn=self._limits if self.nofile else None)
        if wait:
            wait_for(self.socket_answers, 20, what="daemon socket")
        return self

    def _limits(self) -> None:
        import resource
        assert self.nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)

    def socket_answers(self) -> bool:
        """The control socket is there and answers (a daemon that exited instead fails the test)."""
        return self.socket.exists() and self._answers()

    def _answers(self) -> bool:
        try:
            self.status()
            return True
        except Exception:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log_text()}"
                                     ) from None
            return False

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def rpc(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> Any:
        return call(self.socket, method, params, timeout)

    def status(self, name: str | None = None) -> dict[str, Any]:
        """`supervisor/status`, or the entry of server `name` in it (KeyError while it has none)."""
        result: dict[str, Any] = self.rpc("supervisor/status")
        for server in result["servers"]:
            self.seen_pids.update(server.get("pids") or [])
        if name is None:
            return result
        found: list[dict[str, Any]] = [s for s in result["servers"] if s["name"] == name]
        if not found:
            raise KeyError(f"no server {name!r} in status (yet)")
        return found[0]

    def wait_state(self, name: str, *states: str, timeout: float = 30.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            try:
                server = self.status(name)
            except KeyError:
                return None
            return server if server["state"] in states else None
        try:
            return wait_for(check, timeout, what=f"{name} in {states}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- daemon log ---\n{self.log_text()[-4000:]}") from None

    def ctl(self, *args: str, timeout: float = 60, input: bytes | None = None
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MCPCTL, "--socket", str(self.socket), "--config", str(self.config), *args],
            capture_output=True, text=True, timeout=timeout, env=self.env,
            input=input.decode() if input is not None else None)

    def descendants(self) -> set[int]:
        if self.proc is None:
            return set()
        with contextlib.suppress(psutil.Error):
            return {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        return set()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            self._log_file.close()
            return self.proc.returncode
        self.seen_pids |= self.descendants()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"daemon did not stop within {timeout}s:\n{self.log_text()}") from None
        finally:
            self._log_file.close()
        return self.proc.returncode

    def kill_leftovers(self) -> set[int]:
        left = alive_pids(self.seen_pids)
        for pid in left:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        return left


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes, so not pytest's long tmp_path.
    path = Path(tempfile.mkdtemp(prefix="mcps-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def clock() -> FakeClock:
    """The clock of an in-process test (tests/server_fakes.py): it moves only when told."""
    return FakeClock()


@pytest.fixture
def children() -> Children:
    """The fake children an in-process `Server` makes (tests/server_fakes.py)."""
    return Children()


@pytest.fixture
def sock(workdir: Path) -> Path:
    """A control socket path for a client test's own peer (tests/raw_socket.py, tui.fake)."""
    return workdir / "control.sock"


def daemon_env(workdir: Path, **extra: str) -> dict[str, str]:
    # The caller's MCP_SUPERVISOR_* settings would leak into every test daemon; the event loop is
    # the one kept, so `MCP_SUPERVISOR_LOOP=asyncio pytest` runs the suite on asyncio's own loop.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MCP_SUPERVISOR", "XDG_")) or k == "MCP_SUPERVISOR_LOOP"}
    env.update({
        "XDG_STATE_HOME": str(workdir / "xdg-state"),
        "XDG_DATA_HOME": str(workdir / "xdg-data"),
        "XDG_CONFIG_HOME": str(workdir / "xdg-config"),
        "XDG_RUNTIME_DIR": str(workdir / "run"),
        "MCP_SUPERVISOR_DATA": str(workdir / "data"),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


class MakeDaemon(Protocol):
    """The `make_daemon` fixture: a `Daemon` on this config, started unless `start=False`."""

    def __call__(self, config_text: str, *, start: bool = True, env: dict[str, str] | None = None,
                 subdir: str | None = None, watch: bool = False,
                 serve_args: tuple[str, ...] = (), supervisor_keys: str = "",
                 nofile: tuple[int, int] | None = None) -> Daemon: ...


@pytest.fixture
def make_daemon(workdir: Path) -> Iterator[MakeDaemon]:
    """Start daemons on demand; at teardown stop them and fail if any process was left behind."""
    started: list[Daemon] = []

    def factory(config_text: str, *, start: bool = True, env: dict[str, str] | None = None,
                subdir: str | None = None, watch: bool = False,
                serve_args: tuple[str, ...] = (), supervisor_keys: str = "",
                nofile: tuple[int, int] | None = None) -> Daemon:
        where = workdir / subdir if subdir else workdir
        where.mkdir(mode=0o700, exist_ok=True)  # the control socket's directory: the daemon refuses wider
        daemon = Daemon(where, config_text, env or daemon_env(workdir), watch=watch,
                        supervisor_keys=supervisor_keys)
        daemon.serve_args = list(serve_args)
        daemon.nofile = nofile
        started.append(daemon)
        if start:
            daemon.start()
        return daemon

    yield factory
    problems: list[str] = []
    for daemon in started:
        with contextlib.suppress(Exception):
            daemon.status()
        daemon.seen_pids |= daemon.descendants()
        daemon.stop()
        try:
            wait_for(functools.partial(none_alive, daemon.seen_pids), 10, what="children to exit")
        except AssertionError:
            left = daemon.kill_leftovers()
            problems.append(f"processes left behind: {sorted(left)}")
    assert not problems, "; ".join(problems)
