"""`mcpctl install`: put each server's pinned package into a private prefix, ahead of time.

Why ahead of time (DESIGN.md §10): `npx -y` / `uvx` at run time cost seconds of registry round-trips,
fail offline on an empty cache and double the memory. So every entry with a `package` gets its own
prefix under `paths.data_dir()/servers/NAME`:

    npm:  npm install --prefix DIR ... NAME@VERSION      → DIR/node_modules/.bin/CMD
    pypi: python -m venv DIR/venv; DIR/venv/bin/python -m pip install NAME==VERSION EXTRA...
                                                         → DIR/venv/bin/CMD

One prefix per server, so conflicting pins (`mcp<2` for the archived Python servers, `mcp>=2` for
the others) coexist. `DIR/.installed.json` is written last, only after a successful install; it
records what was installed so a second run with the same pin is skipped, and a missing or different
marker means "start from a clean prefix" (a half-finished install never passes for a finished one).

`resolve_command` is also called by the daemon at spawn time, so this module imports only the
standard library, the `package` grammar (`supervisor.config.package`) and the `Clock` seam at top
level; anyio is imported inside the install functions.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, Protocol

from supervisor.config.package import Ecosystem, PackageSpec

from .clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from anyio.abc import Process

MARKER = ".installed.json"
DEFAULT_JOBS = 4
DEFAULT_TIMEOUT_S = 900.0

Outcome = Literal["installed", "skipped", "failed"]

_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")

# What an installer subprocess may see. npm and pip run third-party install scripts, so the
# daemon user's credentials (BRAVE_API_KEY, GITHUB_PERSONAL_ACCESS_TOKEN, ...) are not handed to
# them; proxy, CA and the tools' own configuration variables are, or installs break behind a proxy.
_ENV_KEEP = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SHELL",
    "XDG_CONFIG_HOME", "XDG_CONFIG_DIRS", "XDG_CACHE_HOME", "XDG_DATA_HOME",
    "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "NODE_OPTIONS",
})
_ENV_KEEP_PREFIXES = ("LC_", "PIP_", "NPM_CONFIG_", "npm_config_")
_ENV_KEEP_SUFFIXES = ("_proxy", "_PROXY")
# Browser downloads at install time need hosts other than the registries, take minutes and hundreds
# of MB; the servers that need a browser fetch or find one at call time.
_ENV_SET = {
    "PUPPETEER_SKIP_DOWNLOAD": "1",
    "PUPPETEER_SKIP_CHROMIUM_DOWNLOAD": "1",
    "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
    "npm_config_update_notifier": "false",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_NO_INPUT": "1",
}


class Installable(Protocol):
    """The part of `supervisor.config.ServerConfig` this module reads."""

    @property
    def name(self) -> str: ...
    @property
    def command(self) -> str: ...
    @property
    def args(self) -> Sequence[str]: ...
    @property
    def package(self) -> str | None: ...
    @property
    def extra_requires(self) -> Sequence[str]: ...


def server_prefix(data_dir: Path, name: str) -> Path:
    """The private prefix of server `name`. Names become directory names, so they are checked."""
    if not _SAFE_NAME.fullmatch(name) or name in {".", ".."}:
        raise ValueError(f"server name {name!r} cannot be used as a directory name")
    return data_dir / "servers" / name


def bin_dir(prefix: Path, ecosystem: Ecosystem) -> Path:
    return prefix / "node_modules" / ".bin" if ecosystem == "npm" else prefix / "venv" / "bin"


def resolve_command(server: Installable, data_dir: Path,
                    environ: Mapping[str, str] | None = None) -> list[str] | None:
    """The argv to exec for `server`, or None when the command cannot be found. `argv[0]` is
    final (a `${VAR}` in `command` is expanded from `environ`, default `os.environ`); the args are
    returned unexpanded: the daemon expands them.

    - `command` without a slash and a `package`: the bin inside the server's private prefix, never
      one on PATH (running some other version silently would defeat the pin).
    - `command` with a slash: as written, if that file is executable (a relative path is checked
      against the current directory).
    - no `package`: looked up on `environ`'s PATH.

    Cheap on purpose (a stat call or two): the daemon calls it at every spawn.
    """
    env = os.environ if environ is None else environ
    command = server.command
    if "${" in command:
        from supervisor.config import expand  # only for the rare templated command

        command = expand(command, env)
    if "/" in command:
        return [command, *server.args] if os.access(command, os.X_OK) else None
    if server.package:
        try:
            spec = PackageSpec.parse(server.package)
            candidate = bin_dir(server_prefix(data_dir, server.name), spec.ecosystem) / command
        except ValueError:
            return None
        return [str(candidate), *server.args] if os.access(candidate, os.X_OK) else None
    found = shutil.which(command, path=env.get("PATH"))
    return [found, *server.args] if found else None


FAILURE = ".install-failed.json"


def _record_failure(prefix: Path, package: str, detail: str | None) -> None:
    """Keep why the last install failed, so the daemon's `unavailable` reason can say it (a
    missing system package, say) instead of only "not installed". The next install starts from
    a fresh prefix, which removes it."""
    with contextlib.suppress(OSError):
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / FAILURE).write_text(json.dumps({"package": package, "detail": detail or ""}))


def last_failure(data_dir: Path, server: Installable) -> str | None:
    """Why the last `mcpctl install` of this very pin failed, if it did."""
    try:
        data = json.loads((server_prefix(data_dir, server.name) / FAILURE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("package") != server.package:
        return None
    return str(data.get("detail") or "") or None


def read_marker(prefix: Path) -> dict[str, object] | None:
    try:
        data = json.loads((prefix / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def marker_record(spec: PackageSpec, extra_requires: Sequence[str]) -> dict[str, object]:
    """The part of the marker that decides "already installed": the pin and the extra pins."""
    return {"package": str(spec), "extra_requires": list(extra_requires)}


def is_installed(server: Installable, data_dir: Path) -> bool:
    """True when the prefix holds exactly this entry's pin and its command is there."""
    if not server.package:
        return False
    spec = PackageSpec.parse(server.package)
    prefix = server_prefix(data_dir, server.name)
    marker = read_marker(prefix)
    if marker is None or {k: marker.get(k) for k in ("package", "extra_requires")} != marker_record(
        spec, server.extra_requires
    ):
        return False
    return "/" in server.command or os.access(bin_dir(prefix, spec.ecosystem) / server.command, os.X_OK)


def installer_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for npm / pip: see `_ENV_KEEP` for why it is filtered."""
    env = {
        key: value
        for key, value in environ.items()
        if key in _ENV_KEEP or key.startswith(_ENV_KEEP_PREFIXES) or key.endswith(_ENV_KEEP_SUFFIXES)
    }
    env.update(_ENV_SET)
    return env


def install_steps(spec: PackageSpec, extra_requires: Sequence[str], prefix: Path,
                  *, npm: str = "npm", python: str = sys.executable) -> list[tuple[str, list[str]]]:
    """The argv lists that install `spec` into `prefix`, each with a short label for progress.

    `--` ends the options before the packages: a requirement the config let through can never be
    read as `--index-url=...` (the config refuses those too; this is the second lock)."""
    refused = [r for r in extra_requires if r.lstrip().startswith("-")]
    if refused:
        raise ValueError(f"extra_requires {refused[0]!r} is an option, not a package")
    if spec.ecosystem == "npm":
        return [(
            "npm install",
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--omit=dev",
             "--no-progress", "--loglevel=warn", "--", spec.requirement, *extra_requires],
        )]
    venv = prefix / "venv"
    return [
        ("create venv", [python, "-m", "venv", str(venv)]),
        ("pip install", [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-input",
                         "--disable-pip-version-check", "--", spec.requirement, *extra_requires]),
    ]


# --- running installs ----------------------------------------------------------------------------


@dataclass
class Progress:
    """One server's line in the live display."""

    name: str
    spec: str
    state: str = "waiting"
    started: float | None = None
    finished: float | None = None
    last_line: str = ""

    def elapsed(self, now: float) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or now) - self.started


@dataclass
class InstallResult:
    name: str
    outcome: Outcome
    package: str | None
    seconds: float = 0.0
    detail: str = ""

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "outcome": self.outcome, "package": self.package,
                "seconds": round(self.seconds, 2), "detail": self.detail}


class InstallFailed(Exception):
    """A step exited non-zero or timed out; the message is the most useful line of its output."""


@dataclass
class Installer:
    """Installs a set of entries with at most `jobs` installers running at once."""

    data_dir: Path
    jobs: int = DEFAULT_JOBS
    force: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    on_change: Callable[[Progress], None] = lambda _p: None
    clock: Clock = SYSTEM_CLOCK  # what an install's seconds are measured on

    async def install_all(self, servers: Sequence[Installable]) -> list[InstallResult]:
        import anyio

        limiter = anyio.CapacityLimiter(max(1, self.jobs))
        results: dict[str, InstallResult] = {}

        async def one(server: Installable) -> None:
            async with limiter:
                results[server.name] = await self.install_one(server)

        # Each job catches its own failures, so one bad entry never cancels its siblings.
        async with anyio.create_task_group() as tg:
            for server in servers:
                tg.start_soon(one, server)
        return [results[s.name] for s in servers]

    async def install_one(self, server: Installable) -> InstallResult:
        progress = Progress(server.name, server.package or "-")
        if not server.package:
            return self._finish(progress, InstallResult(
                server.name, "skipped", None, detail="no package: runs as written"))
        try:
            spec = PackageSpec.parse(server.package)
            prefix = server_prefix(self.data_dir, server.name)
        except ValueError as exc:
            return self._finish(progress, InstallResult(server.name, "failed", server.package,
                                                        detail=str(exc)))
        if not self.force and is_installed(server, self.data_dir):
            return self._finish(progress, InstallResult(server.name, "skipped", str(spec),
                                                        detail="already installed"))
        progress.started = self.clock.monotonic()
        try:
            await self._install(spec, server, prefix, progress)
        except InstallFailed as exc:
            result = InstallResult(server.name, "failed", str(spec),
                                   self.clock.monotonic() - progress.started, str(exc))
            _record_failure(prefix, server.package, result.detail)
        except OSError as exc:
            result = InstallResult(server.name, "failed", str(spec),
                                   self.clock.monotonic() - progress.started, f"{type(exc).__name__}: {exc}")
            _record_failure(prefix, server.package, result.detail)
        else:
            result = InstallResult(server.name, "installed", str(spec),
                                   self.clock.monotonic() - progress.started)
        return self._finish(progress, result)

    def _finish(self, progress: Progress, result: InstallResult) -> InstallResult:
        progress.state = result.outcome
        progress.finished = self.clock.monotonic()
        if result.detail:
            progress.last_line = result.detail
        self.on_change(progress)
        return result

    async def _install(self, spec: PackageSpec, server: Installable, prefix: Path,
                       progress: Progress) -> None:
        import anyio

        npm = shutil.which("npm", path=self.environ.get("PATH"))
        if spec.ecosystem == "npm" and npm is None:
            raise InstallFailed("npm not found on PATH (Node.js is needed for npm packages)")
        try:
            steps = install_steps(spec, server.extra_requires, prefix, npm=npm or "npm")
        except ValueError as exc:
            raise InstallFailed(str(exc)) from None
        # Start clean: whatever is there is a different pin or an interrupted install.
        await anyio.to_thread.run_sync(_fresh_dir, prefix)
        env = installer_env(self.environ)
        for label, argv in steps:
            progress.state = label
            self.on_change(progress)
            await self._run(argv, env, prefix, progress)
        if "/" not in server.command and not os.access(bin_dir(prefix, spec.ecosystem) / server.command,
                                                       os.X_OK):
            available = sorted(p.name for p in bin_dir(prefix, spec.ecosystem).glob("*")
                               if spec.ecosystem == "npm" or not _is_venv_tool(p.name))
            raise InstallFailed(f"installed, but the package has no command {server.command!r} "
                                f"(it provides: {', '.join(available) or 'none'})")
        record = marker_record(spec, server.extra_requires)
        record["installed_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.clock.time()))
        tmp = prefix / (MARKER + ".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(prefix / MARKER)

    async def _run(self, argv: list[str], env: Mapping[str, str], cwd: Path, progress: Progress) -> None:
        """Run one step, streaming its output into the progress line; raise InstallFailed."""
        import subprocess

        import anyio

        tail: deque[str] = deque(maxlen=40)
        # Own session, so a cancelled install (Ctrl-C) takes npm's whole tree (sh, node-gyp, ...) down.
        process = await anyio.open_process(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                           start_new_session=True)
        try:
            with anyio.fail_after(self.timeout_s):
                await _pump_lines(process, tail, progress, self.on_change)
                code = await process.wait()
        except TimeoutError:
            raise InstallFailed(f"{argv[0]} timed out after {self.timeout_s:.0f}s") from None
        finally:
            with anyio.CancelScope(shield=True):
                await _reap(process)
        if code != 0:
            raise InstallFailed(_error_line(tail) or f"{Path(argv[0]).name} exited with status {code}")


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def _is_venv_tool(name: str) -> bool:
    return name.startswith(("python", "pip", "activate", "Activate")) or name == "deactivate"


async def _pump_lines(process: Process, tail: deque[str], progress: Progress,
                      on_change: Callable[[Progress], None]) -> None:
    assert process.stdout is not None
    buffer = b""
    async for chunk in process.stdout:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace").strip()
            if line:
                tail.append(line)
                progress.last_line = line
                on_change(progress)
    if buffer.strip():
        tail.append(buffer.decode(errors="replace").strip())


async def _reap(process: Process) -> None:
    """Kill the step's process group if it is still running, then wait for it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    await process.aclose()


# A failed npm or pip run prints dozens of lines; the summary shows the one that names the cause.
# Ranked: a line saying what was missing or impossible, pip's own "ERROR:" line, any npm error line
# that is not boilerplate, and finally the last line.
_CAUSE = re.compile(
    r"not found|No matching|Could not find a version|requires a different Python|ResolutionImpossible|"
    r"\bE404\b|\bETARGET\b|\bERESOLVE\b|\bEACCES\b|\bENOSPC\b|\bENOTFOUND\b.*registry|"
    r"No space left|Permission denied|Failed to build|Could not build wheels",
    re.IGNORECASE,
)
_NPM_BOILERPLATE = re.compile(r"^npm (?:error|ERR!) (?:code|errno|syscall|path|command|signal|A complete log|"
                              r"gyp|cwd|node -v|node-gyp -v|\$|>|\s*$)|prebuild-install warn")
_NPM_PREFIX = re.compile(r"^npm (?:error|ERR!|warn|WARN) (?:notarget )?")


def _error_line(tail: Sequence[str]) -> str:
    """The most telling line of a failed step's output, with npm's prefix dropped and, for a
    native module that failed to build, the module's name in front."""
    lines = [line for line in tail if line]
    causes = [line for line in lines if _CAUSE.search(line) and not _NPM_BOILERPLATE.match(line)]
    pip_errors = [line for line in lines if line.startswith("ERROR:")]
    npm_errors = [line for line in lines if _NPM_PREFIX.match(line) and not _NPM_BOILERPLATE.match(line)]
    best = next((group[0] for group in (causes, pip_errors, npm_errors) if group), lines[-1] if lines else "")
    module = next((m.group(1) for line in lines
                   if (m := re.match(r"npm (?:error|ERR!) path .*/node_modules/((?:@[^/]+/)?[^/]+)$", line))),
                  None)
    best = _NPM_PREFIX.sub("", best)
    return f"{module}: {best}" if module else best


# --- output --------------------------------------------------------------------------------------


class ProgressDisplay:
    """Live lines on a TTY (redrawn in place), plain event lines otherwise."""

    def __init__(self, names: Sequence[str], out: IO[str], *, live: bool,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.out = out
        self.live = live
        self.clock = clock  # the elapsed seconds shown
        self.rows: dict[str, Progress] = {}
        self.order = list(names)
        self.width = max((len(n) for n in names), default=4)
        self.drawn = 0
        self._last_state: dict[str, str] = {}

    def update(self, progress: Progress) -> None:
        self.rows[progress.name] = progress
        if self.live:
            return  # the ticker redraws; per-line redraws would flood the terminal
        if self._last_state.get(progress.name) == progress.state:
            return
        self._last_state[progress.name] = progress.state
        line = f"{progress.name}: {progress.state}"
        if progress.state == "failed":
            line += f": {progress.last_line}"
        elif progress.state == "installed":
            line += f" in {progress.elapsed(self.clock.monotonic()):.1f}s"
        elif progress.state in {"npm install", "pip install"}:
            line = f"{progress.name}: {progress.state} {progress.spec}"
        self.out.write(line + "\n")
        self.out.flush()

    def redraw(self) -> None:
        if not self.live:
            return
        columns, rows = shutil.get_terminal_size((100, 24))
        now = self.clock.monotonic()
        shown = self._visible(rows - 2)
        lines = []
        for name in shown:
            row = self.rows.get(name)
            state = row.state if row else "waiting"
            elapsed = f"{row.elapsed(now):5.1f}s" if row and row.started else "      "
            tail = row.last_line if row and state not in {"skipped", "installed"} else ""
            lines.append(f"{name:<{self.width}}  {state:<11} {elapsed}  {tail}"[: columns - 1])
        if len(shown) < len(self.order):
            counts: dict[str, int] = {}
            for name in self.order:
                state = self.rows[name].state if name in self.rows else "waiting"
                key = state if state in {"installed", "skipped", "failed", "waiting"} else "running"
                counts[key] = counts.get(key, 0) + 1
            lines.append(", ".join(f"{n} {state}" for state, n in sorted(counts.items()))[: columns - 1])
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F")
        # \x1b[K clears each line's old tail, \x1b[J whatever a taller previous frame left below.
        self.out.write("".join(f"{line}\x1b[K\n" for line in lines) + "\x1b[J")
        self.out.flush()
        self.drawn = len(lines)

    def _visible(self, room: int) -> list[str]:
        """Every server when the terminal is tall enough; else the running ones (cursor-up redraws
        cannot reach lines that scrolled off the screen)."""
        if len(self.order) <= room:
            return self.order
        finished = {"installed", "skipped", "failed", "waiting"}
        running = [n for n in self.order if n in self.rows and self.rows[n].state not in finished]
        return running[: max(1, room - 1)]


def format_summary(results: Sequence[InstallResult]) -> str:
    """The table printed after an install: one row per server, then the counts."""
    width = max([len(r.name) for r in results] + [6])
    rows = [f"{'SERVER':<{width}}  {'RESULT':<9}  {'TIME':>6}  DETAIL"]
    for r in results:
        seconds = f"{r.seconds:5.1f}s" if r.outcome != "skipped" else "     -"
        detail = r.detail or (r.package or "")
        rows.append(f"{r.name:<{width}}  {r.outcome:<9}  {seconds:>6}  {detail}")
    counts = {outcome: sum(1 for r in results if r.outcome == outcome)
              for outcome in ("installed", "skipped", "failed")}
    rows.append(", ".join(f"{n} {outcome}" for outcome, n in counts.items()))
    return "\n".join(rows)


async def run_install(servers: Sequence[Installable], data_dir: Path, *, jobs: int = DEFAULT_JOBS,
                      force: bool = False, out: IO[str] = sys.stderr,
                      live: bool | None = None) -> list[InstallResult]:
    """Install `servers` with a progress display on `out`; returns one result per server."""
    import anyio

    if live is None:
        live = out.isatty() and os.environ.get("TERM") != "dumb"
    display = ProgressDisplay([s.name for s in servers], out, live=live)
    installer = Installer(data_dir, jobs=jobs, force=force, on_change=display.update)
    results: list[InstallResult] = []
    async with anyio.create_task_group() as tg:
        async def ticker() -> None:
            while True:
                display.redraw()
                await anyio.sleep(0.2)

        if live:
            tg.start_soon(ticker)
        results = await installer.install_all(servers)
        tg.cancel_scope.cancel()
    display.redraw()
    return results
