"""The supervisor's exception tree, and its one mapping onto JSON-RPC error codes.

    SupervisorError
     ├── ConfigError(path, key, line)   fleet.toml is invalid; nothing was changed
     ├── InvalidParams                  a request's params have the wrong type or shape
     ├── SpawnError                     a child could not be started
     ├── UpstreamTimeout                the child did not answer within the deadline
     ├── UpstreamGone                   the child exited while the request was in flight
     └── UnknownServer                  no server by that name

The client side (`mcpctl` verbs, the dashboard) has its own two, in `supervisor.client.errors`.

Every error a client can see is built here, so codes and the shape of their `data` live in one
place: an exception becomes an error object with `to_jsonrpc_error`; the refusals a request meets
on its way to a child (busy, unavailable, circuit open, rate limited, timed out, gone) are whole
JSON-RPC responses from the builders at the bottom. This module is the lowest layer: it builds the
response dicts itself rather than importing `wire.jsonrpc`.
"""

from __future__ import annotations

import math
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


# ---- refusals: the answers a request gets instead of the child's ------------------------------


def _refusal(msg_id: Any, code: int, message: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message, "data": data}}


def busy(msg_id: Any, server: str, why: str, retry_after_ms: int) -> dict[str, Any]:
    """No room now (every instance full and the queue too, or a child not reading): try again later."""
    return _refusal(msg_id, SERVER_BUSY, f"server busy: {why}; retry after {retry_after_ms} ms",
                    {"server": server, "retry_after_ms": retry_after_ms})


def unavailable(msg_id: Any, server: str, message: str, *, state: str | None = None,
                reason: str | None = None) -> dict[str, Any]:
    """The server cannot take it (stopped, failed, missing a prerequisite); with its state when
    that is why."""
    data: dict[str, Any] = {"server": server}
    if state is not None:
        data["state"] = state
        data["reason"] = reason
    return _refusal(msg_id, SERVER_UNAVAILABLE, message, data)


def circuit_open(msg_id: Any, server: str, message: str, retry_after_ms: int,
                 breaker: str) -> dict[str, Any]:
    """Failing fast: the server's breaker is open; `breaker` is its state as a caller finds it."""
    return _refusal(msg_id, CIRCUIT_OPEN, message,
                    {"server": server, "retry_after_ms": retry_after_ms, "breaker": breaker})


def rate_limited(msg_id: Any, who: str, retry_after: float, server: str | None = None) -> dict[str, Any]:
    """Over a rate limit: said at once, never a delay past the caller's deadline."""
    retry_ms = max(1, math.ceil(retry_after * 1000))
    data: dict[str, Any] = {"retry_after_ms": retry_ms}
    if server:
        data["server"] = server
    return _refusal(msg_id, RATE_LIMITED, f"rate limit exceeded: {who}; retry after {retry_ms} ms", data)


def timed_out(msg_id: Any, server: str, message: str, timeout_s: float | None = None) -> dict[str, Any]:
    """No answer within the request's deadline (in the queue, or from the child)."""
    data: dict[str, Any] = {"server": server}
    if timeout_s is not None:
        data["timeout_s"] = round(timeout_s, 3)
    return _refusal(msg_id, REQUEST_TIMEOUT, message, data)


def gone(msg_id: Any, server: str, reason: str) -> dict[str, Any]:
    """The child exited (or was stopped) while the request was in flight."""
    return _refusal(msg_id, UPSTREAM_GONE, reason, {"server": server})
