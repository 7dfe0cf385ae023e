"""One daemon per control socket: an exclusive `flock` on `SOCKET.lock`, held for the daemon's life.

Probing the socket is not enough: when the socket file was removed (by hand, by a tmp cleaner) a
second `mcpctl serve` found nothing there, read the first daemon's pid registry as leftovers and
ended its live children. The lock is taken before anything of a previous run is read; a second
daemon finds it held and refuses, naming the pid written in the lock file. The kernel drops the
lock when its holder dies, however it dies (SIGKILL included), so there is nothing stale to clean
up; the file itself stays (removing it would race with the next daemon locking it). The fd is
not inherited by children, so an orphaned child never holds the lock.

Whatever sits at the socket path that is not a socket (a regular file, a directory) is refused
with a clear error rather than deleted: it is not ours. A socket there is a previous daemon's
leftover (we hold the lock, so no daemon of ours serves it) and is replaced.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path

from supervisor.errors import SupervisorError


class AlreadyRunning(SupervisorError):
    """Another daemon holds the socket's lock."""


class SocketPathTaken(SupervisorError):
    """Something that is not a socket is where the control socket should be."""


def lock_path(socket_path: Path) -> Path:
    return socket_path.with_name(socket_path.name + ".lock")


class SocketLock:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.path = lock_path(socket_path)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise AlreadyRunning; then check what is at the socket path."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise SupervisorError(f"cannot open the lock file {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise AlreadyRunning(f"a daemon ({who}) is already running on {self.socket_path} "
                                 f"(it holds {self.path})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        try:
            check_socket_path(self.socket_path)
        except SupervisorError:
            self.release()
            raise

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def check_socket_path(path: Path) -> None:
    """Nothing, a socket (stale: replaced), or SocketPathTaken."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SocketPathTaken(f"cannot inspect {path}: {exc.strerror or exc}") from exc
    if stat.S_ISSOCK(mode):
        return
    kind = "a directory" if stat.S_ISDIR(mode) else "a symlink" if stat.S_ISLNK(mode) else "a file"
    raise SocketPathTaken(f"{path} is {kind}, not a socket: refusing to replace it (remove it, or "
                          "choose another path with --socket)")


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(os.pread(fd, 32, 0).split()[0])
    return None
