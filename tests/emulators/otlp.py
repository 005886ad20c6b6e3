"""An OTLP/HTTP trace receiver, as an OpenTelemetry collector is one.

OTLP/HTTP (opentelemetry.io/docs/specs/otlp/#otlphttp): a client POSTs an
`ExportTraceServiceRequest` as binary protobuf (`Content-Type: application/x-protobuf`,
optionally gzip-compressed) to `/v1/traces`; the receiver answers 200 with an
`ExportTraceServiceResponse` in the same encoding. Other paths are 404, other content
types 415. The request is decoded with opentelemetry-proto (installed with the OTLP
exporter) and each span kept as a `ReceivedSpan`.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from .server import EmulatorServer, Fault, retry_headers

__all__ = ["OtlpReceiver", "ReceivedSpan"]

PROTOBUF = "application/x-protobuf"
# opentelemetry-proto's Span.SpanKind numbers.
KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUSES = {0: "UNSET", 1: "OK", 2: "ERROR"}


@dataclass(frozen=True, slots=True)
class ReceivedSpan:
    """One span as the receiver decoded it; ids as lower-case hex."""

    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    name: str
    kind: str
    attributes: dict[str, Any]
    status: str
    status_message: str
    resource: dict[str, Any]


class OtlpReceiver(EmulatorServer):
    """Collects the spans POSTed to /v1/traces; `fail_next` makes it fail exports."""

    name = "otlp"
    auto_decompress = False  # gzip bodies are checked, and inflated, here

    def __init__(self) -> None:
        super().__init__()
        self._spans: list[ReceivedSpan] = []
        self._spans_lock = threading.Lock()

    @property
    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far, in the order they arrived."""
        with self._spans_lock:
            return list(self._spans)

    def reset(self) -> None:
        super().reset()
        with self._spans_lock:
            self._spans.clear()

    async def _dispatch(
        self, request: web.Request, raw: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        if request.method != "POST" or request.path != "/v1/traces":
            return web.Response(status=404)
        if request.content_type != PROTOBUF:
            return web.Response(status=415)
        if request.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        export = ExportTraceServiceRequest.FromString(raw)
        received = [
            _span(span, _attributes(resource_spans.resource.attributes))
            for resource_spans in export.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._spans_lock:
            self._spans.extend(received)
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type=PROTOBUF)

    def _status_fault(self, request: web.Request, fault: Fault) -> web.Response:
        return web.Response(status=fault.status or 503, headers=retry_headers(fault.retry_after))


def _span(span: Any, resource: dict[str, Any]) -> ReceivedSpan:
    return ReceivedSpan(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        name=span.name,
        kind=KINDS.get(span.kind, str(span.kind)),
        attributes=_attributes(span.attributes),
        status=STATUSES.get(span.status.code, str(span.status.code)),
        status_message=span.status.message,
        resource=resource,
    )


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind is not None else None
