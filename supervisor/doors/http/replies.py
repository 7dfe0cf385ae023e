"""ASGI plumbing of the HTTP door: the callable types, and JSON / empty replies.

`_closing` wraps `send` while the daemon drains, so every answer says `Connection: close`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from supervisor.wire.jsonrpc import error_response

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_JSON = b"application/json"


def _json_headers(body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", _JSON), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    return headers


async def _send_json(send: Send, status: int, payload: Any,
                     extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = orjson.dumps(payload)
    await send({"type": "http.response.start", "status": status, "headers": _json_headers(body, extra)})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, status: int, code: int, message: str, msg_id: Any = None,
                      data: Any = None, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await _send_json(send, status, error_response(msg_id, code, message, data), extra)


async def _send_empty(send: Send, status: int, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-length", b"0")]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _closing(send: Send) -> Send:
    """While draining, every answer says `Connection: close`: a balancer then holds no idle
    keep-alive connection to this node when its listener closes, so none races a reuse."""
    async def closing_send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), (b"connection", b"close")]
        await send(message)
    return closing_send
