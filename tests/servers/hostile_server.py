"""Hostile MCP test server: the echo server, plus whatever the test tells it to write on stdout.

Run as `python tests/servers/hostile_server.py --inject PATH [echo-server flags]`. It answers the
handshake and every request like `echo_server.py` (so the daemon sees a ready child), and listens
on the Unix socket PATH for the driving test. Each line the test sends there is one JSON command,
acknowledged with one line `{"ok": true, ...}` once it took effect:

    {"write": TEXT}                 TEXT (latin-1, so any byte) goes to stdout as it is, in one
                                    write under the reply lock: junk, JSON of any shape, half lines
    {"answer_next": {"method": M, "line": TEXT}}
                                    the next request for method M is answered with TEXT instead,
                                    every `"__ID__"` in it replaced by that request's id (JSON):
                                    a wrong-shaped answer to a request the daemon really made
    {"seen": true}                  {"ok": true, "ids": [...]}: ids of the last requests received
                                    (so the test can answer a real id twice, or a stale one)
    {"clear": true}                 forget every `answer_next` not used yet

Each new instance unlinks PATH and listens anew, so a test reconnects after a restart.
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import sys
import threading
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import orjson
from _mcp import Server, build_parser


class HostileServer(Server):
    def __init__(self, args: Any) -> None:
        super().__init__(args, chaos=False)
        self.overrides: dict[str, collections.deque[bytes]] = {}
        self.seen: collections.deque[Any] = collections.deque(maxlen=64)

    def handle_line(self, line: bytes) -> None:
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError:
            msg = None
        if isinstance(msg, dict) and "id" in msg and isinstance(msg.get("method"), str):
            with self.state_lock:
                self.seen.append(msg["id"])
                queue = self.overrides.get(msg["method"])
                template = queue.popleft() if queue else None
            if template is not None:
                self.emit(template.replace(b'"__ID__"', orjson.dumps(msg["id"])) + b"\n")
                return
        super().handle_line(line)

    def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if "write" in cmd:
            self.write(str(cmd["write"]).encode("latin-1"))
            return {"ok": True}
        if "answer_next" in cmd:
            spec = cmd["answer_next"]
            with self.state_lock:
                self.overrides.setdefault(str(spec["method"]), collections.deque()).append(
                    str(spec["line"]).encode("latin-1"))
            return {"ok": True}
        if "clear" in cmd:
            with self.state_lock:
                self.overrides.clear()
            return {"ok": True}
        if "seen" in cmd:
            with self.state_lock:
                return {"ok": True, "ids": list(self.seen)}
        return {"ok": False, "error": f"unknown command {sorted(cmd)}"}


def _serve_test(server: HostileServer, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_one_driver, args=(server, conn), daemon=True).start()


def _one_driver(server: HostileServer, conn: socket.socket) -> None:
    buffer = b""
    with conn:
        while True:
            try:
                chunk = conn.recv(1 << 20)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                try:
                    reply = server.command(orjson.loads(line))
                except Exception as exc:  # a driver's mistake is reported to it, never fatal
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                try:
                    conn.sendall(orjson.dumps(reply) + b"\n")
                except OSError:
                    return


def main() -> None:
    parser = build_parser(chaos=False)
    parser.description = "hostile MCP test server (echo + injected output)"
    parser.add_argument("--inject", required=True, metavar="PATH",
                        help="Unix socket on which the test sends what to write")
    args = parser.parse_args()
    server = HostileServer(args)
    threading.Thread(target=_serve_test, args=(server, args.inject), daemon=True).start()
    server.log(f"started pid={os.getpid()}")
    server.serve()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
