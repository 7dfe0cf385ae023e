"""mcpctl logs NAME [-n N] [-f]: a server's recent stderr lines; -f keeps following them live.

The daemon keeps the last 2000 stderr lines of each server in memory (secrets masked); the full
history is in STATE_DIR/logs/NAME.log (size-rotated). With -f the recent lines and the live ones
come from one subscription, so a line written while `logs -f` starts is printed exactly once.
A server that is `unavailable` (never spawned, so no lines) exits 1 with the reason.
"""

from __future__ import annotations

import argparse
import sys

from ._client import daemon_call, err, not_serving, out, run_guarded

NAME = "logs"
HELP = "print a server's recent stderr (and follow it with -f)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("server", metavar="NAME")
    parser.add_argument("-n", "--lines", type=int, default=100, help="how many recent lines (default 100)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")


def _follow(args: argparse.Namespace) -> int:
    import orjson

    from supervisor import paths
    from supervisor.client.control import connect, read_line
    from supervisor.client.errors import DaemonUnavailable
    from supervisor.errors import UNKNOWN_SERVER

    try:
        sock = connect(paths.resolve_socket(args.socket))
    except DaemonUnavailable as exc:
        err(f"mcpctl: {exc}")
        return 1
    with sock:
        sock.settimeout(None)
        sock.sendall(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "supervisor/events",
                                   "params": {"logs": [args.server], "tail": max(0, args.lines)}}) + b"\n")
        buffer = bytearray()
        while True:
            try:
                message = orjson.loads(read_line(sock, buffer))
            except DaemonUnavailable:
                err("mcpctl logs: the daemon went away")
                return 1
            if message.get("id") == 1:
                if "error" in message:
                    err(f"mcpctl: {message['error'].get('message')}")
                    return 2 if message["error"].get("code") == UNKNOWN_SERVER else 1
                for line in (message.get("result") or {}).get("lines", {}).get(args.server, []):
                    out(line)
                sys.stdout.flush()
                continue
            params = message.get("params") or {}
            if params.get("type") == "log" and params.get("server") == args.server:
                out(params.get("line", ""))
                sys.stdout.flush()


def _run(args: argparse.Namespace) -> int:
    if args.follow:
        return _follow(args)
    result = daemon_call(args, "supervisor/logs", {"server": args.server, "lines": args.lines})
    for line in result["lines"]:
        out(line)
    return not_serving(args, args.server, only=("unavailable",)) if not result["lines"] else 0


def run(args: argparse.Namespace) -> int:
    return run_guarded(_run, args)
