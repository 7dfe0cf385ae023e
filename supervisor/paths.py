"""Where things live: the config file, the control socket, the state directory.

Each lookup follows the order documented in the README and is a pure function of the environment,
so tests pass their own mapping instead of patching `os.environ`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from .errors import SupervisorError


def config_candidates(environ: Mapping[str, str]) -> list[Path]:
    """`$MCP_SUPERVISOR_CONFIG`, `./fleet.toml`, the XDG config dir, then /etc."""
    found: list[Path] = []
    if environ.get("MCP_SUPERVISOR_CONFIG"):
        found.append(Path(environ["MCP_SUPERVISOR_CONFIG"]))
    found.append(Path("fleet.toml"))
    xdg = environ.get("XDG_CONFIG_HOME") or (
        str(Path(environ["HOME"]) / ".config") if environ.get("HOME") else ""
    )
    if xdg:
        found.append(Path(xdg) / "mcp-supervisor" / "fleet.toml")
    found.append(Path("/etc/mcp-supervisor/fleet.toml"))
    return found


def resolve_config(explicit: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """The config file to use; an explicit `--config` wins even when it does not exist (so the
    error names it). Otherwise the first candidate that exists, or `./fleet.toml`."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    candidates = config_candidates(env)
    if env.get("MCP_SUPERVISOR_CONFIG"):
        return candidates[0]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return Path("fleet.toml")


def resolve_socket(explicit: str | None, environ: Mapping[str, str] | None = None,
                   exists: Callable[[Path], bool] = os.path.exists, uid: int | None = None) -> Path:
    """`--socket`, `$MCP_SUPERVISOR_SOCKET`, `$XDG_RUNTIME_DIR/mcp-supervisor/control.sock`,
    else `/run/mcp-supervisor/control.sock` (root), else `/run/user/$UID/mcp-supervisor/control.sock`
    or `/tmp/mcp-supervisor-$UID/control.sock`.

    Without `XDG_RUNTIME_DIR` (MCP clients start servers with a scrubbed environment) a non-root
    user's socket is looked for in the runtime dir systemd makes for the user (`/run/user/$UID`,
    what XDG_RUNTIME_DIR normally is) and under /tmp, whichever has one; with neither, the first
    whose directory can exist. A daemon started the same way picks the same path, so both agree.
    """
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get("MCP_SUPERVISOR_SOCKET"):
        return Path(env["MCP_SUPERVISOR_SOCKET"])
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "mcp-supervisor" / "control.sock"
    uid = os.geteuid() if uid is None else uid
    if uid == 0:
        return Path("/run/mcp-supervisor/control.sock")
    runtime = Path(f"/run/user/{uid}")
    candidates = [runtime / "mcp-supervisor" / "control.sock",
                  Path(f"/tmp/mcp-supervisor-{uid}/control.sock")]
    for candidate in candidates:
        if exists(candidate):
            return candidate
    return candidates[0] if exists(runtime) else candidates[1]


def state_dir(explicit: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """Where children's HOMEs, logs and the memory server's files go: `[supervisor] state_dir`,
    `$STATE_DIRECTORY` (systemd), `$XDG_STATE_HOME/mcp-supervisor`, `~/.local/state/mcp-supervisor`."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]) / "mcp-supervisor"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "state" / "mcp-supervisor"


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where `mcpctl install` puts packages: `$XDG_DATA_HOME/mcp-supervisor`."""
    env = os.environ if environ is None else environ
    if env.get("MCP_SUPERVISOR_DATA"):
        return Path(env["MCP_SUPERVISOR_DATA"])
    if env.get("XDG_DATA_HOME"):
        return Path(env["XDG_DATA_HOME"]) / "mcp-supervisor"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "share" / "mcp-supervisor"


# --------------------------------------------------------------------------------------------------
# Private directories: what the daemon and its children write is theirs alone


PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
PRIVATE_UMASK = 0o077


class UnsafeDirectory(SupervisorError):
    """A directory the daemon would put its socket in can be reached by other users."""


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner can enter: missing components are created 0700
    whatever the umask, and the directory itself is tightened to 0700 if it is ours and wider
    (state directories made by earlier versions were 0755). Returns `path`."""
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        # Made meanwhile by another task: fine, it is tightened below if it is ours.
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=PRIVATE_DIR_MODE)
            # mkdir's mode passes through the umask, which is process-wide and briefly 0177 while
            # the control socket binds (another thread may be here then): set it outright.
            os.chmod(directory, PRIVATE_DIR_MODE)
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(path))
    if info.st_uid == os.geteuid() and info.st_mode & 0o777 != PRIVATE_DIR_MODE:
        os.chmod(path, PRIVATE_DIR_MODE)
    return path


def check_socket_dir(path: Path) -> None:
    """Create the control socket's directory 0700, or refuse an existing one that belongs to
    someone else or that group or others can reach: whoever can write there can put their own
    socket where `mcpctl` and the clients' bridges will connect. Raises `UnsafeDirectory`."""
    if not path.exists():
        private_dir(path)
        return
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory(f"socket directory {path} is not a directory")
    if info.st_uid != os.geteuid():
        raise UnsafeDirectory(f"socket directory {path} belongs to uid {info.st_uid}, not to this user "
                              f"(uid {os.geteuid()}): refusing to put the control socket there; "
                              "choose another --socket")
    if info.st_mode & 0o077:
        raise UnsafeDirectory(f"socket directory {path} is mode {info.st_mode & 0o777:04o}, so group or "
                              f"others can reach it: refusing (chmod 700 {path}, or choose another --socket)")


def write_private(path: Path, data: bytes) -> None:
    """Write `path` atomically (temp file + rename) as a 0600 file, whatever the umask."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), PRIVATE_FILE_MODE)  # an old temp file keeps its old mode
        handle.write(data)
    os.replace(tmp, path)
