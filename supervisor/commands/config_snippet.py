"""mcpctl config-snippet NAME | --all: the client config that uses a server through the daemon.

Prints the `mcpServers` JSON for stdio clients (Claude Desktop, Cursor, ...) on stdout, so it can be
piped, and the Streamable HTTP URL from `[http] listen` on stderr. The command is this `mcpctl`'s
absolute path, with `--socket PATH` when a client's scrubbed environment would not find the
daemon's socket by itself (see `supervisor.client_configs.entry`). `--http` prints the URL form as
JSON instead. A token from `[http] token` is never printed, only that one is needed.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.config import HttpSettings

NAME = "config-snippet"
HELP = "print the JSON an MCP client needs to use a server through the daemon"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="NAME", help="the server")
    parser.add_argument("--all", action="store_true", help="the aggregate of every server instead")
    parser.add_argument("--http", action="store_true", help="print the HTTP form ({'url': ...}) as JSON")


def http_url(http: HttpSettings, name: str | None) -> str | None:
    """`http://HOST:PORT/mcp/NAME` (or `/mcp` for the aggregate); None when the door is disabled.
    A wildcard bind address is shown as the loopback address a local client would use."""
    if not http.enabled:
        return None
    host, port = http.host_port()
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/mcp" + (f"/{name}" if name else "")


def run(args: argparse.Namespace) -> int:
    import os

    import orjson

    from supervisor import paths
    from supervisor.client_configs.entry import stdio_entry
    from supervisor.config import load_config
    from supervisor.errors import ConfigError

    from ._client import err, out

    if bool(args.name) == bool(args.all):
        err("mcpctl config-snippet: give a server NAME or --all")
        return 2
    try:
        config = load_config(paths.resolve_config(getattr(args, "config", None)))
    except ConfigError as exc:
        err(f"mcpctl config-snippet: {exc}")
        return 1
    if args.name and args.name not in config.servers:
        err(f"mcpctl config-snippet: no server named {args.name!r} in {config.path} "
            f"(servers: {', '.join(config.servers)})")
        return 2
    key = args.name or "mcp-supervisor"
    url = http_url(config.http, args.name)
    if args.http:
        if url is None:
            err("mcpctl config-snippet: the HTTP door is disabled ([http] listen = \"\")")
            return 1
        entry: dict[str, object] = {"type": "http", "url": url}
    else:
        entry = stdio_entry(args.name, paths.resolve_socket(getattr(args, "socket", None)), os.environ)
    out(orjson.dumps({"mcpServers": {key: entry}}, option=orjson.OPT_INDENT_2).decode())
    if not args.http:
        err(f"Streamable HTTP: {url}" if url else "Streamable HTTP: disabled ([http] listen = \"\")")
    if config.http.token is not None:
        err("The HTTP door needs 'Authorization: Bearer <[http] token>'.")
    return 0
