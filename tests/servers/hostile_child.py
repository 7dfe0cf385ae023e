"""Hostile MCP test child: the echo server plus ways to send the daemon what no MCP server should.

    --tools-list-item JSON   one more item in every tools/list result (e.g. `1`: not an object)
    --resource-template T    offer the URI template T (instead of test://echo/{text})

Tools (on top of the echo server's):
    emit {lines: [str], answer?: bool}  write each string to stdout as one raw line, `$ID` replaced
                                        by this request's id (JSON) and `$TOKEN` by its progress
                                        token; then answer "emitted" (unless answer is false)
    block {seconds}                     stop reading stdin for that long (the main thread sleeps)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import orjson
from _mcp import DEFERRED, Server, _schema, _text, _tool, build_parser


class Hostile(Server):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args, chaos=False)
        self.extra_item = orjson.loads(args.tools_list_item) if args.tools_list_item else None
        if args.resource_template:
            self.TEMPLATES = ({"uriTemplate": args.resource_template, "name": "hostile"},)
        self.tools.append(_tool("emit", "Write raw lines to stdout", _schema({"lines": "array"})))
        self.tools.append(_tool("block", "Stop reading stdin for a while", _schema({"seconds": "number"})))
        self.tool_handlers["emit"] = self.t_emit
        self.tool_handlers["block"] = self.t_block

    def m_tools_list(self, rid: Any, params: dict[str, Any]) -> dict[str, Any]:
        result = super().m_tools_list(rid, params)
        if self.extra_item is not None:
            result["tools"] = [*result["tools"], self.extra_item]
        return result

    def t_emit(self, rid: Any, args: dict[str, Any], params: dict[str, Any]) -> Any:
        meta = params.get("_meta")
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        for line in args.get("lines") or []:
            text = str(line).replace("$ID", orjson.dumps(rid).decode())
            text = text.replace("$TOKEN", orjson.dumps(token).decode())
            self.emit(text.encode() + b"\n")
        return _text("emitted") if args.get("answer", True) else DEFERRED

    def t_block(self, rid: Any, args: dict[str, Any], params: dict[str, Any]) -> Any:
        batch, self.batch = self.batch, []
        if batch:
            self.write(b"".join(batch))
        time.sleep(float(args.get("seconds", 1.0)))
        return _text("unblocked")


def main() -> None:
    parser = build_parser(chaos=False)
    parser.add_argument("--tools-list-item", default=None, metavar="JSON")
    parser.add_argument("--resource-template", default=None, metavar="TEMPLATE")
    args = parser.parse_args()
    server = Hostile(args)
    server.log(f"started pid={os.getpid()}")
    server.serve()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
