"""The stdio entry an MCP client config needs to reach the daemon, written so it works where the
client runs it.

MCP clients start servers with a scrubbed environment: the official SDKs pass only HOME, LOGNAME,
PATH, SHELL, TERM and USER, and desktop apps often have a PATH without the user's virtualenvs. So
the entry names `mcpctl` by its absolute path, and adds `--socket PATH` whenever the socket this
shell's `mcpctl` uses would not be the one found from that scrubbed environment (a daemon that
runs with `XDG_RUNTIME_DIR` or `MCP_SUPERVISOR_SOCKET` set, say).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from supervisor import paths

# What the official MCP SDKs (Python `get_default_environment`, TypeScript
# `getDefaultEnvironment`) pass to a server on POSIX when the config gives no `env`.
CLIENT_ENV_KEYS = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")


def client_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment an MCP client would start our bridge with."""
    return {key: environ[key] for key in CLIENT_ENV_KEYS if environ.get(key)}


def mcpctl_path() -> str:
    """The absolute path of the `mcpctl` that is running (the installed console script): the
    script next to this interpreter when there is one, else how we were invoked."""
    beside = Path(sys.executable).with_name("mcpctl")
    invoked = Path(os.path.abspath(sys.argv[0])) if sys.argv and sys.argv[0] else None
    if invoked is not None and invoked.name == "mcpctl" and invoked.is_file():
        return str(invoked)
    if beside.is_file():
        return str(beside)
    return str(Path(os.path.abspath(sys.executable)).with_name("mcpctl"))


def socket_args(socket_path: Path, environ: Mapping[str, str]) -> list[str]:
    """`["--socket", PATH]` when a client's scrubbed environment would look elsewhere, else []."""
    found = paths.resolve_socket(None, client_environment(environ))
    if os.path.abspath(found) == os.path.abspath(socket_path):
        return []
    return ["--socket", os.path.abspath(socket_path)]


def stdio_entry(server: str | None, socket_path: Path, environ: Mapping[str, str]) -> dict[str, object]:
    """`{"command": "/abs/mcpctl", "args": [..., "connect", NAME | "--all"]}`."""
    return {"command": mcpctl_path(),
            "args": [*socket_args(socket_path, environ), "connect", server or "--all"]}
