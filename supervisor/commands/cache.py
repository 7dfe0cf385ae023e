"""mcpctl cache clear [NAME]: drop cached results (lists and tool results) of one server, or all.

With `[cache] backend = "redis"` this also deletes the entries in Redis, which other daemons
sharing it will no longer see. Cache counters are in `mcpctl status --json` under "cache".
"""

from __future__ import annotations

import argparse

from ._client import daemon_call, out, print_json, run_guarded

NAME = "cache"
HELP = "manage the result cache (clear)"


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    clear = actions.add_parser("clear", help="drop cached entries of one server or of all")
    clear.add_argument("server", nargs="?", metavar="NAME")
    clear.add_argument("--json", action="store_true", help="machine-readable output")


def _run(args: argparse.Namespace) -> int:
    result = daemon_call(args, "supervisor/cache/clear", {"server": args.server} if args.server else {})
    if args.json:
        print_json(result)
    else:
        out(f"cleared {result['cleared']} cached entries" + (f" of {args.server}" if args.server else ""))
    return 0


def run(args: argparse.Namespace) -> int:
    return run_guarded(_run, args)
