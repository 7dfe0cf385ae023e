"""A server's configuration as the dashboard's detail screen shows it, with secrets masked.

What it shows: how the server is started (command, args, package, cwd, env names), and its
limits. What it never shows: a credential. An `env` entry whose name looks like one
(`secrets_mask.is_secret_name`) is shown only as its `${VAR}` reference when that is all it is
(the reference is not the secret; it says where the value comes from); any other value of such an
entry is `***`. Every string also
goes through `REDACT`, so a token pasted into `args` is masked like it is in the logs.
"""

from __future__ import annotations

import re
from typing import Any

from supervisor.config import ServerConfig
from supervisor.config.secrets_mask import MASK as REDACT
from supervisor.config.secrets_mask import is_secret_name

MASK = "***"
_ONE_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


def masked_env_value(name: str, raw: str) -> str:
    """The raw (`${VAR}`) text of one `env` entry, safe to show."""
    if is_secret_name(name) and not _ONE_REFERENCE.fullmatch(raw):
        return MASK if raw else ""
    return REDACT(raw)


def summarize(config: ServerConfig) -> dict[str, Any]:
    """JSON-ready summary of one `[servers.NAME]` entry."""
    return {
        "command": REDACT(config.command),
        "args": [REDACT(arg) for arg in config.args],
        "package": config.package,
        "cwd": config.cwd,
        "env": {name: masked_env_value(name, raw) for name, raw in sorted(config.env.items())},
        "requires_env": list(config.requires_env),
        "start": config.start,
        "instances": config.instances,
        "min_instances": config.min_instances,
        "max_instances": config.max_instances,
        "memory_limit": config.memory_limit,
        "max_in_flight": config.max_in_flight,
        "max_queue": config.max_queue,
        "request_timeout": config.request_timeout,
        "idle_stop_after": config.idle_stop_after,
        "rate_limit": config.rate_limit.text if config.rate_limit else None,
        "max_restarts": config.max_restarts,
        "restart_window": config.restart_window,
    }
