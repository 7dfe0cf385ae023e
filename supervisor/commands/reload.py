"""mcpctl reload: re-read fleet.toml and apply it as a diff.

The new file is validated first; an invalid file is refused with its precise error (exit 1) and the
running fleet is left untouched. Added servers start, removed ones stop, changed ones restart,
unchanged ones keep running (same pid).
"""

from __future__ import annotations

import argparse

from ._client import daemon_call, out, print_json, run_guarded

NAME = "reload"
HELP = "re-read fleet.toml and apply the changes"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true")


def _run(args: argparse.Namespace) -> int:
    result = daemon_call(args, "supervisor/reload", {}, timeout=120)
    if args.json:
        print_json(result)
        return 0
    for key in ("added", "removed", "changed"):
        if result.get(key):
            out(f"{key}: {', '.join(result[key])}")
    out(f"unchanged: {len(result.get('unchanged', []))} servers")
    if result.get("needs_daemon_restart"):
        out(f"needs a daemon restart to take effect: {', '.join(result['needs_daemon_restart'])}")
    return 0


def run(args: argparse.Namespace) -> int:
    return run_guarded(_run, args)
