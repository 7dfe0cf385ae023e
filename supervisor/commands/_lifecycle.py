"""Shared by `start`, `stop` and `restart`: they differ only in the control method they call.

Exit 1 when a server that was asked to start settled `unavailable` or `failed` (the line printed
for it says why); 0 otherwise.
"""

from __future__ import annotations

import argparse

from ._client import daemon_call, describe, err, out, run_guarded

# States a `start`/`restart` can settle in without the server running: the command failed.
NOT_STARTED = ("unavailable", "failed")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME")
    parser.add_argument("--all", action="store_true", help="every server in the fleet")
    parser.add_argument("--no-wait", action="store_true", help="return at once instead of waiting "
                        "for the servers to settle")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")


def run(args: argparse.Namespace, method: str, verb: str) -> int:
    def _run(args: argparse.Namespace) -> int:
        if not args.names and not args.all:
            err(f"mcpctl {verb}: name at least one server, or --all")
            return 2
        params: dict[str, object] = {"all": True} if args.all else {"servers": args.names}
        if not args.no_wait:
            params["wait"] = args.timeout
        result = daemon_call(args, method, params, timeout=args.timeout + 10)
        stuck = False
        for server in result["servers"]:
            out(describe(server))
            stuck = stuck or (verb != "stop" and not args.no_wait and server["state"] in NOT_STARTED)
        return 1 if stuck else 0

    return run_guarded(_run, args)
