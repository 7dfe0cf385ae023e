"""mcpctl connect NAME: speak MCP on stdin/stdout, served by the daemon's shared child.

Point any MCP client at it instead of spawning the server itself:
    {"command": "mcpctl", "args": ["connect", "memory"]}
or at every server at once, tools named SERVER__tool:
    {"command": "mcpctl", "args": ["connect", "--all"]}
The daemon answers the handshake from the child's cached result and multiplexes every client onto
the same process. Exits 1 at once, with one line on stderr, when the daemon is not running.
"""

from __future__ import annotations

import argparse

NAME = "connect"
HELP = "stdio bridge to a server run by the daemon (for MCP client configs)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("server", metavar="NAME", nargs="?",
                        help="the server to attach to (or --all)")
    parser.add_argument("--all", action="store_true",
                        help="the aggregate of every ready server, tools named SERVER__tool")
    parser.add_argument("--client", metavar="ID", help="a name for this client (rate limits, logs)")


def run(args: argparse.Namespace) -> int:
    from supervisor import paths
    from supervisor.client.bridge import bridge

    if bool(args.server) == bool(args.all):
        import sys
        sys.stderr.write("mcpctl connect: name one server, or --all for the aggregate\n")
        return 2
    return bridge(paths.resolve_socket(args.socket), args.server, args.client, all_servers=args.all)
