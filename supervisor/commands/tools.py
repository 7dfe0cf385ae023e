"""mcpctl tools [NAME] [--json] [--diff]: the tools each server offers (from the daemon's cached
list, policy applied); `--diff` shows tools whose definition changed since it was pinned.
mcpctl tools approve NAME [TOOL]: pin the current definition of TOOL (or of every changed tool)."""

from __future__ import annotations

import argparse

from ._client import daemon_call, out, print_json, run_guarded

NAME = "tools"
HELP = "list the tools of one server or all; --diff NAME, approve NAME [TOOL]"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("words", nargs="*", metavar="NAME",
                        help="a server name; or: approve NAME [TOOL]")
    parser.add_argument("--diff", action="store_true",
                        help="show how changed tools differ from their pinned definitions")
    parser.add_argument("--json", action="store_true")


def _approve(args: argparse.Namespace, words: list[str]) -> int:
    if len(words) not in (1, 2):
        raise SystemExit("usage: mcpctl tools approve NAME [TOOL]")
    params = {"server": words[0], **({"tool": words[1]} if len(words) == 2 else {})}
    result = daemon_call(args, "supervisor/tools/approve", params)
    if args.json:
        print_json(result)
    elif result["approved"]:
        out(f"{result['server']}: approved {', '.join(result['approved'])}")
    else:
        out(f"{result['server']}: no changed tools to approve")
    return 0


def _diff(args: argparse.Namespace, server: str | None) -> int:
    result = daemon_call(args, "supervisor/tools", {"diff": True, **({"server": server} if server else {})})
    if args.json:
        print_json(result)
        return 0
    changed = False
    for name, changes in result["servers"].items():
        for change in changes:
            changed = True
            state = "blocked" if change["blocked"] else "served"
            out(f"{name}: {change['tool']} changed since it was pinned ({state}; "
                f"approve: mcpctl tools approve {name} {change['tool']})")
            out(change["diff"])
    if not changed:
        out("no tool changed since it was pinned")
    return 0


def _run(args: argparse.Namespace) -> int:
    words: list[str] = list(args.words)
    if words and words[0] == "approve":
        return _approve(args, words[1:])
    if len(words) > 1:
        raise SystemExit("usage: mcpctl tools [NAME] [--diff] [--json]")
    server = words[0] if words else None
    if args.diff:
        return _diff(args, server)
    result = daemon_call(args, "supervisor/tools", {"server": server} if server else {})
    if args.json:
        print_json(result)
        return 0
    changed = result.get("changed") or {}
    for name, tools in result["servers"].items():
        out(f"{name} ({len(tools)} tools)")
        for tool in tools:
            description = " ".join(str(tool.get("description") or "").split())
            if len(description) > 90:
                description = description[:87] + "..."
            out(f"  {tool.get('name')}  {description}".rstrip())
        if changed.get(name):
            out(f"  changed since pinned: {', '.join(changed[name])} (mcpctl tools --diff {name})")
    return 0


def run(args: argparse.Namespace) -> int:
    return run_guarded(_run, args)
