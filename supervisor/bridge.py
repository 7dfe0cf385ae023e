"""`mcpctl connect NAME`: a stdio MCP server for any client config, backed by the daemon's child.

It asks the daemon to attach a session to NAME over the control socket, then only pumps bytes both
ways; the daemon answers the handshake and multiplexes. Two threads and blocking syscalls keep it
small and quick to start: this process imports nothing but the standard library and orjson.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from pathlib import Path

import orjson

from .control_client import connect, read_line
from .errors import DaemonNotRunning

CHUNK = 65536  # under glibc's mmap threshold: bigger reads cost mmap+mremap+munmap each


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _stdin_to_socket(sock: socket.socket, done: threading.Event) -> None:
    try:
        while True:
            data = os.read(0, CHUNK)
            if not data:
                break
            sock.sendall(data)
    except OSError:
        pass
    finally:
        done.set()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)


def bridge(socket_path: Path, server: str | None, client: str | None = None, *,
           all_servers: bool = False) -> int:
    try:
        sock = connect(socket_path)
    except DaemonNotRunning as exc:
        sys.stderr.write(f"mcpctl connect: {exc}\n")
        return 1
    with sock:
        attach = {"jsonrpc": "2.0", "id": "attach", "method": "supervisor/attach",
                  "params": {"all": True, "client": client} if all_servers
                  else {"server": server, "client": client}}
        buffer = bytearray()
        try:
            sock.sendall(orjson.dumps(attach) + b"\n")
            reply = orjson.loads(read_line(sock, buffer))
        except (OSError, DaemonNotRunning, orjson.JSONDecodeError) as exc:
            sys.stderr.write(f"mcpctl connect: the daemon did not accept the session: {exc}\n")
            return 1
        if "error" in reply:
            sys.stderr.write(f"mcpctl connect: {reply['error'].get('message')}\n")
            return 2 if reply["error"].get("code") == -32005 else 1
        sock.settimeout(None)
        if buffer:
            _write_all(1, bytes(buffer))
        stdin_done = threading.Event()
        pump = threading.Thread(target=_stdin_to_socket, args=(sock, stdin_done), daemon=True)
        pump.start()
        try:
            while True:
                data = sock.recv(CHUNK)
                if not data:
                    break
                _write_all(1, data)
        except OSError:
            pass
        if not stdin_done.is_set():
            sys.stderr.write("mcpctl connect: the daemon closed the session\n")
            return 1
        return 0
