"""Hypothesis strategies for hostile peers: valid JSON, wrong in type, shape, id, depth and size.

Every strategy here builds bytes a peer could send (a line without its newline) together with
what a correct daemon owes for it (`Line.expects`: the id a response must carry), so a door driver
can check "answered, with the right id" without re-deriving it. Depth beyond what orjson encodes
(255) and big sizes cannot come from Hypothesis' own value generation cheaply, so values carry
markers (`"@@deep:N:KIND@@"`) that `encode` expands into the nested text after encoding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import strategies as st

INT64 = st.integers(-(2**63), 2**63 - 1)
DEPTHS = (3, 64, 200, 254, 255, 256, 300, 1000, 5000)
SIZES = (0, 1, 100, 4096, 65536, 1 << 20)
NOT_ANSWERABLE_DEPTH = 200  # beyond this a correct daemon may refuse the line without its id

_DEEP = re.compile(rb'"@@deep:(\d+):(list|dict)@@"')
_BIG_RUN = re.compile(rb"x{50,}")
_DEEP_RUN = re.compile(rb'\[{20,}|\]{20,}|(?:\{"a":){20,}|\}{20,}')


def deep_text(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"0" + b"]" * depth
    return b'{"a":' * depth + b"0" + b"}" * depth


def encode(value: Any) -> bytes:
    """orjson text of `value`, with every deep marker expanded into real nesting."""
    raw = orjson.dumps(value)
    return _DEEP.sub(lambda m: deep_text(int(m.group(1)), m.group(2).decode()), raw)


def max_depth(line: bytes) -> int:
    """Nesting depth of a JSON text (strings skipped), without parsing it."""
    depth = best = 0
    in_string = escaped = False
    for byte in line:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            best = max(best, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return best


class Line:
    """One line a peer sends. `expects`: the id its response must carry (None: nothing owed).
    (Not a dataclass: Hypothesis prints dataclass fields in full, and lines can be megabytes.)"""

    __slots__ = ("data", "expects")

    def __init__(self, data: bytes, expects: Any = None) -> None:
        self.data = data
        self.expects = expects

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Line) and (self.data, self.expects) == (other.data, other.expects)

    def __hash__(self) -> int:
        return hash(self.data)

    def __repr__(self) -> str:
        shown = _DEEP_RUN.sub(lambda m: b"<%d x %s>" % (len(m.group(0)), m.group(0)[:2]), self.data)
        shown = _BIG_RUN.sub(lambda m: b"<%d x %s>" % (len(m.group(0)), m.group(0)[:1]), shown)
        if len(shown) > 300:
            shown = shown[:300] + b"...(%d bytes)" % len(self.data)
        return f"Line({shown!r}, expects={self.expects!r})"


# ---- values ---------------------------------------------------------------------------------------

deep_markers = st.builds(lambda d, k: f"@@deep:{d}:{k}@@", st.sampled_from(DEPTHS),
                         st.sampled_from(("list", "dict")))
big_strings = st.sampled_from(SIZES).map(lambda n: "x" * n)
leaves = st.one_of(
    st.none(), st.booleans(), INT64, st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12), big_strings, deep_markers)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10)
not_objects = st.one_of(st.none(), st.booleans(), INT64, st.text(max_size=8),
                        st.lists(leaves, max_size=3), deep_markers)

valid_ids = st.one_of(st.integers(-(2**53), 2**53), st.text(max_size=16))
invalid_ids = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
                        st.lists(leaves, max_size=2),
                        st.dictionaries(st.text(max_size=4), leaves, max_size=2),
                        deep_markers)
any_ids = st.one_of(valid_ids, invalid_ids)


def params_for(keys: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Params that are mostly the right container with wrong-typed members, sometimes not an object."""
    members = st.fixed_dictionaries({}, optional={k: st.one_of(v, json_values) for k, v in keys.items()})
    extra = st.dictionaries(st.text(max_size=8), json_values, max_size=2)
    return st.one_of(members, st.builds(lambda a, b: {**b, **a}, members, extra), not_objects)


def _is_valid_id(value: Any) -> bool:
    if isinstance(value, str):
        return "@@deep:" not in value  # a marker: on the wire it is a nested array or object
    return isinstance(value, int) and not isinstance(value, bool)


def _line(message: Any) -> Line:
    data = encode(message)
    owed = (isinstance(message, dict) and message.get("jsonrpc") == "2.0"
            and isinstance(message.get("method"), str) and "id" in message
            and _is_valid_id(message["id"]) and max_depth(data) <= NOT_ANSWERABLE_DEPTH)
    return Line(data, message["id"] if owed else None)


@st.composite
def requests(draw: st.DrawFn, methods: dict[str, st.SearchStrategy[Any]],
             ids: st.SearchStrategy[Any] = any_ids) -> Line:
    """A request (or notification) for one of `methods` (name → params strategy) or a stranger."""
    known = sorted(methods)
    method = draw(st.one_of(st.sampled_from(known), st.text(max_size=20), not_objects)
                  if known else st.text(max_size=20))
    message: dict[str, Any] = {}
    jsonrpc = draw(st.sampled_from(("2.0", "2.0", "2.0", "1.0", None, 2)))
    if jsonrpc is not None:
        message["jsonrpc"] = jsonrpc
    if draw(st.integers(0, 5)):
        message["id"] = draw(ids)
    message["method"] = method
    strategy = methods.get(method) if isinstance(method, str) else None
    if strategy is not None or draw(st.booleans()):
        message["params"] = draw(strategy if strategy is not None else json_values)
    return _line(message)


@st.composite
def responses(draw: st.DrawFn, ids: st.SearchStrategy[Any] = any_ids) -> Line:
    """A response nobody asked for, or with a wrong shape: result and error both, neither, odd error."""
    message: dict[str, Any] = {"jsonrpc": "2.0"}
    if draw(st.integers(0, 5)):
        message["id"] = draw(ids)
    shape = draw(st.sampled_from(("result", "error", "both", "neither")))
    if shape in ("result", "both"):
        message["result"] = draw(json_values)
    if shape in ("error", "both"):
        message["error"] = draw(st.one_of(
            st.fixed_dictionaries({"code": st.one_of(INT64, json_values), "message": json_values},
                                  optional={"data": json_values}),
            not_objects))
    return Line(encode(message))


junk = st.one_of(
    st.binary(max_size=64).map(lambda b: b.replace(b"\n", b" ")),
    st.sampled_from((b"{", b"[1,", b'{"jsonrpc":"2.0","id":1,', b"\xff\xfe", b"null", b"[]", b"[{}]", b"   ",
                     b'"\\ud800"')),
).map(Line)
any_json_line = json_values.map(lambda v: Line(encode(v)))


def lines(methods: dict[str, st.SearchStrategy[Any]], ids: st.SearchStrategy[Any] = any_ids
          ) -> st.SearchStrategy[Line]:
    """One hostile line for a door that knows `methods`: mostly requests, some answers and junk."""
    return st.one_of(requests(methods, ids), requests(methods, ids), responses(ids), junk, any_json_line)


# ---- what each door knows -------------------------------------------------------------------------

names = st.one_of(st.sampled_from(("target", "hostile", "nope", "")), not_objects)
# Lifecycle methods only ever get selections that select nothing real (unknown names, falsy `all`):
# stopping the bystander is a legitimate command, not a failure of the daemon.
harmless_selection = {
    "servers": st.one_of(st.lists(st.sampled_from(("nope", "", "x" * 300)), max_size=3), not_objects),
    "all": st.sampled_from((False, 0, None, "", [], {})),
    "wait": json_values,
}
CONTROL_METHODS: dict[str, st.SearchStrategy[Any]] = {
    "supervisor/status": params_for({"servers": st.one_of(st.lists(names, max_size=3), not_objects)}),
    "supervisor/logs": params_for({"server": names, "lines": json_values}),
    "supervisor/tools": params_for({"server": names}),
    "supervisor/call": params_for({
        "server": names,
        "tool": st.one_of(st.sampled_from(("echo", "add", "fail", "pid", "nope")), json_values),
        "arguments": json_values,
        "timeout": st.one_of(st.sampled_from((0, -1, 0.001, 1, "1", None, [1])), json_values)}),
    "supervisor/events": params_for({"logs": json_values, "tail": json_values}),
    "supervisor/metrics": params_for({}),
    "supervisor/cache/clear": params_for({"server": names}),
    "supervisor/start": params_for(harmless_selection),
    "supervisor/stop": params_for(harmless_selection),
    "supervisor/restart": params_for(harmless_selection),
}
ATTACH_PARAMS = params_for({
    "server": st.one_of(st.sampled_from(("target", "hostile", "nope")), not_objects),
    "client": json_values,
    "all": st.one_of(st.booleans(), json_values),
    "pipes": json_values,
})

PV = "io.modelcontextprotocol/protocolVersion"
CAPS = "io.modelcontextprotocol/clientCapabilities"
meta = st.one_of(
    st.fixed_dictionaries({}, optional={
        PV: st.one_of(st.sampled_from(("2026-07-28", "2025-06-18", "1999-01-01")), json_values),
        CAPS: json_values, "progressToken": json_values,
        "io.modelcontextprotocol/clientInfo": json_values}),
    not_objects)
TOOLS = ("echo", "add", "fail", "pid", "sleep", "calls", "cancelled", "notify", "nope")
_sleep_args = st.fixed_dictionaries({"seconds": st.sampled_from((0, 0.01, 0.1, "x", -1, None))})
SESSION_METHODS: dict[str, st.SearchStrategy[Any]] = {
    "initialize": params_for({"protocolVersion": st.one_of(st.sampled_from(
        ("2025-06-18", "2024-11-05", "2026-07-28", "")), json_values),
        "capabilities": json_values, "clientInfo": json_values, "_meta": meta}),
    "server/discover": params_for({"_meta": meta}),
    "ping": params_for({"_meta": meta}),
    "tools/list": params_for({"cursor": json_values, "_meta": meta}),
    "tools/call": params_for({"name": st.one_of(st.sampled_from(TOOLS), json_values),
                              "arguments": st.one_of(_sleep_args, json_values), "_meta": meta}),
    "prompts/list": params_for({"cursor": json_values}),
    "prompts/get": params_for({"name": st.one_of(st.sampled_from(("greet", "plain")), json_values),
                               "arguments": json_values}),
    "resources/list": params_for({"cursor": json_values}),
    "resources/read": params_for({"uri": st.one_of(st.sampled_from(
        ("test://hello", "test://echo/" + "a/" * 1500, "test://echo/x")), json_values)}),
    "resources/templates/list": params_for({}),
    "resources/subscribe": params_for({"uri": json_values}),
    "logging/setLevel": params_for({"level": json_values}),
    "completion/complete": params_for({"ref": json_values, "argument": json_values}),
    "notifications/initialized": params_for({}),
    "notifications/cancelled": params_for({"requestId": any_ids, "reason": json_values}),
    "notifications/progress": params_for({"progressToken": json_values, "progress": json_values}),
    "notifications/roots/list_changed": params_for({}),
}

# What a child may send the daemon: answers (to ids it was or was not asked), notifications with odd
# params, requests of its own (sampling, roots, elicitation) with odd ids.
CHILD_IDS = st.one_of(st.integers(0, 40), valid_ids, invalid_ids)
CHILD_METHODS: dict[str, st.SearchStrategy[Any]] = {
    "notifications/progress": params_for({"progressToken": st.one_of(st.integers(0, 40), json_values),
                                          "progress": json_values, "total": json_values}),
    "notifications/message": params_for({"level": st.one_of(st.sampled_from(("info", "error")),
                                                            json_values),
                                         "logger": json_values, "data": json_values}),
    "notifications/tools/list_changed": params_for({}),
    "notifications/resources/list_changed": params_for({}),
    "notifications/prompts/list_changed": params_for({}),
    "notifications/resources/updated": params_for({"uri": json_values, "_meta": json_values}),
    "notifications/cancelled": params_for({"requestId": CHILD_IDS, "reason": json_values}),
    "notifications/subscriptions/acknowledged": params_for({"_meta": st.fixed_dictionaries(
        {"io.modelcontextprotocol/subscriptionId": json_values})}),
    "sampling/createMessage": params_for({"messages": json_values, "maxTokens": json_values}),
    "roots/list": params_for({}),
    "elicitation/create": params_for({"message": json_values, "requestedSchema": json_values}),
    "ping": params_for({}),
}
# Wrong-shaped results the daemon asks for itself: lists (tools with non-object items...), calls.
LIST_RESULTS = {
    "tools/list": "tools", "prompts/list": "prompts", "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
}


# ---- whole examples, one per door -------------------------------------------------------------------

session_lines = lines(SESSION_METHODS)
control_lines = st.lists(lines(CONTROL_METHODS), min_size=1, max_size=6)
attach_examples = st.tuples(
    st.builds(lambda p, i: _line({"jsonrpc": "2.0", "id": i, "method": "supervisor/attach", "params": p}),
              ATTACH_PARAMS, valid_ids),
    st.lists(session_lines, max_size=5))
_initialize = Line(orjson.dumps({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {"sampling": {}},
    "clientInfo": {"name": "fuzz", "version": "1"}}}), "init")
connect_examples = st.builds(lambda init, rest: ([_initialize] if init else []) + rest,
                             st.booleans(), st.lists(session_lines, min_size=1, max_size=5))


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: Line


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
paths = st.sampled_from(("/mcp/target", "/mcp/target", "/mcp", "/mcp/nope", "/mcp/hostile", "/mcp/",
                         "/mcp/target/extra"))
auth = st.sampled_from(("good",) * 8 + ("missing", "wrong", "lowercase"))


def auth_header(kind: str, token: str) -> list[tuple[str, str]]:
    return {"good": [("Authorization", f"Bearer {token}")], "missing": [],
            "wrong": [("Authorization", "Bearer nope")],
            "lowercase": [("authorization", f"bearer {token}")]}[kind]


@st.composite
def legacy_http_examples(draw: st.DrawFn) -> tuple[str, str, Any, list[tuple[str, str, Line]], bool]:
    """(path, auth, initialize params, [(session-id kind, accept, line)], delete at the end)."""
    path = draw(paths)
    init_params = draw(st.one_of(
        st.just({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "f"}}),
        SESSION_METHODS["initialize"]))
    steps = draw(st.lists(st.tuples(
        st.sampled_from(("real",) * 6 + ("missing", "random", "other-path")),
        st.sampled_from(("application/json, text/event-stream",) * 4 + ("text/event-stream",
                        "application/json", "text/html", "")),
        session_lines), min_size=1, max_size=4))
    return path, draw(auth), init_params, steps, draw(st.integers(0, 9)) > 0


@st.composite
def modern_http_requests(draw: st.DrawFn) -> HttpRequest:
    """A 2026-07-28 stateless POST: envelope, Mcp-Method and Mcp-Name right, wrong or missing."""
    method = draw(st.one_of(st.sampled_from([*sorted(SESSION_METHODS), "subscriptions/listen"]),
                            st.text(max_size=12)))
    strategy = SESSION_METHODS.get(method)
    params = draw(strategy) if strategy is not None else draw(st.one_of(st.just({}), json_values))
    envelope = draw(st.sampled_from(("good",) * 5 + ("missing", "wrong-version", "odd")))
    if isinstance(params, dict) and envelope != "missing":
        given_meta = params.get("_meta")
        meta: dict[str, Any] = given_meta if isinstance(given_meta, dict) else {}
        if envelope == "good":
            meta = {**meta, PV: "2026-07-28", CAPS: {}}
        elif envelope == "wrong-version":
            meta = {**meta, PV: "2025-06-18", CAPS: {}}
        else:
            meta = {**meta, PV: draw(json_values), CAPS: draw(json_values)}
        params = {**params, "_meta": meta}
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if draw(st.integers(0, 7)):
        message["id"] = draw(any_ids)
    line = _line(message)
    headers = auth_header(draw(auth), "__TOKEN__")
    version = draw(st.sampled_from(("2026-07-28",) * 6 + ("2025-06-18", "2099-01-01", "")))
    if version or draw(st.booleans()):
        headers.append(("MCP-Protocol-Version", version))
    mcp_method = draw(st.sampled_from(("body",) * 5 + ("missing", "other")))
    if mcp_method == "body":
        headers.append(("Mcp-Method", method.encode("ascii", "replace").decode()))
    elif mcp_method == "other":
        headers.append(("Mcp-Method", draw(header_text)))
    name_key = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}.get(method)
    name = params.get(name_key) if isinstance(params, dict) and name_key else None
    name_kind = draw(st.sampled_from(("body", "body", "b64", "missing", "other")))
    if name_kind in ("body", "b64") and isinstance(name, str):
        if name_kind == "b64" or not name.isascii() or not name.isprintable():
            from .fuzzing import b64_name
            headers.append(("Mcp-Name", b64_name(name)))
        else:
            headers.append(("Mcp-Name", name))
    elif name_kind == "other":
        headers.append(("Mcp-Name", draw(st.one_of(header_text, st.just("=?base64?!!!?=")))))
    headers.append(("Accept", draw(st.sampled_from(("application/json, text/event-stream",) * 4
                                                   + ("text/event-stream", "application/json", "")))))
    content_types = ("application/json",) * 8 + ("text/plain", "application/json; charset=utf-8")
    headers.append(("Content-Type", draw(st.sampled_from(content_types))))
    return HttpRequest("POST", draw(paths), tuple(headers), line)


modern_http_examples = st.lists(modern_http_requests(), min_size=1, max_size=4)


@dataclass(frozen=True)
class ChildWrite:
    """The hostile child writes this line on its stdout, unasked."""

    line: Line


@dataclass(frozen=True)
class ChildAnswer:
    """The hostile child answers the next `method` request with `line` (id filled in), and the test
    makes the daemon send that request (`via`: list_changed, a session request, a control call)."""

    method: str
    line: bytes
    via: str


def _result_line(result: Any) -> bytes:
    return encode({"jsonrpc": "2.0", "id": "__ID__", "result": result})


wrong_items = st.lists(st.one_of(not_objects, st.dictionaries(
    st.sampled_from(("name", "uri", "uriTemplate", "inputSchema", "description")), json_values,
    max_size=3)), max_size=4)


@st.composite
def child_answers(draw: st.DrawFn) -> ChildAnswer:
    method = draw(st.sampled_from((*sorted(LIST_RESULTS), "tools/call", "ping")))
    if method in LIST_RESULTS:
        key = LIST_RESULTS[method]
        result = draw(st.one_of(
            st.builds(lambda items, cursor: {key: items, **cursor}, wrong_items,
                      st.one_of(st.just({}), st.fixed_dictionaries({"nextCursor": json_values}))),
            st.builds(lambda v: {key: v}, not_objects), json_values))
    else:
        result = draw(st.one_of(
            st.fixed_dictionaries({"content": st.one_of(not_objects, wrong_items)}), json_values,
            deep_markers.map(lambda d: {"content": [{"type": "text", "text": "x"}], "deep": d})))
    line = draw(st.one_of(st.just(_result_line(result)),
                          responses(st.just("__ID__")).map(lambda r: r.data)))
    if method == "tools/list":
        via = draw(st.sampled_from(("list_changed", "session")))
    elif method == "tools/call":
        via = draw(st.sampled_from(("control", "session")))
    else:
        via = "session"
    return ChildAnswer(method, line, via)


child_examples = st.lists(st.one_of(
    lines(CHILD_METHODS, CHILD_IDS).map(ChildWrite), lines(CHILD_METHODS, CHILD_IDS).map(ChildWrite),
    child_answers()), min_size=1, max_size=5)

DOOR_EXAMPLES: dict[str, st.SearchStrategy[Any]] = {
    "control socket": control_lines,
    "control attach": attach_examples,
    "mcpctl connect": connect_examples,
    "http legacy": legacy_http_examples(),
    "http 2026-07-28": modern_http_examples,
    "child stdout": child_examples,
}
