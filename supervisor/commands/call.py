"""mcpctl call NAME TOOL [ARGS_JSON]: call one tool through the daemon and print its result.

Prints the MCP `result` object as JSON and exits 0; exits 1 with the error on stderr when the call
fails or the result says `isError: true`; exits 2 for usage errors or an unknown server.
"""

from __future__ import annotations

import argparse

from ._client import daemon_call, err, print_json, run_guarded

NAME = "call"
HELP = "call a tool and print its result as JSON"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("server", metavar="NAME")
    parser.add_argument("tool", metavar="TOOL")
    parser.add_argument("arguments", nargs="?", default="{}", metavar="ARGS_JSON",
                        help='tool arguments as a JSON object, e.g. \'{"text": "hi"}\'')
    parser.add_argument("--timeout", type=float,
                        help="seconds to wait (default: the server's request_timeout)")


def _run(args: argparse.Namespace) -> int:
    import orjson

    try:
        arguments = orjson.loads(args.arguments)
    except orjson.JSONDecodeError as exc:
        err(f"mcpctl call: ARGS_JSON is not valid JSON: {exc}")
        return 2
    if not isinstance(arguments, dict):
        err("mcpctl call: ARGS_JSON must be a JSON object")
        return 2
    params = {"server": args.server, "tool": args.tool, "arguments": arguments}
    if args.timeout:
        params["timeout"] = args.timeout
    wait = (args.timeout or 3600) + 10
    result = daemon_call(args, "supervisor/call", params, timeout=wait)
    print_json(result)
    if isinstance(result, dict) and result.get("isError"):
        texts = [c.get("text", "") for c in result.get("content", []) if isinstance(c, dict)]
        err(f"mcpctl call: {args.tool} reported an error: {' '.join(texts).strip() or 'isError'}")
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    return run_guarded(_run, args)
