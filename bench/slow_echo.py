"""A stdio MCP server that takes `--delay` seconds per call, one call at a time (like most simple
stdio servers: one request loop, blocking work). The autoscale scenario runs it, so one instance
serves at most 1/delay calls per second and only more instances can go faster.

`python -m bench.slow_echo [--delay 0.02]`; its only tool, `echo`, answers with its `text`.
"""

from __future__ import annotations

import argparse
import sys
import time

import orjson


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.02, help="seconds per tools/call")
    delay = parser.parse_args().delay
    out = sys.stdout.buffer
    tool = {"name": "echo", "description": "echo text, slowly",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}
    for line in sys.stdin.buffer:
        msg = orjson.loads(line)
        if "id" not in msg or "method" not in msg:
            continue
        method = msg["method"]
        if method == "initialize":
            result: object = {"protocolVersion": msg["params"].get("protocolVersion", "2025-06-18"),
                              "capabilities": {"tools": {}},
                              "serverInfo": {"name": "slow-echo", "version": "1"}}
        elif method == "tools/list":
            result = {"tools": [tool]}
        elif method == "tools/call":
            time.sleep(delay)
            text = str(msg["params"].get("arguments", {}).get("text", ""))
            result = {"content": [{"type": "text", "text": text}], "isError": False}
        elif method == "ping":
            result = {}
        else:
            reply = {"jsonrpc": "2.0", "id": msg["id"],
                     "error": {"code": -32601, "message": f"Method not found: {method}"}}
            out.write(orjson.dumps(reply) + b"\n")
            out.flush()
            continue
        out.write(orjson.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + b"\n")
        out.flush()


if __name__ == "__main__":
    main()
