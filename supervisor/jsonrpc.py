"""JSON-RPC 2.0 on newline-delimited streams: framing with a size limit, encoding, message shapes.

This module is on the hot path of every call, so it stays small: orjson for (de)serialisation, a
splitter that handles the common case (whole lines in one chunk) with one `bytes.split`, and plain
dicts for messages (the daemon routes messages, it does not validate them through models).
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from .errors import MESSAGE_TOO_LARGE, PARSE_ERROR

DEFAULT_MAX_MESSAGE: Final = 16 * 1024 * 1024

Message = dict[str, Any]

loads = orjson.loads
_APPEND_NEWLINE: Final = orjson.OPT_APPEND_NEWLINE


def encode(message: Any) -> bytes:
    """One message as a newline-terminated line."""
    return orjson.dumps(message, option=_APPEND_NEWLINE)


class Oversized:
    """Stands in a `LineSplitter` result for a line that exceeded the limit and was discarded."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size

    def __repr__(self) -> str:
        return f"Oversized({self.size})"


class LineSplitter:
    """Cuts a byte stream into lines, never holding more than `limit` bytes of one line.

    A line longer than the limit is dropped as it streams in (we keep reading so the peer's next
    message still arrives) and reported once as an `Oversized` item in its place.
    """

    __slots__ = ("_discarded", "_limit", "_partial")

    def __init__(self, limit: int = DEFAULT_MAX_MESSAGE) -> None:
        self._limit = limit
        self._partial = b""
        self._discarded = 0  # > 0 while skipping the rest of an oversized line

    def feed(self, data: bytes) -> list[bytes | Oversized]:
        if self._partial:
            data = self._partial + data
            self._partial = b""
        parts = data.split(b"\n")
        tail = parts.pop()
        out: list[bytes | Oversized] = []
        if self._discarded:
            if not parts:  # still inside the oversized line
                self._discarded += len(tail)
                return out
            out.append(Oversized(self._discarded + len(parts[0])))
            self._discarded = 0
            del parts[0]
        for line in parts:
            if len(line) > self._limit:
                out.append(Oversized(len(line)))
            elif line and not line.isspace():
                out.append(line)
        if len(tail) > self._limit:
            self._discarded = len(tail)
        else:
            self._partial = tail
        return out

    @property
    def pending_bytes(self) -> int:
        return len(self._partial)


def error_response(msg_id: Any, code: int, message: str, data: Any = None) -> Message:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": msg_id, "error": error}


def result_response(msg_id: Any, result: Any) -> Message:
    return {"jsonrpc": "2.0", "id": msg_id, "result": result}


def request(msg_id: Any, method: str, params: Any = None) -> Message:
    msg: Message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def notification(method: str, params: Any = None) -> Message:
    msg: Message = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def parse_error(detail: str) -> Message:
    return error_response(None, PARSE_ERROR, f"Parse error: {detail}")


def too_large(size: int, limit: int) -> Message:
    return error_response(
        None, MESSAGE_TOO_LARGE, f"message of {size} bytes exceeds the {limit}-byte limit",
        {"size": size, "limit": limit},
    )


def is_valid_id(value: Any) -> bool:
    """JSON-RPC ids are strings or integers (null only in errors); floats and bools are refused."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
