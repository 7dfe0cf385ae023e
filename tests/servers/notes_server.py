"""A memory-like MCP test server: notes kept in the process, so every client of one child shares them.

Run as `python tests/servers/notes_server.py`. Tools: `remember {text}` adds a note, `recall` answers
the notes so far (one per line), `whoami` answers the pid and the last part of $HOME. Stdio,
newline-delimited JSON-RPC, the 2025 (initialize) era only: `server/discover` is an unknown method.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

NOTES: list[str] = []
TOOLS = [
    {"name": "remember", "description": "Add a note",
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
    {"name": "recall", "description": "The notes so far, one per line",
     "inputSchema": {"type": "object", "properties": {}}},
    {"name": "whoami", "description": "This process's pid and the name of its HOME",
     "inputSchema": {"type": "object", "properties": {}}},
]


def text(value: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": value}], "isError": False}


def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
    if method == "initialize":
        return {"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                "capabilities": {"tools": {}}, "serverInfo": {"name": "notes", "version": "1.0.0"}}
    if method == "ping":
        return {}
    if method == "tools/list":
        return {"tools": TOOLS}
    if method == "tools/call":
        name, args = params.get("name"), params.get("arguments") or {}
        if name == "remember":
            NOTES.append(str(args.get("text", "")))
            return text(f"{len(NOTES)} notes")
        if name == "recall":
            return text("\n".join(NOTES))
        if name == "whoami":
            return text(f"{os.getpid()} {os.path.basename(os.environ.get('HOME', ''))}")
    raise LookupError(method)


def main() -> None:
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if not isinstance(msg, dict) or "id" not in msg or "method" not in msg:
            continue
        try:
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": msg["id"],
                                     "result": answer(msg["method"], msg.get("params") or {})}
        except LookupError:
            reply = {"jsonrpc": "2.0", "id": msg["id"],
                     "error": {"code": -32601, "message": f"Method not found: {msg['method']}"}}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
