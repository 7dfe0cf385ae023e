"""What can go wrong talking to the daemon, the same two answers for `mcpctl` verbs and `mcpctl top`.

    DaemonUnavailable(socket_path, reason)   nothing usable answers on the control socket: no
                                             socket, refused, closed mid-stream, silent, garbage
    RemoteError(message, code, data)         a live daemon answered with a JSON-RPC error (no
                                             server by that name, bad params, the child died)

The split is what callers act on: `DaemonUnavailable` means "start the daemon, or wait for it"
(the dashboard shows "daemon not running — retrying", a verb exits 1 saying so), `RemoteError`
means the daemon is fine and refused this one request (a verb exits 2 for an unknown server).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supervisor.errors import INTERNAL_ERROR


class DaemonUnavailable(Exception):
    """Nothing usable answers on the control socket: not running, refused, gone, or silent.

    `reason` is the short cause ("no socket", "connection refused"); `str()` is the whole sentence
    a user reads (`message` when the caller words it itself; the bare reason when the caller has no
    path, as a reader handed only a socket)."""

    def __init__(self, socket_path: Path | str | None, reason: str, *, message: str | None = None) -> None:
        where = f"daemon not running at {socket_path}: " if socket_path is not None else ""
        super().__init__(message or f"{where}{reason}")
        self.socket_path = Path(socket_path) if socket_path is not None else None
        self.reason = reason


class RemoteError(Exception):
    """The daemon answered with a JSON-RPC error object."""

    def __init__(self, message: str, code: int = INTERNAL_ERROR, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.data = data

    @classmethod
    def from_reply(cls, error: object) -> RemoteError:
        """From a reply's `error` member, checked for shape: a daemon of another version (or a
        bug) must not turn into a TypeError in the caller."""
        if not isinstance(error, dict):
            return cls("unknown error")
        code = error.get("code")
        message = error.get("message")
        return cls(str(message) if message is not None else "unknown error",
                   code if isinstance(code, int) and not isinstance(code, bool) else INTERNAL_ERROR,
                   error.get("data"))
