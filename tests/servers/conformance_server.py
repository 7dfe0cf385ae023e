"""A legacy-era stdio MCP server offering what the official conformance suite calls.

Written from the suite's scenario descriptions (npm `@modelcontextprotocol/conformance` 0.1.16 and
0.2.0-alpha.12, server mode), so that running the suite against the daemon's `/mcp/NAME` in front
of this child measures the daemon, not the child. It speaks only the legacy era: it answers
`initialize` and refuses `server/discover` (-32601), so every 2026-07-28 scenario that passes is
passed by the daemon's translation.

The input-required tools are written the legacy way: the tool sends the server-to-client request
(`elicitation/create`, `sampling/createMessage`, `roots/list`) and waits for the answer; rounds are
consecutive requests. The daemon turns each of them into an `InputRequiredResult` for a 2026-07-28
client.

Standard library + orjson only; one reader (the main thread), one thread per tool call that has to
wait, every write under one lock.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import sys
import threading
import time
from typing import Any

import orjson

VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
WAIT = 60.0  # a server-to-client request unanswered this long fails the tool

# A 1x1 red PNG and a tiny silent WAV, built here rather than pasted.
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108020000009077"
    "53de0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082")).decode()
WAV = base64.b64encode(b"RIFF" + (36 + 8).to_bytes(4, "little") + b"WAVEfmt "
                       + (16).to_bytes(4, "little") + (1).to_bytes(2, "little")
                       + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
                       + (8000).to_bytes(4, "little") + (1).to_bytes(2, "little")
                       + (8).to_bytes(2, "little") + b"data" + (8).to_bytes(4, "little")
                       + bytes([128] * 8)).decode()

NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
EMPTY = {"type": "object", "properties": {}}

SCHEMA_2020 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {"address": {"$anchor": "addressDef", "type": "object",
                          "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"},
                   "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                   "phone": {"type": "string"}, "email": {"type": "string"}},
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


def _tool(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "description": description, "inputSchema": schema or EMPTY}


def _task_tool(name: str, description: str, support: str,
               schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**_tool(name, description, schema), "execution": {"taskSupport": support}}


def _string_args(*names: str) -> dict[str, Any]:
    return {"type": "object", "properties": {n: {"type": "string"} for n in names}, "required": list(names)}


TOOLS = [
    _tool("test_simple_text", "Returns a simple text response"),
    _tool("test_image_content", "Returns a PNG image"),
    _tool("test_audio_content", "Returns a WAV clip"),
    _tool("test_embedded_resource", "Returns an embedded text resource"),
    _tool("test_multiple_content_types", "Returns text, an image and a resource"),
    _tool("test_tool_with_logging", "Sends three log messages while it runs"),
    _tool("test_logging_tool", "Sends log messages while it runs"),
    _tool("test_error_handling", "Always fails with isError"),
    _tool("test_tool_with_progress", "Reports progress 0, 50, 100 of 100"),
    _tool("test_sampling", "Asks the client's LLM (sampling/createMessage)", _string_args("prompt")),
    _tool("test_elicitation", "Asks the user for a username and email", _string_args("message")),
    _tool("test_elicitation_sep1034_defaults", "Elicitation with a default for every primitive type"),
    _tool("test_elicitation_sep1330_enums", "Elicitation with the five enum schema variants"),
    _tool("test_streaming_elicitation", "Asks the user something mid-call"),
    _tool("test_missing_capability", "Needs the client's sampling capability"),
    _tool("test_reconnection", "Answers after a short pause (SSE polling tests)"),
    _tool("test_trigger_tool_change", "Changes the tool list (sends tools/list_changed)"),
    _tool("test_trigger_prompt_change", "Changes the prompt list (sends prompts/list_changed)"),
    _tool("test_update_resource", "Changes test://watched-resource (resources/updated to subscribers)"),
    _tool("json_schema_2020_12_tool", "Takes a JSON Schema 2020-12 input", SCHEMA_2020),
    _tool("test_input_required_result_elicitation", "Asks the user's name"),
    _tool("test_input_required_result_sampling", "Asks the client's LLM a question"),
    _tool("test_input_required_result_list_roots", "Asks for the client's roots"),
    _tool("test_input_required_result_request_state", "Asks for a confirmation"),
    _tool("test_input_required_result_multiple_inputs", "Asks three things at once"),
    _tool("test_input_required_result_multi_round", "Asks two things, one after the other"),
    _tool("test_input_required_result_tampered_state", "Asks for a confirmation"),
    _tool("test_input_required_result_capabilities", "Asks for sampling"),
    # The tasks extension's fixtures (SEP-2663 scenarios). `execution.taskSupport` is the
    # 2025-11-25 tool field; the daemon runs such calls as tasks for clients that declare it.
    _tool("greet", "Says hello (never a task)", NAME_SCHEMA),
    _task_tool("slow_compute", "Sleeps `seconds`, then answers (stops when cancelled)", "optional",
               {"type": "object", "properties": {"seconds": {"type": "number"},
                                                 "label": {"type": "string"}}}),
    _task_tool("failing_job", "Ends with a tool error after a moment", "required"),
    _task_tool("protocol_error_job", "Ends with a JSON-RPC error", "optional"),
    _task_tool("confirm_delete", "Asks for a confirmation, then answers", "optional",
               _string_args("filename")),
    _task_tool("multi_input", "Asks two things at once", "optional"),
    _task_tool("test_tool_with_task", "Asks the user's name, then greets", "required"),
]
EXTRA_TOOL = _tool("test_added_tool", "Appears after test_trigger_tool_change")

PROMPTS = [
    {"name": "test_simple_prompt", "description": "A prompt without arguments"},
    {"name": "test_prompt_with_arguments", "description": "A prompt with two arguments",
     "arguments": [{"name": "arg1", "description": "First test argument", "required": True},
                   {"name": "arg2", "description": "Second test argument", "required": True}]},
    {"name": "test_prompt_with_embedded_resource", "description": "A prompt embedding a resource",
     "arguments": [{"name": "resourceUri", "description": "URI of the resource to embed",
                    "required": True}]},
    {"name": "test_prompt_with_image", "description": "A prompt with an image"},
    {"name": "test_input_required_result_prompt", "description": "A prompt that asks the user first"},
]
EXTRA_PROMPT = {"name": "test_added_prompt", "description": "Appears after test_trigger_prompt_change"}

RESOURCES = [
    {"uri": "test://static-text", "name": "static-text", "description": "A static text resource",
     "mimeType": "text/plain"},
    {"uri": "test://static-binary", "name": "static-binary", "description": "A static PNG",
     "mimeType": "image/png"},
    {"uri": "test://watched-resource", "name": "watched-resource",
     "description": "A resource clients subscribe to", "mimeType": "text/plain"},
]
TEMPLATES = [{"uriTemplate": "test://template/{id}/data", "name": "template-data",
              "description": "Data for an id", "mimeType": "application/json"}]
TEMPLATE = re.compile(r"test://template/([^/]+)/data")

CAPABILITIES = {
    "tools": {"listChanged": True},
    "prompts": {"listChanged": True},
    "resources": {"listChanged": True, "subscribe": True},
    "logging": {},
    "completions": {},
}


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def _object(value: object) -> dict[str, Any]:
    """A JSON object from the peer, or {} when it sent something else."""
    return value if isinstance(value, dict) else {}


def _array(value: object) -> list[Any]:
    """A JSON array from the peer, or [] when it sent something else."""
    return value if isinstance(value, list) else []


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": value}], **extra}


class Server:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.client_caps: dict[str, Any] = {}
        self.waiting: dict[str, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self.next_id = 0
        self.subscriptions: set[str] = set()
        self.extra_tool = False
        self.extra_prompt = False
        self.cancels: dict[Any, threading.Event] = {}  # request id -> set by notifications/cancelled
        self.current = threading.local()  # the request id a handler thread answers

    # ---- wire -------------------------------------------------------------------------------

    def write(self, message: dict[str, Any]) -> None:
        data = orjson.dumps({"jsonrpc": "2.0", **message}) + b"\n"
        with self.lock:
            os.write(1, data)

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self.write({"method": method, "params": params})

    def ask(self, method: str, params: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        """Send a server-to-client request and wait for its result (RpcError on an error answer).

        The id is `key#N`: a gateway that turns this request into a 2026-07-28
        InputRequiredResult asks it under `key` (mcp-supervisor's convention), and the suite
        expects the keys its scenarios name; `#N` keeps ids unique while older calls still wait."""
        with self.lock:
            self.next_id += 1
            rid = f"{key or 'srv'}#{self.next_id}"
            done = threading.Event()
            box: list[dict[str, Any]] = []
            self.waiting[rid] = (done, box)
        self.write({"id": rid, "method": method, "params": params})
        if not done.wait(WAIT):
            self.waiting.pop(rid, None)
            raise RpcError(-32603, f"{method}: no answer from the client within {WAIT:g}s")
        answer = box[0]
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            raise RpcError(int(error.get("code", -32603)), str(error.get("message", "client error")),
                           error.get("data"))
        result = answer.get("result")
        return result if isinstance(result, dict) else {}

    def serve(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(0, 65536)
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    self.on_line(line)

    def on_line(self, line: bytes) -> None:
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.write({"id": None, "error": {"code": -32700, "message": "Parse error"}})
            return
        if not isinstance(msg, dict):
            self.write({"id": None, "error": {"code": -32600, "message": "Invalid Request"}})
            return
        method = msg.get("method")
        if method is None:
            waiter = self.waiting.pop(str(msg.get("id")), None)
            if waiter is not None:
                waiter[1].append(msg)
                waiter[0].set()
            return
        if "id" not in msg:
            if method == "notifications/cancelled" and isinstance(msg.get("params"), dict):
                rid = msg["params"].get("requestId")
                self.cancel_event(rid).set()
                sys.stderr.write(f"cancelled request {rid}\n")
                sys.stderr.flush()
            return  # other notifications (initialized) need nothing from us
        params = _object(msg.get("params"))
        if method in BLOCKING_TOOLS_METHODS and (method != "tools/call" or params.get("name") in BLOCKING):
            threading.Thread(target=self.answer, args=(msg, method, params), daemon=True).start()
        else:
            self.answer(msg, method, params)

    def cancel_event(self, rid: Any) -> threading.Event:
        with self.lock:
            return self.cancels.setdefault(rid if isinstance(rid, int | str) else repr(rid),
                                           threading.Event())

    def answer(self, msg: dict[str, Any], method: str, params: dict[str, Any]) -> None:
        handler = HANDLERS.get(method)
        self.current.rid = msg["id"]
        try:
            if handler is None:
                raise RpcError(-32601, f"Method not found: {method}")
            result = handler(self, params)
        except RpcError as exc:
            error: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                error["data"] = exc.data
            self.write({"id": msg["id"], "error": error})
            return
        self.write({"id": msg["id"], "result": result})

    # ---- lifecycle --------------------------------------------------------------------------

    def initialize(self, params: dict[str, Any]) -> dict[str, Any]:
        self.client_caps = params.get("capabilities") or {}
        requested = params.get("protocolVersion")
        return {"protocolVersion": requested if requested in VERSIONS else VERSIONS[-1],
                "capabilities": CAPABILITIES,
                "serverInfo": {"name": "mcp-supervisor-conformance-child", "version": "1.0.0"}}

    def discover(self, params: dict[str, Any]) -> dict[str, Any]:
        raise RpcError(-32601, "Method not found: server/discover (this server speaks only the "
                       "legacy era; send initialize)")

    # ---- tools ------------------------------------------------------------------------------

    def tools_list(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"tools": TOOLS + ([EXTRA_TOOL] if self.extra_tool else [])}

    def tools_call(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        args = _object(params.get("arguments"))
        meta = _object(params.get("_meta"))
        tool = TOOL_HANDLERS.get(name) if isinstance(name, str) else None
        if tool is None:
            raise RpcError(-32602, f"Unknown tool: {name}")
        return tool(self, args, meta)

    def t_simple(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        return text("This is a simple text response for testing.")

    def t_image(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        return {"content": [{"type": "image", "data": PNG, "mimeType": "image/png"}]}

    def t_audio(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        return {"content": [{"type": "audio", "data": WAV, "mimeType": "audio/wav"}]}

    def t_embedded(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        return {"content": [{"type": "resource", "resource": {
            "uri": "test://embedded-resource", "mimeType": "text/plain",
            "text": "This is an embedded resource content."}}]}

    def t_mixed(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        return {"content": [
            {"type": "text", "text": "Multiple content types test:"},
            {"type": "image", "data": PNG, "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "test://mixed-content-resource",
                                              "mimeType": "application/json",
                                              "text": '{"test":"data","value":123}'}}]}

    def t_logging(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        for i, line in enumerate(("Tool execution started", "Tool processing data",
                                  "Tool execution completed")):
            if i:
                time.sleep(0.05)
            self.notify("notifications/message", {"level": "info", "logger": "conformance",
                                                   "data": line})
        return text("Logging test completed")

    def t_error(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        return text("This tool intentionally returns an error for testing", isError=True)

    def t_progress(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        token = meta.get("progressToken")
        for i, value in enumerate((0, 50, 100)):
            if i:
                time.sleep(0.05)
            if token is not None:
                self.notify("notifications/progress", {"progressToken": token, "progress": value,
                                                       "total": 100})
        return text("Progress test completed")

    def _need(self, capability: str) -> None:
        if capability not in self.client_caps:
            raise RpcError(-32602, f"the client did not declare the {capability!r} capability")

    def t_sampling(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        result = self.ask("sampling/createMessage", {
            "messages": [{"role": "user", "content": {"type": "text", "text": str(args.get("prompt", ""))}}],
            "maxTokens": 100})
        content = result.get("content")
        said = content.get("text") if isinstance(content, dict) else None
        return text(f"LLM response: {said if said is not None else orjson.dumps(result).decode()}")

    def t_elicitation(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        result = self.ask("elicitation/create", {
            "message": str(args.get("message", "")),
            "requestedSchema": {"type": "object", "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"}},
                "required": ["username", "email"]}})
        return text(f"User response: action={result.get('action')}, "
                    f"content={orjson.dumps(result.get('content')).decode()}")

    def t_defaults(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        result = self.ask("elicitation/create", {
            "message": "Please review and update the form fields with defaults",
            "requestedSchema": {"type": "object", "properties": {
                "name": {"type": "string", "description": "User name", "default": "John Doe"},
                "age": {"type": "integer", "description": "User age", "default": 30},
                "score": {"type": "number", "description": "User score", "default": 95.5},
                "status": {"type": "string", "description": "User status",
                           "enum": ["active", "inactive", "pending"], "default": "active"},
                "verified": {"type": "boolean", "description": "Verification status", "default": True}}}})
        return self._completed(result)

    def t_enums(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        result = self.ask("elicitation/create", {
            "message": "Please select options from the enum fields",
            "requestedSchema": {"type": "object", "properties": {
                "untitledSingle": {"type": "string", "description": "Untitled single-select",
                                   "enum": ["option1", "option2", "option3"]},
                "titledSingle": {"type": "string", "description": "Titled single-select", "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"}]},
                "legacyEnum": {"type": "string", "description": "Legacy titled enum",
                               "enum": ["opt1", "opt2", "opt3"],
                               "enumNames": ["Option One", "Option Two", "Option Three"]},
                "untitledMulti": {"type": "array", "description": "Untitled multi-select",
                                  "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                "titledMulti": {"type": "array", "description": "Titled multi-select", "items": {"anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"}]}}}}})
        return self._completed(result)

    def _completed(self, result: dict[str, Any]) -> dict[str, Any]:
        return text(f"Elicitation completed: action={result.get('action')}, "
                    f"content={orjson.dumps(result.get('content')).decode()}")

    def t_streaming_elicitation(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        result = self.ask("elicitation/create", {"message": "Continue?", "requestedSchema": {
            "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}})
        return self._completed(result)

    def t_missing_capability(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        result = self.ask("sampling/createMessage", {
            "messages": [{"role": "user", "content": {"type": "text", "text": "Say hello"}}],
            "maxTokens": 20})
        return text(f"sampled: {orjson.dumps(result).decode()}")

    def t_reconnection(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        token = meta.get("progressToken")
        if token is not None:  # something to see on the stream before the pause
            self.notify("notifications/progress", {"progressToken": token, "progress": 1, "total": 2})
        seconds = args.get("seconds")
        # The suite calls it without arguments and expects the stream to be let go before the
        # answer: a second is well past a polling daemon's `sse_poll_after` in the tests.
        time.sleep(float(seconds) if isinstance(seconds, int | float) and 0 <= seconds <= 10 else 1.0)
        return text("Reconnection test completed")

    def t_trigger_tools(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        self.extra_tool = not self.extra_tool
        self.notify("notifications/tools/list_changed", {})
        return text("tool list changed")

    def t_trigger_prompts(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        self.extra_prompt = not self.extra_prompt
        self.notify("notifications/prompts/list_changed", {})
        return text("prompt list changed")

    def t_update(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        uri = "test://watched-resource"
        if uri in self.subscriptions:
            self.notify("notifications/resources/updated", {"uri": uri})
        return text(f"updated {uri}")

    def t_schema(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        return text(f"received: {orjson.dumps(args).decode()}")

    # The input-required tools, legacy way: ask, wait, answer.

    def ir_elicitation(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        result = self.ask("elicitation/create", {"message": "What is your name?",
                                                 "requestedSchema": NAME_SCHEMA}, "user_name")
        content = _object(result.get("content"))
        return text(f"Hello, {content.get('name', 'stranger')}!")

    def ir_sampling(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        result = self.ask("sampling/createMessage", {
            "messages": [{"role": "user", "content": {"type": "text",
                                                      "text": "What is the capital of France?"}}],
            "maxTokens": 100}, "capital_question")
        content = result.get("content")
        said = content.get("text") if isinstance(content, dict) else None
        return text(f"The model said: {said}")

    def ir_roots(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        result = self.ask("roots/list", {}, "client_roots")
        roots = _array(result.get("roots"))
        uris = [r.get("uri") for r in roots if isinstance(r, dict)]
        return text(f"Roots: {', '.join(str(u) for u in uris) or '(none)'}")

    def ir_confirm(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        result = self.ask("elicitation/create", {"message": "Please confirm", "requestedSchema": {
            "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}, "confirm")
        return text(f"state-ok: confirmed={orjson.dumps(result.get('content')).decode()}")

    def ir_multiple(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        # Three questions at once: one thread per question, so all are outstanding together.
        answers: dict[str, Any] = {}
        questions = {
            "user_name": ("elicitation/create", {"message": "What is your name?",
                                            "requestedSchema": NAME_SCHEMA}),
            "greeting": ("sampling/createMessage", {"messages": [{"role": "user", "content": {
                "type": "text", "text": "Generate a greeting"}}], "maxTokens": 50}),
            "client_roots": ("roots/list", {}),
        }

        def one(key: str, method: str, params: dict[str, Any]) -> None:
            try:
                answers[key] = self.ask(method, params, key)
            except RpcError as exc:
                answers[key] = {"error": exc.message}

        threads = [threading.Thread(target=one, args=(k, m, p), daemon=True)
                   for k, (m, p) in questions.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT + 1)
        return text(f"All inputs received: {orjson.dumps(answers).decode()}")

    def ir_multi_round(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        first = self.ask("elicitation/create", {"message": "Step 1: What is your name?",
                                                "requestedSchema": NAME_SCHEMA}, "step1")
        second = self.ask("elicitation/create", {
            "message": "Step 2: What is your favorite color?",
            "requestedSchema": {"type": "object", "properties": {"color": {"type": "string"}},
                                "required": ["color"]}}, "step2")
        name = first["content"].get("name") if isinstance(first.get("content"), dict) else None
        color = second["content"].get("color") if isinstance(second.get("content"), dict) else None
        return text(f"{name}'s favorite color is {color}")

    # ---- the tasks extension's fixtures ----------------------------------------------------

    def t_greet(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        return text(f"Hello, {args.get('name', 'World')}!")

    def t_slow(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        seconds = args.get("seconds", 1)
        seconds = float(seconds) if isinstance(seconds, int | float) else 1.0
        label = str(args.get("label", ""))
        if self.cancel_event(self.current.rid).wait(min(max(seconds, 0.0), 3600.0)):
            sys.stderr.write(f"slow_compute {label} stopped: cancelled\n")
            sys.stderr.flush()
            raise RpcError(-32800, "cancelled")  # written after a cancel: the gateway drops it
        return text(f"computed {label} after {seconds:g}s")

    def t_failing(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.3)
        return text("failing_job failed: the job could not finish", isError=True)

    def t_protocol_error(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.1)
        raise RpcError(-32603, "protocol_error_job failed on purpose")

    def t_confirm_delete(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        filename = str(args.get("filename", "file"))
        result = self.ask("elicitation/create", {
            "message": f"Delete {filename}?", "requestedSchema": {
                "type": "object", "properties": {"confirm": {"type": "boolean"}}, "required": ["confirm"]}},
            "confirm_delete")
        content = _object(result.get("content"))
        done = result.get("action") == "accept" and content.get("confirm") is True
        return text(f"{filename}: {'deleted' if done else 'kept'}")

    def t_multi_input(self, args: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        answers: dict[str, Any] = {}

        def one(key: str) -> None:
            try:
                answers[key] = self.ask("elicitation/create", {
                    "message": f"Your {key}?", "requestedSchema": NAME_SCHEMA}, key)
            except RpcError as exc:
                answers[key] = {"error": exc.message}

        threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in ("first", "second")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT + 1)
        return text(f"Both inputs received: {orjson.dumps(answers).decode()}")

    # ---- prompts ----------------------------------------------------------------------------

    def prompts_list(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"prompts": PROMPTS + ([EXTRA_PROMPT] if self.extra_prompt else [])}

    def prompts_get(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        args = _object(params.get("arguments"))
        if name == "test_simple_prompt":
            return {"messages": [{"role": "user", "content": {
                "type": "text", "text": "This is a simple prompt for testing."}}]}
        if name == "test_prompt_with_arguments":
            return {"messages": [{"role": "user", "content": {"type": "text", "text": (
                f"Prompt with arguments: arg1='{args.get('arg1')}', arg2='{args.get('arg2')}'")}}]}
        if name == "test_prompt_with_embedded_resource":
            return {"messages": [
                {"role": "user", "content": {"type": "resource", "resource": {
                    "uri": str(args.get("resourceUri", "test://example-resource")),
                    "mimeType": "text/plain", "text": "Embedded resource content for testing."}}},
                {"role": "user", "content": {"type": "text",
                                             "text": "Please process the embedded resource above."}}]}
        if name == "test_prompt_with_image":
            return {"messages": [
                {"role": "user", "content": {"type": "image", "data": PNG, "mimeType": "image/png"}},
                {"role": "user", "content": {"type": "text", "text": "Please analyze the image above."}}]}
        if name == "test_input_required_result_prompt":
            result = self.ask("elicitation/create", {
                "message": "What context should the prompt use?",
                "requestedSchema": {"type": "object", "properties": {"context": {"type": "string"}},
                                    "required": ["context"]}}, "user_context")
            content = _object(result.get("content"))
            return {"messages": [{"role": "user", "content": {
                "type": "text", "text": f"Use this context: {content.get('context')}"}}]}
        raise RpcError(-32602, f"Unknown prompt: {name}")

    # ---- resources --------------------------------------------------------------------------

    def resources_list(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"resources": RESOURCES}

    def templates_list(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"resourceTemplates": TEMPLATES}

    def resources_read(self, params: dict[str, Any]) -> dict[str, Any]:
        uri = params.get("uri")
        if uri == "test://static-text":
            return {"contents": [{"uri": uri, "mimeType": "text/plain",
                                  "text": "This is the content of the static text resource."}]}
        if uri == "test://static-binary":
            return {"contents": [{"uri": uri, "mimeType": "image/png", "blob": PNG}]}
        if uri == "test://watched-resource":
            return {"contents": [{"uri": uri, "mimeType": "text/plain", "text": "Watched."}]}
        match = TEMPLATE.fullmatch(uri) if isinstance(uri, str) else None
        if match is not None:
            ident = match.group(1)
            body = orjson.dumps({"id": ident, "templateTest": True, "data": f"Data for ID: {ident}"})
            return {"contents": [{"uri": uri, "mimeType": "application/json", "text": body.decode()}]}
        raise RpcError(-32602, "Resource not found", {"uri": uri})

    def subscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise RpcError(-32602, "uri must be a string")
        self.subscriptions.add(uri)
        return {}

    def unsubscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        self.subscriptions.discard(str(params.get("uri")))
        return {}

    # ---- the rest ---------------------------------------------------------------------------

    def ping(self, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    def set_level(self, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    def complete(self, params: dict[str, Any]) -> dict[str, Any]:
        argument = _object(params.get("argument"))
        prefix = str(argument.get("value", ""))
        values = [v for v in ("paris", "park", "party") if v.startswith(prefix)]
        return {"completion": {"values": values, "total": len(values), "hasMore": False}}


TOOL_HANDLERS = {
    "test_simple_text": Server.t_simple,
    "test_image_content": Server.t_image,
    "test_audio_content": Server.t_audio,
    "test_embedded_resource": Server.t_embedded,
    "test_multiple_content_types": Server.t_mixed,
    "test_tool_with_logging": Server.t_logging,
    "test_logging_tool": Server.t_logging,
    "test_error_handling": Server.t_error,
    "test_tool_with_progress": Server.t_progress,
    "test_sampling": Server.t_sampling,
    "test_elicitation": Server.t_elicitation,
    "test_elicitation_sep1034_defaults": Server.t_defaults,
    "test_elicitation_sep1330_enums": Server.t_enums,
    "test_streaming_elicitation": Server.t_streaming_elicitation,
    "test_missing_capability": Server.t_missing_capability,
    "test_reconnection": Server.t_reconnection,
    "test_trigger_tool_change": Server.t_trigger_tools,
    "test_trigger_prompt_change": Server.t_trigger_prompts,
    "test_update_resource": Server.t_update,
    "json_schema_2020_12_tool": Server.t_schema,
    "test_input_required_result_elicitation": Server.ir_elicitation,
    "test_input_required_result_sampling": Server.ir_sampling,
    "test_input_required_result_list_roots": Server.ir_roots,
    "test_input_required_result_request_state": Server.ir_confirm,
    "test_input_required_result_multiple_inputs": Server.ir_multiple,
    "test_input_required_result_multi_round": Server.ir_multi_round,
    "test_input_required_result_tampered_state": Server.ir_confirm,
    "test_input_required_result_capabilities": Server.ir_sampling,
    "greet": Server.t_greet,
    "slow_compute": Server.t_slow,
    "failing_job": Server.t_failing,
    "protocol_error_job": Server.t_protocol_error,
    "confirm_delete": Server.t_confirm_delete,
    "multi_input": Server.t_multi_input,
    "test_tool_with_task": Server.ir_elicitation,
}
# Calls that sleep or wait on the client run in their own thread; the rest answer inline.
BLOCKING = frozenset(TOOL_HANDLERS) - {"test_simple_text", "test_image_content", "test_audio_content",
                                        "test_embedded_resource", "test_multiple_content_types",
                                        "test_error_handling", "json_schema_2020_12_tool", "greet"}
BLOCKING_TOOLS_METHODS = frozenset({"tools/call", "prompts/get"})

HANDLERS = {
    "initialize": Server.initialize,
    "server/discover": Server.discover,
    "ping": Server.ping,
    "tools/list": Server.tools_list,
    "tools/call": Server.tools_call,
    "prompts/list": Server.prompts_list,
    "prompts/get": Server.prompts_get,
    "resources/list": Server.resources_list,
    "resources/templates/list": Server.templates_list,
    "resources/read": Server.resources_read,
    "resources/subscribe": Server.subscribe,
    "resources/unsubscribe": Server.unsubscribe,
    "logging/setLevel": Server.set_level,
    "completion/complete": Server.complete,
}


def main() -> None:
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        Server().serve()
    sys.exit(0)


if __name__ == "__main__":
    main()
