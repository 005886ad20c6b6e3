"""Spans as a few plain values (`SpanRecord`), and the SDK's `ReadableSpan`s made of
them when they end: what tracing.py makes while a call runs (an SDK span cost ~10x the
instructions), and what span_export.py encodes."""

from __future__ import annotations

from collections.abc import Mapping
from random import getrandbits
from time import time_ns
from typing import TYPE_CHECKING, Any

from prismgate._version import __version__

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

__all__ = [
    "CLIENT",
    "INTERNAL",
    "SERVER",
    "Parent",
    "ReadableSpans",
    "Remote",
    "Shape",
    "Shared",
    "SpanRecord",
    "is_remote",
]

INTERNAL, SERVER, CLIENT = 0, 1, 2  # OpenTelemetry's SpanKind values


class Parent:
    """A span's place in its trace, as its children and upstream requests see it."""

    __slots__ = ("sampled", "span_id", "trace_id")

    def __init__(self, trace_id: int, span_id: int, sampled: bool) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled


class _SampledFlags:
    __slots__ = ()
    sampled = True


class _Sampled:
    """What a batch span processor reads of a span it is handed
    (`span.context.trace_flags.sampled`): a `SpanRecord` is handed over only sampled.
    Class attributes, not properties: no call a span."""

    __slots__ = ()
    trace_flags = _SampledFlags()


class Shape:
    """What spans made alike share: their name, kind and first attributes (a call's
    operation and model, an attempt's number and target). Made once (`Tracing` keeps
    them) and never changed: span_export.py encodes each once."""

    __slots__ = ("attributes", "kind", "name")

    def __init__(self, name: str, kind: int, attributes: Mapping[str, Any]) -> None:
        self.name = name
        self.kind = kind  # INTERNAL, SERVER, CLIENT
        self.attributes = attributes


class Shared:
    """Attributes that many spans end with (a served call's provider, model and cost; an
    attempt's 200), made once and never changed, like a `Shape`'s."""

    __slots__ = ("attributes",)

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        self.attributes = attributes


class SpanRecord(Parent):
    """A span as a few plain values: while it runs, and in the batch processor's queue
    when the config's provider exports it (`Tracing(span_records=True)`); otherwise an
    SDK `ReadableSpan` is made of it when it ends, and only when it is sampled.

    Its attributes are its shape's, then its own (`attributes`), then those it `ended`
    with: in that order (`all_attributes`), no key in two of them (span_export.py
    writes each as it is; tracing.py's spans keep to it, and a test checks)."""

    __slots__ = ("attributes", "children", "end", "ended", "parent", "shape", "start", "status")
    context = _Sampled()

    def __init__(
        self,
        shape: Shape,
        parent: Parent | None,
        sampled: bool,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        self.trace_id = parent.trace_id if parent is not None else getrandbits(128) or 1
        self.span_id = getrandbits(64) or 1
        self.sampled = sampled
        self.shape = shape
        self.parent = parent
        self.attributes = {} if attributes is None else attributes
        self.ended: Shared | None = None
        self.status: str | None = None  # an error's description; None: unset
        self.children = 0  # a call's span: its attempts so far
        self.start = time_ns()
        self.end = 0

    @property
    def name(self) -> str:
        return self.shape.name

    @property
    def kind(self) -> int:
        return self.shape.kind

    def all_attributes(self) -> dict[str, Any]:
        """The span's attributes, as OpenTelemetry sees them."""
        ended = self.ended
        if ended is None:
            return {**self.shape.attributes, **self.attributes}
        return {**self.shape.attributes, **self.attributes, **ended.attributes}


class Remote(Parent):
    """The caller's span, named by its `traceparent`."""

    __slots__ = ()


def is_remote(parent: Parent) -> bool:
    """Whether `parent` is a caller's span (in another process)."""
    return type(parent) is Remote


class ReadableSpans:
    """SDK `ReadableSpan`s of span records, as `provider`'s processors take them."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        self._provider = provider
        self._readable = ReadableSpan
        self._scope = InstrumentationScope("prismgate", __version__)
        self._context = SpanContext
        self._flags = (TraceFlags(0), TraceFlags(1))
        self._kinds = (SpanKind.INTERNAL, SpanKind.SERVER, SpanKind.CLIENT)
        self._unset = Status(StatusCode.UNSET)
        self._status, self._error = Status, StatusCode.ERROR

    def of(self, span: SpanRecord) -> ReadableSpan:
        """The `ReadableSpan` of an ended `span`."""
        parent = span.parent
        make_context = self._context
        return self._readable(
            span.name,
            make_context(span.trace_id, span.span_id, False, self._flags[span.sampled]),
            None
            if parent is None
            else make_context(
                parent.trace_id, parent.span_id, is_remote(parent), self._flags[parent.sampled]
            ),
            self._provider.resource,
            span.all_attributes(),
            kind=self._kinds[span.kind],
            status=self._unset if span.status is None else self._status(self._error, span.status),
            start_time=span.start,
            end_time=span.end,
            instrumentation_scope=self._scope,
        )
