"""`mcpctl top`: a live dashboard of the fleet (state, memory, load, latency, logs).

Reads only the control socket: a `supervisor/status` snapshot, then the `supervisor/events`
push stream. Keys: arrows / j k select, r restart, s stop/start, R S A restart/stop/start all
(asks first), l log tail, / filter, ? help, q quit. If the daemon is not running the dashboard
says so and reconnects when it comes back.
"""

from __future__ import annotations

import argparse

NAME = "top"
HELP = "live dashboard of every server (state, memory, calls/s, latency, logs)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retry-max",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="longest wait between reconnect attempts while the daemon is down (default: 5)",
    )


def run(args: argparse.Namespace) -> int:
    # Textual is heavy; only `mcpctl top` pays for importing it.
    from supervisor.paths import resolve_socket
    from tui.app import TopApp
    from tui.client import SocketDaemonClient

    client = SocketDaemonClient(resolve_socket(getattr(args, "socket", None)))
    result = TopApp(client, retry_cap=max(0.5, args.retry_max)).run()
    return result if isinstance(result, int) else 0
