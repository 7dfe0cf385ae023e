"""`mcpctl connect NAME`: a stdio MCP server for any client config, backed by the daemon's child.

It asks the daemon to attach a session to NAME over the control socket; the daemon answers the
handshake and multiplexes. When stdin and stdout are pipes or sockets (what MCP clients give a
server), they travel with the attach request (SCM_RIGHTS) and the daemon serves the client on them
directly: each call then skips two process hops through this bridge, which only waits for the
session to end. Otherwise (a terminal, a file, or a daemon that does not take them) it pumps bytes
both ways with two threads and blocking syscalls. Either way it stays small and quick to start:
this process imports nothing but the standard library and orjson.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import sys
import threading
from pathlib import Path

import orjson

from supervisor.client.errors import DaemonUnavailable

from .control import connect, read_line

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


def _passable(fd: int) -> bool:
    """A pipe or a socket: safe to hand over and to make non-blocking (a terminal is neither)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _wait_detached(sock: socket.socket, buffer: bytearray) -> int:
    """The daemon serves our stdin/stdout; wait for it to say the session ended."""
    reason = None
    with contextlib.suppress(OSError, DaemonUnavailable):
        while True:
            line = read_line(sock, buffer)
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                message = orjson.loads(line)
                if message.get("method") == "supervisor/detached":
                    reason = (message.get("params") or {}).get("reason")
                    break
    if reason == "eof":
        return 0
    sys.stderr.write("mcpctl connect: the daemon closed the session"
                     + (f" ({reason})" if reason else "") + "\n")
    return 1


def bridge(socket_path: Path, server: str | None, client: str | None = None, *,
           all_servers: bool = False) -> int:
    try:
        sock = connect(socket_path)
    except DaemonUnavailable as exc:
        sys.stderr.write(f"mcpctl connect: {exc}\n")
        return 1
    with sock:
        handover = _passable(0) and _passable(1)
        params: dict[str, object] = ({"all": True, "client": client} if all_servers
                                     else {"server": server, "client": client})
        if handover:
            params["pipes"] = True
        attach = {"jsonrpc": "2.0", "id": "attach", "method": "supervisor/attach", "params": params}
        buffer = bytearray()
        try:
            if handover:
                line = orjson.dumps(attach) + b"\n"
                sent = socket.send_fds(sock, [line], [0, 1])
                if sent < len(line):
                    sock.sendall(line[sent:])
            else:
                sock.sendall(orjson.dumps(attach) + b"\n")
            reply = orjson.loads(read_line(sock, buffer))
        except (OSError, DaemonUnavailable, orjson.JSONDecodeError) as exc:
            sys.stderr.write(f"mcpctl connect: the daemon did not accept the session: {exc}\n")
            return 1
        if "error" in reply:
            sys.stderr.write(f"mcpctl connect: {reply['error'].get('message')}\n")
            return 2 if reply["error"].get("code") == -32005 else 1
        sock.settimeout(None)
        if handover and (reply.get("result") or {}).get("pipes"):
            return _wait_detached(sock, buffer)
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
