"""A raw MCP session over the daemon's control socket, for tests that need exact bytes.

It does what `mcpctl connect` does (attach, then speak MCP) without the bridge process, so tests
can pipeline hundreds of requests, send malformed lines and disconnect mid-call.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Any

import orjson

from supervisor.client.control import connect, read_line


class RawSession:
    def __init__(self, socket_path: Path, server: str, timeout: float = 30.0,
                 client: str | None = None) -> None:
        self.sock = connect(socket_path, timeout)
        self.buffer = bytearray()
        self.notifications: list[dict[str, Any]] = []
        self.send({"jsonrpc": "2.0", "id": "attach", "method": "supervisor/attach",
                   "params": {"server": server, "client": client}})
        self.attach_reply = self.recv()

    def send(self, message: Any) -> None:
        self.sock.sendall(orjson.dumps(message) + b"\n")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> dict[str, Any]:
        message: dict[str, Any] = orjson.loads(read_line(self.sock, self.buffer))
        return message

    def response(self) -> dict[str, Any]:
        """The next response, keeping notifications aside."""
        while True:
            message = self.recv()
            if "method" in message and "id" not in message:
                self.notifications.append(message)
                continue
            return message

    def request(self, method: str, params: dict[str, Any] | None = None, msg_id: Any = 1
                ) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return self.response()

    def initialize(self) -> dict[str, Any]:
        reply = self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                            "clientInfo": {"name": "test", "version": "1"}}, "init")
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return reply

    def call_tool(self, name: str, arguments: dict[str, Any], msg_id: Any = 1) -> dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": arguments}, msg_id)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def __enter__(self) -> RawSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
