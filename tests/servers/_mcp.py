"""Core of the test MCP servers: newline-delimited JSON-RPC 2.0 over stdio, both protocol eras.

Standard library + orjson only (no mcp SDK), so the servers start fast, run fast and do
exactly what their flags say. `echo_server.py` runs `main(chaos=False)`, `chaos_server.py`
runs `main(chaos=True)`, which adds the fault-injection flags.

Threading model: the main thread reads stdin in big chunks and answers most requests inline,
collecting the replies of one read into a batch written with a single `os.write` once the
chunk is processed. Slow tools (`sleep`, `roots`, `sample`) run in daemon threads that write
their own replies under the same lock, so they never block other requests.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

LEGACY_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_LEGACY = "2025-11-25"
MODERN_VERSION = "2026-07-28"
MODERN_VERSIONS = (MODERN_VERSION,)
PV_KEY = "io.modelcontextprotocol/protocolVersion"
CAPS_KEY = "io.modelcontextprotocol/clientCapabilities"
SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
RESOURCE_NOT_FOUND = -32002
UNSUPPORTED_PROTOCOL_VERSION = -32022

CAPABILITIES: dict[str, Any] = {
    "tools": {"listChanged": True},
    "prompts": {"listChanged": True},
    "resources": {"listChanged": True, "subscribe": True},
    "logging": {},
}
# Results the 2026-07-28 spec makes cacheable: they carry ttlMs + cacheScope on a modern connection.
CACHEABLE = frozenset(
    {
        "server/discover",
        "tools/list",
        "prompts/list",
        "resources/list",
        "resources/templates/list",
        "resources/read",
    }
)
JUNK = b"this is not json {{{\n\n   \n"
SERVER_REQUEST_TIMEOUT = 5.0
DEFERRED = object()  # handler result: the reply is sent later (by a thread) or never

_dumps = orjson.dumps
_loads = orjson.loads
_NL = orjson.OPT_APPEND_NEWLINE


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def _named_text(name: str, rid: Any, args: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The numbered filler tools `t0`..`tN`: each answers its own name."""
    return _text(name)


def _text(text: str, *, is_error: bool = False, structured: Any = None) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": is_error}
    if structured is not None:
        result["structuredContent"] = structured
    return result


def _schema(props: dict[str, str] | None = None, required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {k: {"type": v} for k, v in (props or {}).items()},
    }
    if required:
        schema["required"] = list(required)
    return schema


def _tool(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "description": description, "inputSchema": schema, **extra}


def build_parser(chaos: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="chaos MCP test server" if chaos else "echo MCP test server")
    p.add_argument("--name", default="chaos-server" if chaos else "echo-server", help="serverInfo.name")
    p.add_argument("--version", dest="server_version", default="1.0.0", help="serverInfo.version")
    p.add_argument("--tools", type=int, default=0, help="add N dummy tools t0..tN-1")
    p.add_argument("--meta-tool", action="store_true",
                   help="offer tool 'meta': the params._meta this server received, as JSON (traces)")
    p.add_argument("--page-size", type=int, default=0, help="list page size (0 = one page)")
    p.add_argument("--era", choices=("both", "legacy", "modern"), default="both")
    p.add_argument("--ttl-ms", type=int, default=0, help="ttlMs of cacheable results on modern connections")
    p.add_argument("--describe-from", default=None, metavar="PATH",
                   help="the echo tool's description is read from PATH at each tools/list (a rug pull)")
    p.add_argument("--capabilities", default=None, metavar="LIST",
                   help="declare only these capabilities, e.g. 'tools' (default: all)")
    p.add_argument("--log-requests", action="store_true", help="write 'request METHOD' to stderr per request")
    p.add_argument("--own-tasks", action="store_true",
                   help="declare the io.modelcontextprotocol/tasks extension: tool `job` makes a task "
                   "(its id names this process) that tasks/get of the same process finds")
    if not chaos:
        return p
    p.add_argument(
        "--crash-after",
        type=int,
        default=None,
        metavar="N",
        help="os._exit(3) on receiving the Nth tools/call, without answering it",
    )
    p.add_argument(
        "--crash-code",
        type=int,
        default=3,
        metavar="N",
        help="exit code of --crash-after (0: a clean exit nobody asked for)",
    )
    p.add_argument(
        "--hang-after",
        type=int,
        default=None,
        metavar="N",
        help="answer N tools/call, then answer nothing at all (still reads stdin)",
    )
    p.add_argument(
        "--hang-tools", action="store_true", help="never answer tools/call; everything else is answered"
    )
    p.add_argument(
        "--junk", action="store_true", help="non-JSON and blank lines on stdout before every message"
    )
    p.add_argument(
        "--slow-start", type=float, default=0.0, metavar="SECONDS", help="sleep before reading stdin"
    )
    p.add_argument(
        "--out-of-order", action="store_true", help="answer the requests of one stdin read in reverse order"
    )
    p.add_argument(
        "--ignore-eof", action="store_true", help="keep running after stdin closes, until signalled"
    )
    p.add_argument("--ignore-sigterm", action="store_true", help="SIGTERM is ignored")
    p.add_argument(
        "--grandchild",
        action="store_true",
        help="spawn a sleeping python grandchild in our process group (see the grandchild tool)",
    )
    p.add_argument(
        "--grandchild-setsid",
        action="store_true",
        help="like --grandchild, but the grandchild calls os.setsid()",
    )
    p.add_argument(
        "--grandchild-leak-mb",
        type=int,
        default=0,
        metavar="N",
        help="the grandchild holds N MB (implies --grandchild)",
    )
    p.add_argument(
        "--leak-mb-per-s",
        type=float,
        default=0.0,
        metavar="X",
        help="after the handshake, allocate and touch X MB per second forever",
    )
    p.add_argument(
        "--exit-before-handshake",
        default=None,
        metavar="MESSAGE",
        help="write MESSAGE to stderr and exit 1 at once",
    )
    p.add_argument("--exit-code", type=int, default=0, metavar="N", help="exit code on stdin EOF")
    p.add_argument(
        "--stderr-spam",
        action="store_true",
        help="write stderr lines continuously (and one per request, on the main thread)",
    )
    p.add_argument("--pidfile", default=None, metavar="PATH", help="write our pid to PATH at start")
    p.add_argument(
        "--notify-before-reply",
        action="store_true",
        help="send notifications/message before the initialize/discover reply",
    )
    p.add_argument(
        "--crash-on-start-if-file", default=None, metavar="PATH", help="exit 1 at start when PATH exists"
    )
    return p


@dataclass
class _Awaited:
    """A server->client request waiting for the client's answer."""

    done: threading.Event = field(default_factory=threading.Event)
    answer: dict[str, Any] | None = None


class Server:
    def __init__(self, args: argparse.Namespace, chaos: bool) -> None:
        self.args = args
        only = getattr(args, "capabilities", None)
        self.capabilities = ({k: v for k, v in CAPABILITIES.items() if k in only.split(",")}
                             if only else CAPABILITIES)
        self.chaos = chaos
        g = args if chaos else None
        self.crash_after: int | None = g.crash_after if g else None
        self.crash_code: int = g.crash_code if g else 3
        self.hang_after: int | None = g.hang_after if g else None
        self.hang_tools: bool = bool(g and g.hang_tools)
        self.junk: bool = bool(g and g.junk)
        self.out_of_order: bool = bool(g and g.out_of_order)
        self.stderr_spam: bool = bool(g and g.stderr_spam)
        self.log_requests: bool = bool(getattr(args, "log_requests", False))
        self.exit_code: int = g.exit_code if g else 0
        self.notify_before_reply: bool = bool(g and g.notify_before_reply)
        self.leak_mb_per_s: float = g.leak_mb_per_s if g else 0.0

        self.era_flag: str = args.era
        self.era: str | None = None  # "legacy" | "modern" once decided
        self.server_info = {"name": args.name, "version": args.server_version}
        self.page_size: int = max(0, args.page_size)
        self.ttl_ms: int = max(0, args.ttl_ms)

        self.lock = threading.Lock()  # guards writes to fd 1
        self.state_lock = threading.Lock()  # guards counters and maps below
        self.main_ident = threading.get_ident()
        self.batch: list[bytes] | None = None  # replies of the chunk being processed (main thread)
        self.hung = False
        self.handshaken = False
        self.calls_answered = 0
        self.calls_by_tool: dict[str, int] = {}
        self.tool_calls_received = 0
        self.cancelled_ids: list[Any] = []
        self.running: dict[Any, threading.Event] = {}  # request id -> cancel event
        self.pending: dict[str, _Awaited] = {}  # server->client request id -> its answer, once here
        self.next_server_request = 0
        self.grandchild_pid: int | None = None
        self._leak: list[bytes] = []

        self.tools = self._build_tools(args.tools)
        self.tool_handlers: dict[str, Callable[[Any, dict[str, Any], dict[str, Any]], Any]] = {
            "echo": self.t_echo,
            "add": self.t_add,
            "pid": lambda rid, a, p: _text(str(os.getpid())),
            "env": lambda rid, a, p: _text(os.environ.get(str(a.get("name", "")), ""),
                                           structured={"set": str(a.get("name", "")) in os.environ}),
            "cwd": lambda rid, a, p: _text(os.getcwd()),
            "sleep": self.t_sleep,
            "fail": lambda rid, a, p: _text(str(a.get("message", "this tool always fails")), is_error=True),
            "error": self.t_error,
            "notify": self.t_notify,
            "cancelled": lambda rid, a, p: _text(_dumps(self.cancelled_ids).decode()),
            "calls": self.t_calls,
            "roots": self.t_roots,
            "sample": self.t_sample,
            "big": lambda rid, a, p: _text("x" * max(0, int(a.get("bytes", 0)))),
            "log": self.t_log,
            "stderr": self.t_stderr,
            "delete_all": lambda rid, a, p: _text("deleted"),
            "grandchild": lambda rid, a, p: _text(str(self.grandchild_pid or "")),
        }
        for i in range(args.tools):
            self.tool_handlers[f"t{i}"] = functools.partial(_named_text, f"t{i}")
        if getattr(args, "own_tasks", False):
            self.capabilities = {**self.capabilities, "extensions": {"io.modelcontextprotocol/tasks": {}}}
            self.tool_handlers["job"] = self.t_job
            self.handlers_extra = {"tasks/get": self.m_own_task}
        if args.meta_tool:
            self.tools.append(_tool("meta", "The params._meta of this call, as JSON", _schema(),
                                    annotations={"readOnlyHint": True}))
            self.tool_handlers["meta"] = lambda rid, a, p: _text(_dumps(p.get("_meta") or {}).decode())
        self.handlers: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
            "initialize": self.m_initialize,
            "server/discover": self.m_discover,
            "ping": lambda rid, p: {},
            "tools/list": self.m_tools_list,
            "tools/call": self.m_tools_call,
            "prompts/list": self.m_prompts_list,
            "prompts/get": self.m_prompts_get,
            "resources/list": self.m_resources_list,
            "resources/templates/list": self.m_templates_list,
            "resources/read": self.m_resources_read,
            "resources/subscribe": lambda rid, p: {},
            "resources/unsubscribe": lambda rid, p: {},
            "logging/setLevel": lambda rid, p: {},
            "completion/complete": lambda rid, p: {
                "completion": {"values": [], "total": 0, "hasMore": False}
            },
            **getattr(self, "handlers_extra", {}),
        }

    # ------------------------------------------------------------------ definitions

    def _build_tools(self, n_extra: int) -> list[dict[str, Any]]:
        ro = {"readOnlyHint": True}
        tools = [
            _tool(
                "echo",
                "Echo the text back (extra args come back in structuredContent)",
                _schema({"text": "string"}, ("text",)),
                annotations=ro,
            ),
            _tool(
                "add",
                "Add two numbers",
                _schema({"a": "number", "b": "number"}, ("a", "b")),
                annotations=ro,
                outputSchema={
                    "type": "object",
                    "properties": {"result": {"type": "number"}},
                    "required": ["result"],
                },
            ),
            _tool("pid", "The server's process id", _schema(), annotations=ro),
            _tool(
                "env",
                "Value of an environment variable, or empty",
                _schema({"name": "string"}, ("name",)),
                annotations=ro,
            ),
            _tool("cwd", "The server's working directory", _schema(), annotations=ro),
            _tool(
                "sleep",
                "Sleep then answer 'slept'; honours cancellation, sends progress",
                _schema({"seconds": "number"}, ("seconds",)),
                annotations=ro,
            ),
            _tool(
                "fail",
                "Always returns isError: true",
                _schema({"message": "string"}),
                annotations={"readOnlyHint": True, "openWorldHint": False},
            ),
            _tool("error", "Answers a JSON-RPC error -32603 instead of a result", _schema(), annotations=ro),
            _tool(
                "notify",
                "Send notifications/<kind>/list_changed then answer",
                {
                    "type": "object",
                    "properties": {"kind": {"type": "string", "enum": ["tools", "prompts", "resources"]}},
                },
                annotations={
                    "readOnlyHint": False,
                    "destructiveHint": False,
                    "idempotentHint": True,
                    "openWorldHint": False,
                },
            ),
            _tool(
                "cancelled",
                "JSON list of request ids received in notifications/cancelled",
                _schema(),
                annotations=ro,
            ),
            _tool(
                "calls",
                "Number of tools/call answered so far (optionally for one tool)",
                _schema({"tool": "string"}),
                annotations=ro,
            ),
            _tool("roots", "Ask the client for roots/list and return the answer as JSON", _schema()),
            _tool(
                "sample",
                "Ask the client for sampling/createMessage and return the answer as JSON",
                _schema({"prompt": "string"}),
            ),
            _tool(
                "big", "A text of that many bytes", _schema({"bytes": "integer"}, ("bytes",)), annotations=ro
            ),
            _tool("log", "Send notifications/message (info) then answer", _schema({"text": "string"})),
            _tool(
                "stderr", "Write lines to stderr then answer", _schema({"text": "string", "lines": "integer"})
            ),
            _tool(
                "delete_all", "Pretend to delete everything", _schema(), annotations={"destructiveHint": True}
            ),
        ]
        if self.chaos:
            tools.append(
                _tool("grandchild", "Pid of the spawned grandchild process", _schema(), annotations=ro)
            )
        tools.extend(_tool(f"t{i}", f"Dummy tool number {i}", _schema()) for i in range(n_extra))
        return tools

    PROMPTS = (
        {
            "name": "greet",
            "description": "Greet someone",
            "arguments": [{"name": "name", "description": "Who to greet", "required": True}],
        },
        {"name": "plain", "description": "A prompt without arguments"},
    )
    RESOURCES = (
        {"uri": "test://hello", "name": "hello", "mimeType": "text/plain", "description": "Says hello"},
        {"uri": "test://info", "name": "info", "mimeType": "application/json", "description": "Server info"},
    )
    TEMPLATES = (
        {
            "uriTemplate": "test://echo/{text}",
            "name": "echo",
            "mimeType": "text/plain",
            "description": "Echoes the text in the URI",
        },
    )

    # ------------------------------------------------------------------ output

    def write(self, data: bytes) -> None:
        with self.lock:
            view = memoryview(data)
            try:
                while view:
                    n = os.write(1, view)
                    view = view[n:]
            except (BrokenPipeError, OSError):
                os._exit(self.exit_code)

    def emit(self, data: bytes) -> None:
        """Send one encoded message (newline included): batched on the main thread, else written now."""
        if self.hung:
            return
        if self.junk:
            data = JUNK + data
        batch = self.batch
        if batch is not None and threading.get_ident() == self.main_ident:
            batch.append(data)
        else:
            self.write(data)

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.emit(_dumps(msg, option=_NL))

    def respond(self, rid: Any, result: dict[str, Any], method: str = "") -> None:
        if self.era == "modern":
            result.setdefault("resultType", "complete")
            if method in CACHEABLE:
                result.setdefault("ttlMs", self.ttl_ms)
                result.setdefault("cacheScope", "private")
        self.emit(_dumps({"jsonrpc": "2.0", "id": rid, "result": result}, option=_NL))

    def respond_error(self, rid: Any, code: int, message: str, data: Any = None) -> None:
        err: dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            err["data"] = data
        self.emit(_dumps({"jsonrpc": "2.0", "id": rid, "error": err}, option=_NL))

    def log(self, text: str) -> None:
        try:
            sys.stderr.write(f"[{self.server_info['name']}] {text}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    # ------------------------------------------------------------------ input

    def serve(self) -> None:
        read = os.read
        handle = self.handle_line
        buf = b""
        while True:
            try:
                chunk = read(0, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                break
            if buf:
                chunk = buf + chunk
            lines = chunk.split(b"\n")
            buf = lines.pop()
            batch: list[bytes] = []
            self.batch = batch
            if self.out_of_order:
                groups: list[list[bytes]] = []
                for line in lines:
                    group: list[bytes] = []
                    self.batch = group
                    handle(line)
                    if group:
                        groups.append(group)
                batch = [data for group in reversed(groups) for data in group]
            else:
                for line in lines:
                    handle(line)
            self.batch = None
            if batch:
                self.write(b"".join(batch))
        if buf.strip():
            self.handle_line(buf)
        self.log("stdin closed")

    def handle_line(self, line: bytes) -> None:
        try:
            msg = _loads(line)
        except orjson.JSONDecodeError:
            if line.strip():
                self.respond_error(None, PARSE_ERROR, "Parse error")
            return
        if not isinstance(msg, dict):
            self.respond_error(None, INVALID_REQUEST, "Invalid Request: expected a JSON object")
            return
        method = msg.get("method")
        if method is None:
            self.on_client_response(msg)
            return
        params = msg.get("params")
        if not isinstance(params, dict):
            params = {}
        if "id" not in msg:
            self.on_notification(method, params)
            return
        rid = msg["id"]
        if self.hung:
            return
        if self.stderr_spam or self.log_requests:
            self.log(f"request {method} id={rid}")
        if self.era == "modern" and method != "server/discover" and method != "initialize":
            meta = params.get("_meta")
            if not isinstance(meta, dict):
                self.respond_error(
                    rid,
                    INVALID_PARAMS,
                    f"params._meta must be an object carrying the required {PV_KEY!r} and {CAPS_KEY!r} "
                    "envelope keys",
                )
                return
            if PV_KEY not in meta:
                self.respond_error(
                    rid, INVALID_PARAMS, f"params._meta is missing the required envelope key(s): {PV_KEY}"
                )
                return
            version = meta[PV_KEY]
            if version not in MODERN_VERSIONS:
                self.respond_error(
                    rid,
                    UNSUPPORTED_PROTOCOL_VERSION,
                    "Unsupported protocol version",
                    {"supported": list(MODERN_VERSIONS), "requested": version},
                )
                return
        elif self.era is None and self.era_flag != "legacy" and method != "initialize":
            meta = params.get("_meta")
            if isinstance(meta, dict) and PV_KEY in meta:
                # Like the SDK's dual-era loop: an enveloped first request opens a modern connection.
                self.era = "modern"
        handler = self.handlers.get(method)
        if handler is None:
            self.respond_error(rid, METHOD_NOT_FOUND, f"Method not found: {method}")
            return
        try:
            result = handler(rid, params)
        except RpcError as e:
            self.respond_error(rid, e.code, e.message, e.data)
            return
        except Exception as e:
            self.respond_error(rid, INTERNAL_ERROR, f"{type(e).__name__}: {e}")
            return
        if result is not DEFERRED:
            self.respond(rid, result, method)

    def on_notification(self, method: str, params: dict[str, Any]) -> None:
        if method == "notifications/cancelled":
            req_id = params.get("requestId")
            with self.state_lock:
                self.cancelled_ids.append(req_id)
                try:
                    event = self.running.get(req_id)
                except TypeError:  # unhashable id
                    event = None
            if event is not None:
                event.set()
        # notifications/initialized and anything else: accepted silently

    def on_client_response(self, msg: dict[str, Any]) -> None:
        rid = msg.get("id")
        with self.state_lock:
            slot = self.pending.pop(rid, None) if isinstance(rid, str) else None
        if slot is None:
            self.log(f"unexpected response {rid!r}")
            return
        slot.answer = msg
        slot.done.set()

    def server_request(self, method: str, params: dict[str, Any], cancel: threading.Event) -> dict[str, Any]:
        """Send a server->client request and wait for the answer (called from a worker thread)."""
        with self.state_lock:
            self.next_server_request += 1
            sid = f"srv-{self.next_server_request}"
            slot = _Awaited()
            self.pending[sid] = slot
        self.emit(_dumps({"jsonrpc": "2.0", "id": sid, "method": method, "params": params}, option=_NL))
        deadline = time.monotonic() + SERVER_REQUEST_TIMEOUT
        while not slot.done.wait(0.02):
            if cancel.is_set() or time.monotonic() > deadline:
                with self.state_lock:
                    self.pending.pop(sid, None)
                if cancel.is_set():
                    raise _Cancelled
                return {"error": {"code": -1, "message": f"timed out after {SERVER_REQUEST_TIMEOUT}s"}}
        assert slot.answer is not None  # set before done
        return slot.answer

    def handshake_done(self) -> None:
        if self.handshaken:
            return
        self.handshaken = True
        if self.leak_mb_per_s > 0:
            threading.Thread(target=self._leak_forever, daemon=True).start()

    def _leak_forever(self) -> None:
        chunk = int(self.leak_mb_per_s * (1 << 20) / 10)
        while True:
            self._leak.append(b"\x01" * chunk)  # bytes multiplication touches every page
            time.sleep(0.1)

    # ------------------------------------------------------------------ methods

    def m_initialize(self, rid: Any, params: dict[str, Any]) -> dict[str, Any]:
        requested = params.get("protocolVersion")
        if self.era_flag == "modern" or self.era == "modern":
            data: dict[str, Any] = {"supported": list(MODERN_VERSIONS)}
            if isinstance(requested, str):
                data["requested"] = requested
            raise RpcError(
                UNSUPPORTED_PROTOCOL_VERSION,
                f"connection is serving the {MODERN_VERSION} protocol; "
                "the initialize handshake is not accepted",
                data,
            )
        self.era = "legacy"
        if self.notify_before_reply:
            self.notify(
                "notifications/message", {"level": "info", "data": "starting up (before initialize reply)"}
            )
        self.handshake_done()
        return {
            "protocolVersion": requested if requested in LEGACY_VERSIONS else LATEST_LEGACY,
            "capabilities": self.capabilities,
            "serverInfo": self.server_info,
            "instructions": "Test server for mcp-supervisor.",
        }

    def m_discover(self, rid: Any, params: dict[str, Any]) -> dict[str, Any]:
        if self.era_flag == "legacy":
            raise RpcError(METHOD_NOT_FOUND, "Method not found: server/discover")
        meta = params.get("_meta")
        if isinstance(meta, dict) and PV_KEY in meta and meta[PV_KEY] not in MODERN_VERSIONS:
            raise RpcError(
                UNSUPPORTED_PROTOCOL_VERSION,
                "Unsupported protocol version",
                {"supported": list(MODERN_VERSIONS), "requested": meta[PV_KEY]},
            )
        self.era = "modern"
        if self.notify_before_reply:
            self.notify(
                "notifications/message", {"level": "info", "data": "starting up (before discover reply)"}
            )
        self.handshake_done()
        return {
            "supportedVersions": list(MODERN_VERSIONS),
            "capabilities": self.capabilities,
            "instructions": "Test server for mcp-supervisor.",
            "resultType": "complete",
            "_meta": {SERVER_INFO_KEY: self.server_info},
        }

    def _page(self, items: list[Any] | tuple[Any, ...], key: str, params: dict[str, Any]) -> dict[str, Any]:
        cursor = params.get("cursor")
        start = 0
        if cursor is not None:
            try:
                start = int(cursor)
                if start < 0 or start > len(items):
                    raise ValueError
            except (TypeError, ValueError):
                raise RpcError(INVALID_PARAMS, f"Invalid cursor: {cursor!r}") from None
        if self.page_size <= 0:
            return {key: list(items[start:])}
        end = start + self.page_size
        result: dict[str, Any] = {key: list(items[start:end])}
        if end < len(items):
            result["nextCursor"] = str(end)
        return result

    def m_tools_list(self, rid: Any, params: dict[str, Any]) -> dict[str, Any]:
        source = self.args.describe_from
        if source and os.path.exists(source):
            with open(source) as fh:
                text = fh.read().strip()
            tools = [dict(t, description=text) if t["name"] == "echo" else t for t in self.tools]
            return self._page(tools, "tools", params)
        return self._page(self.tools, "tools", params)

    def m_prompts_list(self, rid: Any, params: dict[str, Any]) -> dict[str, Any]:
        return self._page(self.PROMPTS, "prompts", params)

    def m_resources_list(self, rid: Any, params: dict[str, Any]) -> dict[str, Any]:
        return self._page(self.RESOURCES, "resources", params)

    def m_templates_list(self, rid: Any, params: dict[str, Any]) -> dict[str, Any]:
        return self._page(self.TEMPLATES, "resourceTemplates", params)

    def m_prompts_get(self, rid: Any, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        args = params.get("arguments") or {}
        if name == "greet":
            if "name" not in args:
                raise RpcError(INVALID_PARAMS, "Missing required argument: name")
            text = f"Hello, {args['name']}!"
        elif name == "plain":
            text = "A plain prompt."
        else:
            raise RpcError(INVALID_PARAMS, f"Unknown prompt: {name}")
        return {
            "description": f"prompt {name}",
            "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
        }

    def m_resources_read(self, rid: Any, params: dict[str, Any]) -> dict[str, Any]:
        uri = params.get("uri")
        if uri == "test://hello":
            content = {"uri": uri, "mimeType": "text/plain", "text": "hello world"}
        elif uri == "test://info":
            text = _dumps({"pid": os.getpid(), "serverInfo": self.server_info, "era": self.era}).decode()
            content = {"uri": uri, "mimeType": "application/json", "text": text}
        elif isinstance(uri, str) and uri.startswith("test://echo/"):
            content = {"uri": uri, "mimeType": "text/plain", "text": uri[len("test://echo/") :]}
        else:
            raise RpcError(RESOURCE_NOT_FOUND, "Resource not found", {"uri": uri})
        return {"contents": [content]}

    def m_tools_call(self, rid: Any, params: dict[str, Any]) -> Any:
        self.tool_calls_received += 1
        n = self.tool_calls_received
        if self.crash_after is not None and n >= self.crash_after:
            self.log(f"crashing on tools/call #{n}")
            batch, self.batch = self.batch, None
            if batch:
                self.write(b"".join(batch))
            os._exit(self.crash_code)
        if self.hang_tools:
            return DEFERRED
        name: Any = params.get("name")  # any JSON value; a handler is found only for a str
        handler = self.tool_handlers.get(name)
        if handler is None:
            raise RpcError(INVALID_PARAMS, f"Unknown tool: {name}")
        args = params.get("arguments")
        if not isinstance(args, dict):
            args = {}
        result = handler(rid, args, params)
        if result is not DEFERRED:
            self._count(name)
        if self.hang_after is not None and n >= self.hang_after:
            if result is not DEFERRED:
                self.respond(rid, result, "tools/call")
            self.log(f"hanging after tools/call #{n}")
            self.hung = True
            return DEFERRED
        return result

    def _count(self, name: str) -> None:
        with self.state_lock:
            self.calls_answered += 1
            self.calls_by_tool[name] = self.calls_by_tool.get(name, 0) + 1

    # ------------------------------------------------------------------ tools

    def t_echo(self, rid: Any, args: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        return {
            "content": [{"type": "text", "text": str(args.get("text", ""))}],
            "isError": False,
            "structuredContent": args,
        }

    def t_add(self, rid: Any, args: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        a, b = args.get("a"), args.get("b")
        if not isinstance(a, int | float) or not isinstance(b, int | float):
            raise RpcError(INVALID_PARAMS, "add needs numbers a and b")
        total = a + b
        return _text(str(total), structured={"result": total})

    def t_error(self, rid: Any, args: dict[str, Any], params: dict[str, Any]) -> Any:
        raise RpcError(INTERNAL_ERROR, "the error tool always fails with a JSON-RPC error")

    def t_notify(self, rid: Any, args: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        kind = args.get("kind", "tools")
        if kind not in ("tools", "prompts", "resources"):
            raise RpcError(INVALID_PARAMS, f"unknown kind {kind!r}")
        self.notify(f"notifications/{kind}/list_changed")
        return _text(f"sent notifications/{kind}/list_changed")

    def t_calls(self, rid: Any, args: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        tool = args.get("tool")
        with self.state_lock:
            n = self.calls_by_tool.get(tool, 0) if tool else self.calls_answered
        return _text(str(n), structured={"calls": n})

    def t_log(self, rid: Any, args: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        text = str(args.get("text", ""))
        self.notify("notifications/message", {"level": "info", "logger": "echo", "data": text})
        return _text("logged")

    def t_stderr(self, rid: Any, args: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        text = str(args.get("text", "stderr line"))
        lines = int(args.get("lines", 1))
        sys.stderr.write("".join(f"{text}\n" for _ in range(lines)))
        sys.stderr.flush()
        return _text(f"wrote {lines} lines")

    def _in_thread(self, rid: Any, name: str, work: Callable[[threading.Event], dict[str, Any]]) -> Any:
        """Run `work` in a daemon thread; answer unless cancelled. Returns DEFERRED."""
        cancel = threading.Event()
        with self.state_lock, contextlib.suppress(TypeError):
            self.running[rid] = cancel

        def run() -> None:
            try:
                result = work(cancel)
            except _Cancelled:
                self.log(f"request {rid!r} cancelled")
                return
            except RpcError as e:
                if not cancel.is_set():
                    self._count(name)
                    self.respond_error(rid, e.code, e.message, e.data)
                return
            finally:
                with self.state_lock, contextlib.suppress(TypeError):
                    self.running.pop(rid, None)
            if cancel.is_set():
                self.log(f"request {rid!r} cancelled")
                return
            self._count(name)
            self.respond(rid, result, "tools/call")

        threading.Thread(target=run, daemon=True, name=f"{name}-{rid}").start()
        return DEFERRED

    def t_job(self, rid: Any, args: dict[str, Any], params: dict[str, Any]) -> Any:
        """--own-tasks: a task of this process, created after `seconds` (so that concurrent calls
        spread over instances)."""
        seconds = float(args.get("seconds", 0.0))

        def work(cancel: threading.Event) -> dict[str, Any]:
            if cancel.wait(seconds):
                raise _Cancelled
            with self.state_lock:
                self.next_server_request += 1
                task_id = f"own-{os.getpid()}-{self.next_server_request}"
            return {"resultType": "task", "taskId": task_id, "status": "working",
                    "createdAt": "2026-01-01T00:00:00Z", "lastUpdatedAt": "2026-01-01T00:00:00Z",
                    "ttlMs": 60000}

        return self._in_thread(rid, "job", work)

    def m_own_task(self, rid: Any, params: dict[str, Any]) -> dict[str, Any]:
        task_id = str(params.get("taskId"))
        if not task_id.startswith(f"own-{os.getpid()}-"):
            raise RpcError(INVALID_PARAMS,
                           f"Failed to retrieve task: {task_id} is not a task of {os.getpid()}")
        return {"resultType": "complete", "taskId": task_id, "status": "completed",
                "createdAt": "2026-01-01T00:00:00Z", "lastUpdatedAt": "2026-01-01T00:00:00Z",
                "ttlMs": 60000, "result": {"content": [{"type": "text", "text": f"done by {os.getpid()}"}]}}

    def t_sleep(self, rid: Any, args: dict[str, Any], params: dict[str, Any]) -> Any:
        seconds = float(args.get("seconds", 1.0))
        meta = params.get("_meta")
        token = meta.get("progressToken") if isinstance(meta, dict) else None

        def work(cancel: threading.Event) -> dict[str, Any]:
            steps = 3 if token is not None else 1
            for k in range(steps):
                if cancel.wait(seconds / steps):
                    raise _Cancelled
                if token is not None:
                    self.notify(
                        "notifications/progress",
                        {
                            "progressToken": token,
                            "progress": k + 1,
                            "total": steps,
                            "message": f"step {k + 1}/{steps}",
                        },
                    )
            return _text("slept")

        return self._in_thread(rid, "sleep", work)

    def _ask_client(
        self, rid: Any, name: str, method: str, req_params: dict[str, Any], params: dict[str, Any]
    ) -> Any:
        if self.era == "modern":
            # 2026-07-28 has no server->client requests: ask via input_required and answer on retry.
            responses = params.get("inputResponses")
            if isinstance(responses, dict) and name in responses:
                return _text(_dumps(responses[name]).decode(), structured={"response": responses[name]})
            return {
                "resultType": "input_required",
                "inputRequests": {name: {"method": method, "params": req_params}},
                "requestState": name,
            }

        def work(cancel: threading.Event) -> dict[str, Any]:
            answer = self.server_request(method, req_params, cancel)
            if "error" in answer:
                return _text(f"{method} failed: {_dumps(answer['error']).decode()}", is_error=True)
            return _text(_dumps(answer.get("result")).decode(), structured={"response": answer.get("result")})

        return self._in_thread(rid, name, work)

    def t_roots(self, rid: Any, args: dict[str, Any], params: dict[str, Any]) -> Any:
        return self._ask_client(rid, "roots", "roots/list", {}, params)

    def t_sample(self, rid: Any, args: dict[str, Any], params: dict[str, Any]) -> Any:
        prompt = str(args.get("prompt", "Say hi"))
        req = {"messages": [{"role": "user", "content": {"type": "text", "text": prompt}}], "maxTokens": 100}
        return self._ask_client(rid, "sample", "sampling/createMessage", req, params)


class _Cancelled(Exception):
    pass


def _spawn_grandchild(setsid: bool, leak_mb: int) -> int:
    code = (
        "import os, time\n"
        + ("os.setsid()\n" if setsid else "")
        + f"hold = b'\\x01' * ({leak_mb} << 20)\n"
        + "while True:\n    time.sleep(3600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc.pid


def _spam_stderr() -> None:
    line = b"stderr spam " + b"." * 100 + b"\n"
    out = sys.stderr.buffer
    n = 0
    while True:
        out.write(line * 50)
        out.flush()
        n += 1
        if n % 10 == 0:
            time.sleep(0.01)


def main(chaos: bool = False, argv: list[str] | None = None) -> None:
    args = build_parser(chaos).parse_args(argv)
    if chaos:
        if args.crash_on_start_if_file and os.path.exists(args.crash_on_start_if_file):
            sys.stderr.write(f"refusing to start: {args.crash_on_start_if_file} exists\n")
            sys.stderr.flush()
            sys.exit(1)
        if args.exit_before_handshake is not None:
            sys.stderr.write(args.exit_before_handshake + "\n")
            sys.stderr.flush()
            sys.exit(1)
        if args.pidfile:
            with open(args.pidfile, "w") as f:
                f.write(f"{os.getpid()}\n")
    server = Server(args, chaos)
    if chaos:
        if args.grandchild or args.grandchild_setsid or args.grandchild_leak_mb:
            server.grandchild_pid = _spawn_grandchild(args.grandchild_setsid, args.grandchild_leak_mb)
        if args.ignore_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if args.stderr_spam:
            threading.Thread(target=_spam_stderr, daemon=True).start()
        if args.slow_start > 0:
            time.sleep(args.slow_start)
    server.log(f"started pid={os.getpid()}")
    server.serve()
    if chaos and args.ignore_eof:
        server.log("ignoring EOF; waiting for a signal")
        while True:
            signal.pause()
    sys.stderr.flush()
    os._exit(server.exit_code)
