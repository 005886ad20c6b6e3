"""The config's span exporters: they take tracing.py's span records from the batch
processor's thread, and encode them there.

OpenTelemetry's OTLP exporter encodes `ReadableSpan`s through `encode_spans`, which
builds a protobuf object per span, attribute and value: ~260,000 CPU instructions a span
(callgrind, SDK 1.45), two spans a proxy call: a fifth of what serving a small answer
costs, paid in the exporter's thread but under the same GIL. Our spans are a dozen
scalar attributes; `encode_records` writes their protobuf fields directly, at a fraction
of that. Everything else stays OpenTelemetry's: `OtlpRecordExporter` is its OTLP/HTTP
exporter (endpoint, headers, timeout, compression, certificates, retries), sending
these bytes; the batch processor (queue, batches, `OTEL_BSP_*`, shutdown) feeds it.

A record with an attribute value that is not a str, bool, int or float, and an SDK
whose exporter is not laid out as 1.39+'s (`_client`), go through OpenTelemetry's own
encoder, as `ReadableSpan`s. The tests compare both encoders' messages.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from prismgate._version import __version__
from prismgate.observability.span_records import ReadableSpans, is_remote

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from prismgate.observability.span_records import SpanRecord

__all__ = ["OtlpRecordExporter", "RecordEncoder", "RecordExporter", "encode_records"]

# Span fields (trace.proto), each with its tag: trace_id (1) and span_id (2), bytes.
_IDS = struct.Struct(">HQQHQ").pack
_PARENT = struct.Struct(">HQ").pack  # parent_span_id (4)
_TIMES = struct.Struct("<BQBQ").pack  # start_time_unix_nano (7), end_.. (8): fixed64
_KINDS = (b"\x30\x01", b"\x30\x02", b"\x30\x03")  # kind (6): INTERNAL, SERVER, CLIENT
_UNSET = b"\x7a\x00"  # status (15), empty: UNSET
_ERROR = b"\x18\x02"  # Status.code (3): ERROR
# flags (16, fixed32): the parent's is_remote is known (0x100), and it is remote (0x200).
_LOCAL_PARENT = b"\x85\x01\x00\x01\x00\x00"
_REMOTE_PARENT = b"\x85\x01\x00\x03\x00\x00"
_MASK_64 = (1 << 64) - 1
_PACK_DOUBLE = struct.Struct("<d").pack
# Encoded names and attributes an encoder keeps (each cache emptied when it is full).
_CACHED = 4096
# The tag and length of each length-delimited field shorter than 128 bytes.
_HEADS = {
    tag: [bytes((tag, size)) for size in range(0x80)]
    for tag in (0x0A, 0x12, 0x1A, 0x2A, 0x4A, 0x7A)
}


class OtlpRecordExporter(OTLPSpanExporter):
    """OpenTelemetry's OTLP/HTTP span exporter, taking span records: the request
    encoded by `encode_records`, for `provider`'s resource."""

    def __init__(self, provider: TracerProvider, **options: Any) -> None:
        super().__init__(**options)
        self._provider = provider
        self._readable = ReadableSpans(provider)
        self._encoder = RecordEncoder()

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        records: Sequence[SpanRecord] = spans
        client: Any = getattr(self, "_client", None)
        data = None
        if client is not None and not self._shutdown:
            data = self._encoder.encode(records, self._provider.resource)
        if data is None:  # what `encode_records` does not cover: OpenTelemetry's encoder
            return super().export([self._readable.of(record) for record in records])
        sent = client.export(data).success
        return SpanExportResult.SUCCESS if sent else SpanExportResult.FAILURE


class RecordExporter(SpanExporter):
    """`exporter` (the console's), taking span records: `ReadableSpan`s made of them."""

    def __init__(self, exporter: SpanExporter, provider: TracerProvider) -> None:
        self._exporter = exporter
        self._readable = ReadableSpans(provider)

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return self._exporter.export([self._readable.of(record) for record in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


class RecordEncoder:
    """Writes span records as an OTLP `ExportTraceServiceRequest`. Span names and
    attributes repeat (a model's name, a status): their encoded fields are kept, bounded,
    by the encoder (one an exporter, used from its batch thread only)."""

    def __init__(self) -> None:
        self._names: dict[str, bytes] = {}
        # By field tag, then by the value's type (1, 1.0 and True are equal as keys).
        self._fields: dict[int, dict[type, dict[tuple[str, Any], bytes]]] = {}

    def encode(self, records: Sequence[SpanRecord], resource: Resource) -> bytes | None:
        """`records` (ended, sampled), serialized, for `resource`; None when an
        attribute holds what this does not encode."""
        spans = []
        for record in records:
            encoded = self._span(record)
            if encoded is None:
                return None
            spans.append(encoded)
        resource_attributes = self._attributes(0x0A, resource.attributes)
        if resource_attributes is None:
            return None
        body = _len(0x0A, resource_attributes) + _len(0x12, _SCOPE + b"".join(spans))
        if resource.schema_url:
            body += _len(0x1A, resource.schema_url.encode())
        return _len(0x0A, body)

    def _span(self, record: SpanRecord) -> bytes | None:
        """A `Span` field of `ScopeSpans` (2), or None."""
        attributes = self._attributes(0x4A, record.attributes)
        if attributes is None:
            return None
        name = self._names.get(record.name)
        if name is None:
            if len(self._names) >= _CACHED:
                self._names.clear()
            name = self._names[record.name] = _len(0x2A, record.name.encode())
        trace_id, parent, status = record.trace_id, record.parent, record.status
        body = b"".join(
            (
                _IDS(0x0A10, trace_id >> 64, trace_id & _MASK_64, 0x1208, record.span_id),
                b"" if parent is None else _PARENT(0x2208, parent.span_id),
                name,
                _KINDS[record.kind],
                _TIMES(0x39, record.start, 0x41, record.end),
                attributes,
                _UNSET if status is None else _len(0x7A, _len(0x12, status.encode()) + _ERROR),
                _REMOTE_PARENT if parent is not None and is_remote(parent) else _LOCAL_PARENT,
            )
        )
        return _len(0x12, body)

    def _attributes(self, tag: int, attributes: Mapping[str, Any]) -> bytes | None:
        """Each attribute as a `KeyValue` field numbered by `tag`; None for a value that
        is not a str, bool, int or float."""
        fields = []
        caches = self._fields.setdefault(tag, {})
        for key, value in attributes.items():
            cache = caches.get(type(value))
            if cache is None:
                cache = caches[type(value)] = {}
            field = cache.get((key, value))
            if field is None:
                encoded = _value(value)
                if encoded is None:
                    return None
                field = _len(tag, _len(0x0A, key.encode()) + _len(0x12, encoded))
                if len(cache) >= _CACHED:
                    cache.clear()
                cache[key, value] = field
            fields.append(field)
        return b"".join(fields)


def encode_records(records: Sequence[SpanRecord], resource: Resource) -> bytes | None:
    """`RecordEncoder().encode(records, resource)`: with a fresh encoder (no cache)."""
    return RecordEncoder().encode(records, resource)


def _value(value: object) -> bytes | None:
    """An `AnyValue`'s body."""
    if isinstance(value, str):
        return _len(0x0A, value.encode())
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value & _MASK_64)
    if isinstance(value, float):
        return b"\x21" + _PACK_DOUBLE(value)
    return None


def _len(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (`tag`: its number << 3 | 2, below 128)."""
    size = len(payload)
    if size < 0x80:
        return _HEADS[tag][size] + payload
    return bytes((tag,)) + _varint(size) + payload


def _varint(number: int) -> bytes:
    out = bytearray()
    while number > 0x7F:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


# ScopeSpans.scope (1): InstrumentationScope {name (1), version (2)}, as ReadableSpans
# name it.
_SCOPE = _len(0x0A, _len(0x0A, b"prismgate") + _len(0x12, __version__.encode()))
