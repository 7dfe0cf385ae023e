"""One POST's body: read within `max_body` (else 413), parsed, one JSON-RPC object with a usable id.

Every refusal is answered here (400 with -32700 or -32600, 413 with -32013 and the limit) and the
caller gets None. There is no timeout here: the connection enforces `body_timeout` (a late body
is answered 408 and the connection closed, which ends these waits with `http.disconnect`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from supervisor.errors import INVALID_REQUEST, MESSAGE_TOO_LARGE, PARSE_ERROR
from supervisor.wire.jsonrpc import TooDeep, is_valid_id, loads

from .replies import Receive, Send, _send_error

if TYPE_CHECKING:
    from supervisor.wire.jsonrpc import Message


async def read_message(headers: dict[bytes, bytes], receive: Receive, send: Send,
                       max_body: int) -> Message | None:
    """The request's JSON-RPC object, or None when it was refused (and answered) or its client
    left."""
    length = headers.get(b"content-length")
    if length is not None and length.isdigit() and int(length) > max_body:
        await _too_large(send, int(length), max_body)
        return None
    message = await receive()
    if message["type"] == "http.disconnect":
        return None
    body: bytes = message.get("body", b"")
    if message.get("more_body"):
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_body:
                await _too_large(send, size, max_body)
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                body = b"".join(chunks)
                break
    try:
        msg = loads(body)
    except TooDeep as exc:  # parsed, but deeper than we could ever write back
        await _send_error(send, 400, INVALID_REQUEST, f"Invalid Request: {exc}", exc.msg_id)
        return None
    except orjson.JSONDecodeError as exc:
        await _send_error(send, 400, PARSE_ERROR, f"Parse error: {exc}")
        return None
    if msg.__class__ is not dict:
        await _send_error(send, 400, INVALID_REQUEST, "Invalid Request: expected one JSON-RPC object "
                          "(batches are not part of MCP since 2025-06-18)")
        return None
    # Both eras key calls by id and echo it in every error: an id that is not a string or an
    # integer (a list is unhashable, a deep one cannot be encoded again) is refused here, once.
    # null stays allowed on a client's answer (no method), as JSON-RPC has it for errors.
    if "id" in msg and not is_valid_id(msg["id"]) and not (msg["id"] is None and "method" not in msg):
        await _send_error(send, 400, INVALID_REQUEST, "Invalid Request: id must be a string or an integer")
        return None
    result: Message = msg
    return result


async def _too_large(send: Send, size: int, max_body: int) -> None:
    await _send_error(send, 413, MESSAGE_TOO_LARGE,
                      f"request body of {size} bytes exceeds the {max_body}-byte limit (http.max_body)",
                      data={"size": size, "limit": max_body}, extra=[(b"connection", b"close")])
