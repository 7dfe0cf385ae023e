"""mcpctl connect NAME: speak MCP on stdin/stdout, served by the daemon's shared child.

Point any MCP client at it instead of spawning the server itself:
    {"command": "mcpctl", "args": ["connect", "memory"]}
The daemon answers the handshake from the child's cached result and multiplexes every client onto
the same process. Exits 1 at once, with one line on stderr, when the daemon is not running.
"""

from __future__ import annotations

import argparse

NAME = "connect"
HELP = "stdio bridge to a server run by the daemon (for MCP client configs)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("server", metavar="NAME")
    parser.add_argument("--client", metavar="ID", help="a name for this client (rate limits, logs)")


def run(args: argparse.Namespace) -> int:
    from supervisor import paths
    from supervisor.bridge import bridge

    return bridge(paths.resolve_socket(args.socket), args.server, args.client)
