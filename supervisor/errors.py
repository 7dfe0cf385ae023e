"""The supervisor's exception tree, and its one mapping onto JSON-RPC error codes.

    SupervisorError
     ├── ConfigError(path, key, line)   fleet.toml is invalid; nothing was changed
     ├── InvalidParams                  a request's params have the wrong type or shape
     ├── SpawnError                     a child could not be started
     ├── ServerUnavailable(reason)      not running: missing prerequisite, failed, stopped
     ├── Overloaded(retry_after_ms)     queue full or rate limited; try again later
     ├── CircuitOpen(retry_after_ms)    too many recent failures; failing fast
     ├── UpstreamTimeout                the child did not answer within the deadline
     ├── UpstreamGone                   the child exited while the request was in flight
     └── UnknownServer                  no server by that name

The client side (`mcpctl` verbs, the dashboard) has its own two, in `supervisor.client.errors`.

Every error a client can see is built by `to_jsonrpc_error`, so codes live in exactly one place.
"""

from __future__ import annotations

from typing import Any

# JSON-RPC 2.0 and MCP codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Implementation-defined server errors (-32000..-32099).
SERVER_BUSY = -32000
REQUEST_TIMEOUT = -32001  # as the MCP SDKs use it
SERVER_UNAVAILABLE = -32002
UPSTREAM_GONE = -32003
CIRCUIT_OPEN = -32004
UNKNOWN_SERVER = -32005
MESSAGE_TOO_LARGE = -32006
RATE_LIMITED = -32007
HEADER_MISMATCH = -32020  # 2026-07-28: Mcp-Method / Mcp-Name header does not match the body
MISSING_CLIENT_CAPABILITY = -32021  # 2026-07-28: the call needs a capability the client did not declare
UNSUPPORTED_PROTOCOL_VERSION = -32022  # 2026-07-28


class SupervisorError(Exception):
    """Base of every error the supervisor raises on purpose."""

    code: int = INTERNAL_ERROR

    def __init__(self, message: str, *, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class ConfigError(SupervisorError):
    """fleet.toml is invalid. `str()` reads `file:line: key.path: what is wrong`."""

    code = INVALID_PARAMS

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None,
                 line: int | None = None) -> None:
        self.path = path
        self.key = key
        self.line = line
        where = ""
        if path:
            where = f"{path}:{line}: " if line else f"{path}: "
        elif line:
            where = f"line {line}: "
        prefix = f"{key}: " if key else ""
        super().__init__(f"{where}{prefix}{message}")
        self.detail = message


class InvalidParams(SupervisorError):
    code = INVALID_PARAMS


class SpawnError(SupervisorError):
    code = SERVER_UNAVAILABLE


class ServerUnavailable(SupervisorError):
    code = SERVER_UNAVAILABLE


class Overloaded(SupervisorError):
    code = SERVER_BUSY

    def __init__(self, message: str, *, retry_after_ms: int) -> None:
        super().__init__(message, data={"retry_after_ms": retry_after_ms})
        self.retry_after_ms = retry_after_ms


class CircuitOpen(SupervisorError):
    code = CIRCUIT_OPEN

    def __init__(self, message: str, *, retry_after_ms: int) -> None:
        super().__init__(message, data={"retry_after_ms": retry_after_ms})
        self.retry_after_ms = retry_after_ms


class UpstreamTimeout(SupervisorError):
    code = REQUEST_TIMEOUT


class UpstreamGone(SupervisorError):
    code = UPSTREAM_GONE


class UnknownServer(SupervisorError):
    code = UNKNOWN_SERVER


def to_jsonrpc_error(exc: SupervisorError) -> dict[str, Any]:
    """The JSON-RPC `error` object for `exc`."""
    err: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.data is not None:
        err["data"] = exc.data
    return err
