"""Shared by `start`, `stop` and `restart`: they differ only in the control method they call."""

from __future__ import annotations

import argparse

from ._client import daemon_call, err, out, run_guarded


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
        for server in result["servers"]:
            reason = f" ({server['reason']})" if server.get("reason") else ""
            out(f"{server['name']}: {server['state']}{reason}")
        return 0

    return run_guarded(_run, args)
