"""mcpctl serve: run the daemon in the foreground.

Starts every eager server in fleet.toml, keeps them alive and serves the control socket.
SIGTERM or SIGINT stops every child (whole process trees) and exits 0; SIGHUP reloads fleet.toml.
An invalid fleet.toml is refused at start with the precise error (exit 2).
"""

from __future__ import annotations

import argparse

NAME = "serve"
HELP = "run the daemon in the foreground"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", choices=("text", "json"),
                        help="override [supervisor] log_format")


def run(args: argparse.Namespace) -> int:
    from supervisor import paths
    from supervisor.ops.daemon import serve

    return serve(paths.resolve_config(args.config), paths.resolve_socket(args.socket),
                 log_format=args.log_format)
