"""A small blocking client for the control socket, for `mcpctl` verbs (and nothing heavy).

One request per call over a fresh connection: verbs run once and exit, so connection reuse would
buy nothing and cost state.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import orjson

from supervisor.client.errors import DaemonUnavailable, RemoteError
from supervisor.errors import REQUEST_TIMEOUT


def connect(path: Path, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        reason = "no socket" if isinstance(exc, FileNotFoundError) else "connection refused"
        raise DaemonUnavailable(path, reason, message="the mcp-supervisor daemon is not running "
                                f"(no socket answers at {path})") from exc
    except PermissionError as exc:
        sock.close()
        raise DaemonUnavailable(path, "permission denied",
                                message=f"cannot open {path}: permission denied (the socket is owner-only)"
                                ) from exc
    return sock


def read_line(sock: socket.socket, buffer: bytearray) -> bytes:
    while True:
        index = buffer.find(b"\n")
        if index >= 0:
            line = bytes(buffer[:index])
            del buffer[: index + 1]
            return line
        chunk = sock.recv(262144)
        if not chunk:
            raise DaemonUnavailable(None, "the daemon closed the connection")
        buffer += chunk


def call(path: Path, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
    """Send one control request and return its result, or raise RemoteError / DaemonUnavailable.

    A reply that does not come within `timeout` is a RemoteError with the MCP timeout code, as a
    daemon's own deadline would be: the verbs treat both alike."""
    sock = connect(path, timeout)
    try:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            message["params"] = params
        sock.sendall(orjson.dumps(message) + b"\n")
        buffer = bytearray()
        while True:
            try:
                reply = orjson.loads(read_line(sock, buffer))
            except TimeoutError as exc:
                raise RemoteError(f"the daemon did not answer {method} within {timeout:g}s",
                                  REQUEST_TIMEOUT) from exc
            if reply.get("id") == 1:
                break
        if "error" in reply:
            raise RemoteError.from_reply(reply["error"])
        return reply.get("result")
    finally:
        sock.close()
