"""mcpctl tools [NAME] [--json]: the tools each server offers (from the daemon's cached list).

Exit 1, with the reason, when NAME has no tools because it is not running (unavailable, failed,
stopped, ...)."""

from __future__ import annotations

import argparse

from ._client import daemon_call, not_serving, out, print_json, run_guarded

NAME = "tools"
HELP = "list the tools of one server or all"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("server", nargs="?", metavar="NAME")
    parser.add_argument("--json", action="store_true")


def _run(args: argparse.Namespace) -> int:
    result = daemon_call(args, "supervisor/tools", {"server": args.server} if args.server else {})
    if args.server and not result["servers"].get(args.server):
        code = not_serving(args, args.server)
        if code:
            return code
    if args.json:
        print_json(result)
        return 0
    for name, tools in result["servers"].items():
        out(f"{name} ({len(tools)} tools)")
        for tool in tools:
            description = " ".join(str(tool.get("description") or "").split())
            if len(description) > 90:
                description = description[:87] + "..."
            out(f"  {tool.get('name')}  {description}".rstrip())
    return 0


def run(args: argparse.Namespace) -> int:
    return run_guarded(_run, args)
