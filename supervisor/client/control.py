"""A small blocking client for the control socket, for `mcpctl` verbs (and nothing heavy).

One request per call over a fresh connection: verbs run once and exit, so connection reuse would
buy nothing and cost state.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import orjson

from supervisor.errors import DaemonNotRunning


class ControlError(Exception):
    """The daemon answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def connect(path: Path, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise DaemonNotRunning(f"the mcp-supervisor daemon is not running (no socket answers at {path})"
                               ) from exc
    except PermissionError as exc:
        sock.close()
        raise DaemonNotRunning(f"cannot open {path}: permission denied (the socket is owner-only)"
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
            raise DaemonNotRunning("the daemon closed the connection")
        buffer += chunk


def call(path: Path, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
    """Send one control request and return its result, or raise ControlError / DaemonNotRunning."""
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
                raise ControlError(-32001, f"the daemon did not answer {method} within {timeout:g}s"
                                   ) from exc
            if reply.get("id") == 1:
                break
        if "error" in reply:
            error = reply["error"]
            raise ControlError(int(error.get("code", -32603)), str(error.get("message")),
                               error.get("data"))
        return reply.get("result")
    finally:
        sock.close()
