"""OpenTelemetry traces across client → daemon → child (`[tracing]`, the optional `otel` extra).

Two spans per call, named and attributed as the OpenTelemetry semantic conventions for MCP say
(`{mcp.method.name} {target}`; `mcp.method.name`, `jsonrpc.request.id`, `mcp.session.id`,
`gen_ai.tool.name`, `error.type`, ...):

- a SERVER span for the client's request, from the moment a front door routes it to the moment its
  answer is handed back (a cache hit or a refusal is a request span with no child below it);
- a CLIENT span for the daemon's call to a child, from the line written to its stdin to the answer,
  the timeout, the cancellation or the crash that ended it.

Context travels the way MCP carries it, in `params._meta`: the W3C `traceparent`/`tracestate` a
client sends become the request span's parent, and the child receives the CLIENT span's own, so a
trace runs client → balancer → daemon → child with every hop in it.

Off by default, and free when off: `active` is None and the hot path pays one load and one
comparison per request. Nothing here imports OpenTelemetry until `configure` is called, so the
daemon runs without the extra installed.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supervisor.config import TracingSettings

log = logging.getLogger("mcp_supervisor.tracing")

# Targets that are low-cardinality names (the conventions' advice for span names).
_TARGET = {"tools/call": "name", "prompts/get": "name"}


class Tracing:
    """One tracer and the few operations the daemon needs of it."""

    def __init__(self, settings: TracingSettings) -> None:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace = trace
        self.provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
        # The batch processor exports from its own thread: the event loop never waits on the
        # collector, and a collector that is down costs dropped spans, not calls.
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.endpoint)))
        self.tracer = self.provider.get_tracer("mcp-supervisor")
        self.propagator = TraceContextTextMapPropagator()
        self._server_kind = trace.SpanKind.SERVER
        self._client_kind = trace.SpanKind.CLIENT

    def request_span(self, message: dict[str, Any], session: str | None, transport: str) -> Any:
        """Start the SERVER span of a client's request (parent: the client's `traceparent`)."""
        params = message.get("params")
        meta = params.get("_meta") if params.__class__ is dict else None
        parent = self.propagator.extract(_carrier(meta)) if meta.__class__ is dict else None
        method = message["method"]
        attributes = _attributes(method, params, message.get("id"))
        if session is not None:
            # The conventions ask for the session id; a hash of it, so the id (a bearer of the
            # session) never reaches a trace backend.
            attributes["mcp.session.id"] = hashlib.sha256(session.encode()).hexdigest()[:16]
        attributes["network.transport"] = transport
        return self.tracer.start_span(_span_name(method, params), context=parent,
                                      kind=self._server_kind, attributes=attributes)

    def child_span(self, message: dict[str, Any], server: str) -> Any:
        """Start the CLIENT span of a call to a child, under the request span whose context the
        message carries; the message then carries this span's context to the child."""
        params = message["params"]
        meta = params["_meta"]
        parent = self.propagator.extract(_carrier(meta))
        method = message["method"]
        attributes = _attributes(method, params, message.get("id"))
        attributes["server.address"] = server
        attributes["network.transport"] = "pipe"
        span = self.tracer.start_span(_span_name(method, params), context=parent,
                                      kind=self._client_kind, attributes=attributes)
        self.inject(span, meta)
        return span

    def inject(self, span: Any, meta: dict[str, Any]) -> None:
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=self._trace.set_span_in_context(span))
        meta.pop("tracestate", None)
        meta.update(carrier)

    def end(self, span: Any, answer: dict[str, Any] | None, error_type: str | None = None) -> None:
        """End a span with what ended the call: an answer (its error, or a tool's `isError`), or
        `error_type` when there is no answer (timeout, cancelled, gone)."""
        if error_type is None and answer is not None:
            error = answer.get("error")
            if error.__class__ is dict:
                error_type = str(error.get("code"))
                span.set_attribute("rpc.response.status_code", error_type)
            else:
                result = answer.get("result")
                if result.__class__ is dict and result.get("isError") is True:
                    error_type = "tool_error"
        if error_type is not None:
            span.set_attribute("error.type", error_type)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        span.end()

    def shutdown(self) -> None:
        """Export what is buffered (bounded by the SDK's own export timeout)."""
        self.provider.shutdown()


def _carrier(meta: dict[str, Any]) -> dict[str, str]:
    return {key: value for key in ("traceparent", "tracestate")
            if isinstance(value := meta.get(key), str) and len(value) <= 512}


def _span_name(method: str, params: Any) -> str:
    key = _TARGET.get(method)
    target = params.get(key) if key is not None and params.__class__ is dict else None
    return f"{method} {target[:128]}" if isinstance(target, str) else method


def _attributes(method: str, params: Any, request_id: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {"mcp.method.name": method}
    if request_id is not None:
        attributes["jsonrpc.request.id"] = str(request_id)[:128]
    if params.__class__ is dict:
        name = params.get("name")
        if method == "tools/call" and isinstance(name, str):
            attributes["gen_ai.tool.name"] = name[:128]
            attributes["gen_ai.operation.name"] = "execute_tool"
        elif method == "prompts/get" and isinstance(name, str):
            attributes["gen_ai.prompt.name"] = name[:128]
        uri = params.get("uri")
        if method.startswith("resources/") and isinstance(uri, str):
            attributes["mcp.resource.uri"] = uri[:1024]
        meta = params.get("_meta")
        if meta.__class__ is dict:
            version = meta.get("io.modelcontextprotocol/protocolVersion")
            if isinstance(version, str):
                attributes["mcp.protocol.version"] = version[:32]
    return attributes


active: Tracing | None = None
"""The daemon's tracing, when `[tracing] enabled`; None otherwise (and in every test that does not
ask for it)."""


def configure(settings: TracingSettings) -> Tracing | None:
    global active
    if not settings.enabled:
        active = None
        return None
    # The SDK's own log (an unreachable collector is a warning per retry) goes through ours, and
    # only its errors: one line per failed batch, never one per span.
    otel_log = logging.getLogger("opentelemetry")
    otel_log.handlers[:] = list(logging.getLogger("mcp_supervisor").handlers)
    otel_log.setLevel(logging.ERROR)
    otel_log.propagate = False
    try:
        active = Tracing(settings)
    except ImportError as exc:
        log.warning("[tracing] is enabled but OpenTelemetry is not installed (%s): "
                    "pip install 'mcp-supervisor[otel]'; tracing is off", exc)
        active = None
    else:
        log.info("tracing: OTLP spans to %s", settings.endpoint)
    return active
