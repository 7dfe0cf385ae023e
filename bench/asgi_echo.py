"""A bare ASGI responder on uvicorn: the HTTP ceiling of the load generator on this machine.

It answers each JSON-RPC POST with the echoed text under the request's id, and does nothing else
(no sessions, no validation), so whatever the generator reaches here is its HTTP ceiling. The one
exception is what the stress ramp sends first: a legacy `initialize` gets an initialize result and an
`Mcp-Session-Id`, so the ramp's calls carry the same header here as on the daemon's door (the id is
never checked). Run: `python -m bench.asgi_echo PORT`.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import uvicorn

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
HEADERS = [(b"content-type", b"application/json")]
SESSIONS = itertools.count(1)
INITIALIZED = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
               "serverInfo": {"name": "bench-asgi-echo", "version": "1"}}


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    msg = orjson.loads(body) if body else {}
    if "id" not in msg:
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = HEADERS
    if msg.get("method") == "initialize":
        result: dict[str, Any] = INITIALIZED
        headers = [*HEADERS, (b"mcp-session-id", b"bench-%032d" % next(SESSIONS))]
    else:
        text = ((msg.get("params") or {}).get("arguments") or {}).get("text", "")
        result = {"content": [{"type": "text", "text": text}]}
    reply = orjson.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result})
    await send({"type": "http.response.start", "status": 200,
                "headers": [*headers, (b"content-length", str(len(reply)).encode())]})
    await send({"type": "http.response.body", "body": reply})


if __name__ == "__main__":
    # Idle keep-alive connections stay open as long as on the daemon's door (60 s): the stress
    # ramp leaves this app's sessions idle while the door takes its turn.
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False, lifespan="off", timeout_keep_alive=60)
