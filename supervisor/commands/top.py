"""`mcpctl top`: a live dashboard of the fleet (state, memory, CPU, load, latency, logs).

Reads only the control socket: a `supervisor/status` snapshot, then the `supervisor/events`
push stream. Fits any terminal (columns go by priority as it narrows; the bottom pane shows when
there is height for it). Keys: arrows / j k select, / filter, s sort, Enter detail, l log view,
r restart, x stop, g start, R reload, c clear cache (destructive ones ask first), p pane,
? help, q quit; ctrl+p lists them all. If the daemon is not running the dashboard says so and
reconnects when it comes back.
"""

from __future__ import annotations

import argparse

NAME = "top"
HELP = "live dashboard of every server (state, memory, CPU, calls/s, latency, logs)"


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
    result = TopApp(client, retry_cap=max(0.5, args.retry_max), freeze_heap=True).run()
    return result if isinstance(result, int) else 0
