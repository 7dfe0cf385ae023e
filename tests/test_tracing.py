"""Traces across client → daemon → child (`[tracing]`): a real daemon exports with the real OTLP/HTTP
exporter to a real HTTP receiver in the test, which decodes what arrives with OpenTelemetry's own
protobuf classes; a test child answers with the `_meta` it received, so the context that reached
the child is checked, not assumed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .conftest import ECHO, Daemon, MakeDaemon, daemon_env, free_port, server_toml, wait_for
from .mcp_raw import RawSession
from .test_http import http_toml, modern_call, modern_headers

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"


class Collector:
    """An OTLP/HTTP traces endpoint: every exported span, decoded."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest.FromString(body)
                with collector.lock:
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            collector.spans.extend(_span(s) for s in scope.spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of_trace(self, trace_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [s for s in self.spans if s["trace_id"] == trace_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _span(span: Any) -> dict[str, Any]:
    attributes = {}
    for kv in span.attributes:
        value = kv.value
        attributes[kv.key] = getattr(value, value.WhichOneof("value"))
    return {"trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
            "parent": span.parent_span_id.hex(), "name": span.name, "kind": span.kind,
            "attributes": attributes, "error": span.status.code == 2}


SERVER_KIND, CLIENT_KIND = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind


@pytest.fixture
def collector() -> Iterator[Collector]:
    found = Collector()
    yield found
    found.close()


def traced_daemon(make_daemon: MakeDaemon, workdir: Path, collector: Collector | None, port: int) -> Daemon:
    tracing = (f'[tracing]\nenabled = true\nendpoint = "{collector.url}"\n' if collector else "")
    env = daemon_env(workdir, OTEL_BSP_SCHEDULE_DELAY="100")
    daemon = make_daemon(tracing + http_toml(port) + server_toml("echo", ECHO, "--meta-tool"), env=env)
    daemon.wait_state("echo", "ready")
    return daemon


def call_with_traceparent(port: int) -> dict[str, Any]:
    """The answer to a 2026-07-28 call of the echo child's `meta` tool whose `_meta` carries the
    client's TRACEPARENT."""
    call = modern_call(1, "meta", {})
    call["params"]["_meta"]["traceparent"] = TRACEPARENT
    reply = httpx.post(f"http://127.0.0.1:{port}/mcp/echo", headers=modern_headers("tools/call", "meta"),
                       json=call, timeout=30).json()
    assert isinstance(reply, dict), reply
    return reply


def meta_seen_by_child(reply: dict[str, Any]) -> dict[str, Any]:
    assert "result" in reply, reply
    return dict(json.loads(reply["result"]["content"][0]["text"]))


def test_a_trace_runs_from_the_client_through_the_daemon_into_the_child(
        make_daemon: MakeDaemon, workdir: Any, collector: Collector) -> None:
    """HTTP, 2026-07-28: the client's traceparent is the request span's parent, the request span is
    the child call's parent, and the child receives the child call span's own context."""
    port = free_port()
    traced_daemon(make_daemon, workdir, collector, port)
    reply = call_with_traceparent(port)
    child_meta = meta_seen_by_child(reply)
    version, trace_id, parent_of_child, flags = child_meta["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    def both_spans() -> list[dict[str, Any]] | None:
        found = collector.of_trace(TRACE_ID)
        return found if len(found) >= 2 else None

    spans = wait_for(both_spans, 15, what="both spans exported")
    request = next(s for s in spans if s["kind"] == SERVER_KIND)
    child = next(s for s in spans if s["kind"] == CLIENT_KIND)
    assert request["parent"] == CLIENT_SPAN
    assert child["parent"] == request["span_id"]
    assert child["span_id"] == parent_of_child
    assert request["name"] == child["name"] == "tools/call meta"
    assert request["attributes"]["mcp.method.name"] == "tools/call"
    assert request["attributes"]["gen_ai.tool.name"] == "meta"
    assert request["attributes"]["jsonrpc.request.id"] == "1"
    assert request["attributes"]["network.transport"] == "tcp"
    assert request["attributes"]["mcp.protocol.version"] == "2026-07-28"
    assert child["attributes"]["server.address"] == "echo"
    assert not request["error"] and not child["error"]


def test_a_session_call_and_a_tool_error_are_traced_too(
        make_daemon: MakeDaemon, workdir: Any, collector: Collector) -> None:
    """Over the control socket (what `mcpctl connect` hands its client to), with no traceparent
    from the client: a new trace starts at the daemon; a tool's isError marks both spans."""
    daemon = traced_daemon(make_daemon, workdir, collector, free_port())
    with RawSession(daemon.socket, "echo") as raw:
        raw.initialize()
        reply = raw.call_tool("fail", {"message": "no"}, msg_id=7)
        assert reply["result"]["isError"] is True
        traced = raw.call_tool("meta", {}, msg_id=8)
    trace_id = meta_seen_by_child(traced)["traceparent"].split("-")[1]
    spans = wait_for(lambda: [s for s in collector.spans if s["name"] == "tools/call fail"
                              and s["kind"] == SERVER_KIND], 15, what="the failing call's span")
    failing = spans[0]
    assert failing["error"] and failing["attributes"]["error.type"] == "tool_error"
    assert failing["attributes"]["network.transport"] == "pipe"
    assert failing["parent"] == ""  # the daemon started this trace
    assert len(wait_for(lambda: collector.of_trace(trace_id), 15, what="the meta call's spans")) >= 1


def test_with_tracing_off_the_clients_context_reaches_the_child_untouched(
        make_daemon: MakeDaemon, workdir: Any) -> None:
    port = free_port()
    traced_daemon(make_daemon, workdir, None, port)
    reply = call_with_traceparent(port)
    assert meta_seen_by_child(reply)["traceparent"] == TRACEPARENT


def test_a_traced_memory_cache_hit_ends_its_span_with_the_stored_answer(
        make_daemon: MakeDaemon, workdir: Any, collector: Collector) -> None:
    """A session call answered from the memory cache is traced like any other: its request span
    ends with the answer (the hit hands a traced session the result as a value, not only its
    line), the answer is the first one under the new id, and only the miss reached the child."""
    env = daemon_env(workdir, OTEL_BSP_SCHEDULE_DELAY="100")
    daemon = make_daemon(f'[tracing]\nenabled = true\nendpoint = "{collector.url}"\n'
                         + server_toml("echo", ECHO) + '[servers.echo.cache]\ntools = ["echo"]\n', env=env)
    daemon.wait_state("echo", "ready")
    with RawSession(daemon.socket, "echo") as raw:
        raw.initialize()
        first = raw.call_tool("echo", {"text": "traced"}, msg_id=1)
        again = raw.call_tool("echo", {"text": "traced"}, msg_id="two")
    assert "result" in first, first
    assert again == {"jsonrpc": "2.0", "id": "two", "result": first["result"]}

    def echo_spans() -> list[dict[str, Any]] | None:
        found = [s for s in collector.spans if s["name"] == "tools/call echo"]
        return found if len([s for s in found if s["kind"] == SERVER_KIND]) >= 2 else None

    spans = wait_for(echo_spans, 15, what="both request spans exported")
    requests = [s for s in spans if s["kind"] == SERVER_KIND]
    assert sorted(s["attributes"]["jsonrpc.request.id"] for s in requests) == ["1", "two"]
    assert not any(s["error"] for s in requests)
    assert len([s for s in spans if s["kind"] == CLIENT_KIND]) == 1, "the hit must not call the child"
