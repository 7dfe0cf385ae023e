"""mcpctl install [NAME...]: install each server's pinned package into its private prefix.

Servers are installed in parallel (`--jobs`, default 4); one failure never stops the others. A
running daemon is told afterwards: servers that were `unavailable` for want of their package start. An
entry whose prefix already holds the same pin is skipped (`--force` reinstalls). Exit status: 0 when
nothing failed, 1 when an install failed or the config is invalid, 2 for an unknown server name.
"""

from __future__ import annotations

import argparse
import sys

NAME = "install"
HELP = "install the servers' pinned packages into private prefixes"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help="servers to install (default: all)")
    parser.add_argument("-j", "--jobs", type=_positive_int, default=4,
                        help="installs running at once (default: 4)")
    parser.add_argument("--force", action="store_true", help="reinstall even when already installed")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    import anyio
    import orjson

    from supervisor import paths
    from supervisor.config import load_config
    from supervisor.core.installer import format_summary, run_install
    from supervisor.errors import ConfigError

    from ._client import err, out

    try:
        config = load_config(paths.resolve_config(getattr(args, "config", None)))
    except ConfigError as exc:
        err(f"mcpctl install: {exc}")
        return 1
    unknown = [name for name in args.names if name not in config.servers]
    if unknown:
        err(f"mcpctl install: no server named {', '.join(map(repr, unknown))} in {config.path} "
            f"(servers: {', '.join(config.servers)})")
        return 2
    selected = [config.servers[name] for name in (args.names or config.servers)]
    data_dir = paths.data_dir()
    results = anyio.run(lambda: run_install(selected, data_dir, jobs=args.jobs, force=args.force,
                                            out=sys.stderr))
    if args.json:
        sys.stdout.write(orjson.dumps({"data_dir": str(data_dir),
                                       "results": [r.as_json() for r in results]}).decode() + "\n")
    else:
        out(format_summary(results))
    tell_daemon(args, [r.name for r in results], quiet=args.json)
    return 1 if any(r.outcome == "failed" for r in results) else 0


def tell_daemon(args: argparse.Namespace, names: list[str], *, quiet: bool) -> None:
    """A running daemon starts the servers that were `unavailable` waiting for these packages
    (without this, status kept saying "not installed" until someone ran `mcpctl start`); one
    whose install failed looks again too, so its reason quotes the failure."""
    from supervisor import paths
    from supervisor.client.control import call
    from supervisor.client.errors import DaemonUnavailable, RemoteError

    from ._client import describe, err

    if not names:
        return
    socket = paths.resolve_socket(getattr(args, "socket", None))
    try:
        status = call(socket, "supervisor/status", {"servers": names}, 10)
        waiting = [s["name"] for s in status["servers"] if s["state"] == "unavailable"]
        if not waiting:
            return
        result = call(socket, "supervisor/start", {"servers": waiting, "wait": 60}, 70)
    except DaemonUnavailable:
        return
    except (RemoteError, OSError) as exc:  # a daemon running another fleet, say
        err(f"mcpctl install: could not tell the daemon: {exc}")
        return
    if not quiet:
        err("The running daemon looked again at the servers that were waiting for these packages:")
        for server in result["servers"]:
            err("  " + describe(server))
