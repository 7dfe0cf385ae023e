"""What the client verbs share: calling the daemon, and saying plainly when it is not there."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson


def out(text: str) -> None:
    sys.stdout.write(text + "\n")


def err(text: str) -> None:
    sys.stderr.write(text + "\n")


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


class Failed(Exception):
    """Raised by `daemon_call` after it has reported the problem; carries the exit code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def daemon_call(args: argparse.Namespace, method: str, params: dict[str, Any] | None = None,
                timeout: float = 30.0) -> Any:
    from supervisor import paths
    from supervisor.client.control import call
    from supervisor.client.errors import DaemonUnavailable, RemoteError
    from supervisor.errors import UNKNOWN_SERVER

    try:
        return call(paths.resolve_socket(args.socket), method, params, timeout)
    except DaemonUnavailable as exc:
        err(f"mcpctl: {exc}")
        raise Failed(1) from None
    except RemoteError as exc:
        err(f"mcpctl: {exc.message}")
        raise Failed(2 if exc.code == UNKNOWN_SERVER else 1) from None


def run_guarded(func: Any, args: argparse.Namespace) -> int:
    try:
        return int(func(args))
    except Failed as failed:
        return failed.code


def describe(server: dict[str, Any]) -> str:
    """`name: state (reason)`, the reason left out when it only repeats the state."""
    state = str(server["state"])
    reason = str(server.get("reason") or "")
    shown = f" ({reason})" if reason and reason != state else ""
    return f"{server['name']}: {state}{shown}"


def not_serving(args: argparse.Namespace, name: str,
                only: tuple[str, ...] = ("unavailable", "failed", "stopped", "stopping", "backoff")) -> int:
    """When `name` is in one of `only` states, say so with its reason and return 1; else 0."""
    servers = daemon_call(args, "supervisor/status", {"servers": [name]})["servers"]
    if servers and servers[0]["state"] in only:
        err(f"mcpctl: {describe(servers[0])}")
        return 1
    return 0
