"""The config's span exporters: tracing.py's span records, encoded to OTLP here.

OpenTelemetry's OTLP exporter encodes `ReadableSpan`s through `encode_spans`, which
builds a protobuf object per span, attribute and value: ~260,000 CPU instructions a span
(callgrind, SDK 1.45), two spans a proxy call: a fifth of what serving a small answer
costs. Our spans are a dozen scalar attributes, most of them shared by many spans
(span_records.py's `Shape` and `Shared`); `RecordEncoder` writes their protobuf fields
directly, the shared ones once (~10,000 instructions a span, ~55,000 when each attribute
was encoded per span).

`otlp_batches` sends them from the event loop (batches.py's `BatchPoster`: queue,
batches, retries, compression, TLS), sized by OpenTelemetry's variables. OpenTelemetry's
batch processor sends from a thread of its own, under the same GIL: at c=32 the loop
then waited for that thread at each switch, which cost the loop more than the export's
own work. OpenTelemetry's exporter is still used where its requests session is wanted (a
credential provider: `OtlpRecordExporter`) and for the console (`RecordExporter`).

A record with an attribute value that is not a str, bool, int or float goes through
OpenTelemetry's own encoder, as a `ReadableSpan`; so does every record when an SDK's
exporter is not laid out as 1.39+'s (`_client`). The tests compare both encoders'
messages.
"""

from __future__ import annotations

import logging
import ssl
import struct
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from prismgate._version import __version__
from prismgate.observability.batches import BatchPoster, compressor
from prismgate.observability.span_records import ReadableSpans, Remote, Shape, Shared

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from prismgate.observability.span_records import SpanRecord
    from prismgate.observability.tracing import TracingSettings

log = logging.getLogger("prismgate.observability.tracing")

__all__ = [
    "OtlpRecordExporter",
    "RecordEncoder",
    "RecordExporter",
    "encode_records",
    "otlp_batches",
]

# Span fields (trace.proto), each with its tag: trace_id (1) and span_id (2), bytes, and
# a child's parent_span_id (4).
_IDS = struct.Struct(">HQQHQ").pack
_CHILD_IDS = struct.Struct(">HQQHQHQ").pack
_TIMES = struct.Struct("<BQBQ").pack  # start_time_unix_nano (7), end_.. (8): fixed64
_KINDS = (b"\x30\x01", b"\x30\x02", b"\x30\x03")  # kind (6): INTERNAL, SERVER, CLIENT
_ERROR = b"\x18\x02"  # Status.code (3): ERROR
# flags (16, fixed32): the parent's is_remote is known (0x100), and it is remote (0x200).
_LOCAL_PARENT = b"\x85\x01\x00\x01\x00\x00"
_REMOTE_PARENT = b"\x85\x01\x00\x03\x00\x00"
# status (15) empty, UNSET, then the flags: how most spans end.
_LOCAL_UNSET = b"\x7a\x00" + _LOCAL_PARENT
_REMOTE_UNSET = b"\x7a\x00" + _REMOTE_PARENT
_MASK_64 = (1 << 64) - 1
_PACK_DOUBLE = struct.Struct("<d").pack
# Encoded names and attributes an encoder keeps (each cache emptied when it is full), and
# how many values of one key it keeps.
_CACHED = 4096
_VARYING = 256
# A key, or a text value, this short makes a `KeyValue` whose lengths are one byte each.
_SHORT = 40
_TWO_BYTE_HEAD = struct.Struct("BBB").pack
# The tag and length of each length-delimited field shorter than 128 bytes.
_HEADS = {
    tag: [bytes((tag, size)) for size in range(0x80)]
    for tag in (0x0A, 0x12, 0x1A, 0x2A, 0x4A, 0x7A)
}


def otlp_batches(
    settings: TracingSettings,
    provider: TracerProvider,
    tls: ssl.SSLContext | None,
    *,
    close_timeout: float,
) -> BatchPoster[SpanRecord]:
    """Span records sent to the settings' OTLP/HTTP endpoint as protobuf, in batches
    from the event loop (batches.py): `RecordEncoder`'s encoding, for `provider`'s
    resource; OpenTelemetry's encoder for a span it leaves out. `tls` (`tls_context`)
    for an https endpoint; at close, what is left is sent within `close_timeout`. A
    batch is sent again after a 429 or a 5xx (OTLP's rule: the collector may take it
    later), after the collector's Retry-After when it gives one."""
    encoder = RecordEncoder()
    readable = ReadableSpans(provider)

    def encode(records: Sequence[SpanRecord]) -> bytes:
        data = encoder.encode(records, provider.resource)
        if data is None:
            data = encode_spans([readable.of(record) for record in records])
            return bytes(data.SerializePartialToString())
        return data

    return BatchPoster(
        "tracing",
        settings.endpoint,
        encode,
        headers={
            "Content-Type": "application/x-protobuf",
            "User-Agent": f"prismgate/{__version__}",
            **dict(settings.headers),
        },
        what="spans",
        batch_size=settings.batch_size,
        flush_interval=settings.flush_interval,
        max_queued=settings.max_queued,
        timeout=settings.timeout,
        retry_statuses=(429,),
        compress=compressor(settings.compression),
        ssl_context=tls,
        close_timeout=close_timeout,
        logger=log,
    )


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
    """Writes span records as an OTLP `ExportTraceServiceRequest`; one an exporter, used
    from its batch thread only.

    What spans share is encoded once and kept: the resource, each span `Shape` (name,
    kind, first attributes) and `Shared` ending, and each attribute of a span's own seen
    before (kept by key, type and value, until a key has had `_VARYING` values: a
    request id). A span then costs two `struct` packs, a few lookups and a join."""

    def __init__(self) -> None:
        self._shapes: dict[Shape | Shared, bytes] = {}
        # By (key, type, value): the type keeps 1, 1.0 and True apart (equal as keys).
        self._fields: dict[tuple[str, type, Any], bytes] = {}
        self._values: dict[str, int] = {}  # by key, how many of its values are kept
        # By key, for keys past `_VARYING` values: the key's encoded field, a `KeyValue`'s
        # first part.
        self._varying: dict[str, bytes] = {}
        self._resource: Resource | None = None
        self._around = (b"", b"")  # the encoded resource, and its schema URL

    def encode(self, records: Sequence[SpanRecord], resource: Resource) -> bytes | None:
        """`records` (ended, sampled), serialized, for `resource`; None when an
        attribute holds what this does not encode."""
        try:
            spans = b"".join(map(self._span, records))
            if resource is not self._resource:
                schema = resource.schema_url
                self._around = (
                    _len(0x0A, _fields(0x0A, resource.attributes)),
                    _len(0x1A, schema.encode()) if schema else b"",
                )
                self._resource = resource
        except _NotEncodable:
            return None
        head, schema_url = self._around
        return _len(0x0A, head + _len(0x12, _SCOPE + spans) + schema_url)

    def _span(self, record: SpanRecord) -> bytes:
        """A `Span` field of `ScopeSpans` (2)."""
        shaped = self._shapes.get(record.shape) or self._keep(record.shape)
        own = self._own(record.attributes) if record.attributes else b""
        ended = record.ended
        if ended is not None:
            own += self._shapes.get(ended) or self._keep(ended)
        trace_id, parent, status = record.trace_id, record.parent, record.status
        high, low = trace_id >> 64, trace_id & _MASK_64
        if parent is None:
            ids = _IDS(0x0A10, high, low, 0x1208, record.span_id)
            remote = False
        else:
            ids = _CHILD_IDS(0x0A10, high, low, 0x1208, record.span_id, 0x2208, parent.span_id)
            remote = type(parent) is Remote  # is_remote, inlined
        if status is None:
            tail = _REMOTE_UNSET if remote else _LOCAL_UNSET
        else:
            error = _len(0x7A, _len(0x12, status.encode()) + _ERROR)
            tail = error + (_REMOTE_PARENT if remote else _LOCAL_PARENT)
        times = _TIMES(0x39, record.start, 0x41, record.end)
        # Fields out of their numbers' order, which protobuf allows: ids (1, 2, 4), name
        # (5) and kind (6) with the shape's attributes (9), times (7, 8), the others (9),
        # status (15), flags (16).
        body = b"".join((ids, shaped, times, own, tail))
        size = len(body)
        if 0x80 <= size < 0x4000:  # most spans: `_len`'s two-byte case, inline
            return _TWO_BYTE_HEAD(0x12, size & 0x7F | 0x80, size >> 7) + body
        return _len(0x12, body)

    def _keep(self, shared: Shape | Shared) -> bytes:
        """The name and kind fields of a `Shape` and its attributes; a `Shared`'s
        attributes: encoded, and kept."""
        encoded = _fields(0x4A, shared.attributes)
        if isinstance(shared, Shape):
            encoded = _len(0x2A, shared.name.encode()) + _KINDS[shared.kind] + encoded
        if len(self._shapes) >= _CACHED:
            self._shapes.clear()
        self._shapes[shared] = encoded
        return encoded

    def _own(self, attributes: Mapping[str, Any]) -> bytes:
        """A span's own attributes, each kept while its key has not had `_VARYING`
        values; a short text of a key past that (a request id) is written from its key's
        encoded head, without a lookup."""
        fields, values, varying = self._fields, self._values, self._varying
        encoded = []
        for key, value in attributes.items():
            head = varying.get(key)
            if head is not None and type(value) is str and (size := len(value)) < _SHORT:
                data = value.encode()
                if len(data) == size:  # ASCII: its length in bytes is known
                    encoded.append(_HEADS[0x4A][len(head) + size + 4] + head)
                    encoded.append(_HEADS[0x12][size + 2] + _HEADS[0x0A][size] + data)
                    continue
            field = fields.get((key, type(value), value))
            if field is None:
                field = _field(0x4A, key, value)
                kept = values.get(key, 0)
                if kept < _VARYING:
                    if len(fields) >= _CACHED:
                        fields.clear()
                        values.clear()
                        varying.clear()
                    values[key] = kept + 1
                    fields[key, type(value), value] = field
                elif key not in varying and len(key) < _SHORT:
                    varying[key] = _len(0x0A, key.encode())
            encoded.append(field)
        return b"".join(encoded)


class _NotEncodable(Exception):
    """An attribute value `_value` does not cover: left to OpenTelemetry's encoder."""


def encode_records(records: Sequence[SpanRecord], resource: Resource) -> bytes | None:
    """`RecordEncoder().encode(records, resource)`: with a fresh encoder (no cache)."""
    return RecordEncoder().encode(records, resource)


def _fields(tag: int, attributes: Mapping[str, Any]) -> bytes:
    """Each attribute as a `KeyValue` field numbered by `tag`."""
    return b"".join([_field(tag, key, value) for key, value in attributes.items()])


def _field(tag: int, key: str, value: object) -> bytes:
    """A `KeyValue` field numbered by `tag`; _NotEncodable for a value that is not a str,
    bool, int or float."""
    encoded = _value(value)
    if encoded is None:
        raise _NotEncodable(key)
    return _len(tag, _len(0x0A, key.encode()) + _len(0x12, encoded))


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
    if size < 0x4000:  # a span: two bytes of length, packed rather than looped over
        return _TWO_BYTE_HEAD(tag, size & 0x7F | 0x80, size >> 7) + payload
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
