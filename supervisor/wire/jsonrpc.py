"""JSON-RPC 2.0 on newline-delimited streams: framing with a size limit, encoding, message shapes.

This module is on the hot path of every call, so it stays small: orjson for (de)serialisation, a
splitter that handles the common case (whole lines in one chunk) with one `bytes.split`, and plain
dicts for messages (the daemon routes messages, it does not validate them through models).
"""

from __future__ import annotations

import re
from typing import Any, Final, Protocol

import orjson

from supervisor.errors import INVALID_REQUEST, MESSAGE_TOO_LARGE, PARSE_ERROR

DEFAULT_MAX_MESSAGE: Final = 16 * 1024 * 1024
# Deepest nesting a peer may send. orjson reads 1024 levels but writes only 255, and everything we
# read is written again (to a client, a child, the cache), so what we cannot re-encode is refused
# when it is read: at the edge, with an error to the sender, never as an exception mid-routing.
# The small margin below orjson's 254 is for an envelope or two we may wrap around a peer's value.
MAX_DEPTH: Final = 250
HEAD_BYTES: Final = 512  # how much of an oversized line is kept, to find its id

Message = dict[str, Any]


class Sink(Protocol):
    """Where answers for one client go (a session, a control call, the daemon itself)."""

    def deliver(self, message: Message) -> None: ...

_orjson_loads = orjson.loads
_APPEND_NEWLINE: Final = orjson.OPT_APPEND_NEWLINE


class TooDeep(ValueError):
    """A message nested deeper than MAX_DEPTH. `msg_id` is its id when that is a valid one."""

    def __init__(self, value: Any) -> None:
        super().__init__(f"nested deeper than {MAX_DEPTH} levels")
        msg_id = value.get("id") if value.__class__ is dict else None
        self.msg_id = msg_id if is_valid_id(msg_id) else None


def loads(data: bytes | str) -> Any:
    """Parse one message; ValueError if it is not JSON, TooDeep if we could not write it again.

    Cheap where it matters: a line shorter than 2 * MAX_DEPTH cannot be that deep (no check at
    all); a longer one is encoded once more inside a fixed frame of _MARGIN lists, which fails
    exactly when the value is too deep. orjson's encoder is several times faster than its parser,
    and faster than counting brackets in the bytes (both were measured; a Python walk of the tree
    cost several parses; each level of the frame costs about what a small object does, so the
    frame is kept short)."""
    value = _orjson_loads(data)
    if len(data) > 2 * MAX_DEPTH and value.__class__ in (dict, list):
        _SLOT[0] = value
        try:
            _orjson_dumps(_FRAME)
        except orjson.JSONEncodeError:
            raise TooDeep(value) from None
        finally:
            _SLOT[0] = None
    return value


_MARGIN: Final = 254 - MAX_DEPTH  # orjson writes 254 levels of containers (255 when the last holds a scalar)
_orjson_dumps = orjson.dumps


def _frame() -> tuple[list[Any], list[Any]]:
    """_MARGIN nested lists, and the innermost one, whose one item is the value being checked
    (built once: the event loop is one thread, and nothing awaits in between)."""
    slot: list[Any] = [None]
    frame = slot
    for _ in range(_MARGIN - 1):
        frame = [frame]
    return frame, slot


_FRAME, _SLOT = _frame()


def encode(message: Any) -> bytes:
    """One message as a newline-terminated line."""
    return orjson.dumps(message, option=_APPEND_NEWLINE)


def trimmed(blob: bytes) -> bytes:
    """`blob` in an allocation of its own size, for bytes that are kept (a cache, a backlog).

    orjson (3.12 on) hands back its write buffer as the bytes object without shrinking it: at
    least 4 KiB, then rounded up to a power of two. That is free for a line written at once and
    ruinous for one that is kept: a 100-byte cached answer held 4 KiB, a 6 KB one 64 KiB, and a
    bound counted in `len()` undercounted the memory it held by up to 40x. Measured with
    tracemalloc (tests/test_wire_memory.py). One copy of the exact size, paid only by what stays.
    """
    return bytes(memoryview(blob))


class Oversized:
    """Stands in a `LineSplitter` result for a line that exceeded the limit and was discarded.

    `head` keeps the line's first HEAD_BYTES: enough to find the id of an answer (`head_id`)."""

    __slots__ = ("head", "size")

    def __init__(self, size: int, head: bytes = b"") -> None:
        self.size = size
        self.head = head

    def __repr__(self) -> str:
        return f"Oversized({self.size})"


class LineSplitter:
    """Cuts a byte stream into lines, never holding more than `limit` bytes of one line.

    A line longer than the limit is dropped as it streams in (we keep reading so the peer's next
    message still arrives) and reported once as an `Oversized` item in its place.
    """

    __slots__ = ("_discarded", "_head", "_limit", "_partial", "_partial_size")

    def __init__(self, limit: int = DEFAULT_MAX_MESSAGE) -> None:
        self._limit = limit
        # The start of a line still arriving, as the chunks it came in: joined once, when its
        # newline arrives (joining on every chunk made a 16 MB line cost gigabytes of copying).
        self._partial: list[bytes] = []
        self._partial_size = 0
        self._discarded = 0  # > 0 while skipping the rest of an oversized line
        self._head = b""  # the first bytes of the line being skipped

    def feed(self, data: bytes) -> list[bytes | Oversized]:
        partial = self._partial
        if partial:
            partial.append(data)
            self._partial_size += len(data)
            if b"\n" not in data:
                if self._partial_size > self._limit:  # no newline within the limit: skip it
                    first = partial[0]
                    self._head = (first if len(first) >= HEAD_BYTES else b"".join(partial))[:HEAD_BYTES]
                    self._discarded = self._partial_size
                    self._partial = []
                    self._partial_size = 0
                return []
            data = b"".join(partial)
            self._partial = []
            self._partial_size = 0
        parts = data.split(b"\n")
        tail = parts.pop()
        out: list[bytes | Oversized] = []
        if self._discarded:
            if not parts:  # still inside the oversized line
                self._discarded += len(tail)
                return out
            out.append(Oversized(self._discarded + len(parts[0]), self._head))
            self._discarded = 0
            self._head = b""
            del parts[0]
        for line in parts:
            if len(line) > self._limit:
                out.append(Oversized(len(line), line[:HEAD_BYTES]))
            elif line and not line.isspace():
                out.append(line)
        if len(tail) > self._limit:
            self._discarded = len(tail)
            self._head = tail[:HEAD_BYTES]
        elif tail:
            self._partial = [tail]
            self._partial_size = len(tail)
        return out


def error_response(msg_id: Any, code: int, message: str, data: Any = None) -> Message:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": msg_id, "error": error}


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


def too_large(size: int, limit: int, msg_id: Any = None) -> Message:
    return error_response(
        msg_id, MESSAGE_TOO_LARGE, f"message of {size} bytes exceeds the {limit}-byte limit",
        {"size": size, "limit": limit},
    )


def too_deep(exc: TooDeep) -> Message:
    return error_response(exc.msg_id, INVALID_REQUEST, f"Invalid Request: {exc}",
                          {"max_depth": MAX_DEPTH})


_HEAD_ID = re.compile(rb'"id"\s*:\s*(-?[0-9]{1,18})\s*[,}]')


def head_id(head: bytes) -> int | None:
    """The integer id of an answer from the first bytes of its line, or None.

    For an answer too large to parse: the id is found when it is a key of the top-level object
    (the nesting before it is one level) and the head names no method (a request's id is not
    one of ours)."""
    if b'"method"' in head:
        return None
    for match in _HEAD_ID.finditer(head):
        before = head[:match.start()]
        if before.count(b"{") - before.count(b"}") == 1 and before.count(b"[") == before.count(b"]"):
            return int(match.group(1))
    return None


def is_valid_id(value: Any) -> bool:
    """JSON-RPC ids are strings or integers (null only in errors); floats and bools are refused."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
