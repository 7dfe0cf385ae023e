"""mcpctl drain: leave gracefully, as on SIGTERM (what a rolling restart does to each node).

The daemon answers 503 on /healthz at once, so a load balancer takes it out of rotation; it keeps
serving for `[supervisor] drain_grace`, refuses new HTTP sessions, lets the calls in flight finish
(up to `drain_timeout`), then stops every child and exits. A second drain (or signal) while
draining stops at once.
"""

from __future__ import annotations

import argparse

from ._client import daemon_call, out, print_json, run_guarded

NAME = "drain"
HELP = "stop taking traffic, finish the calls in flight, then exit"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true")


def _run(args: argparse.Namespace) -> int:
    result = daemon_call(args, "supervisor/drain", {})
    if args.json:
        print_json(result)
        return 0
    out(f"draining: {result.get('in_flight', 0)} calls in flight; serving {result.get('grace_s', 0):g}s "
        f"more, then up to {result.get('timeout_s', 0):g}s for them to finish")
    return 0


def run(args: argparse.Namespace) -> int:
    return run_guarded(_run, args)
