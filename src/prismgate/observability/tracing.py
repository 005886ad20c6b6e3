"""OpenTelemetry traces: one span per call, a child span per upstream attempt, the
caller's W3C trace continued and handed on to the provider.

Off unless the config names LiteLLM's "otel" callback (`litellm_settings.callbacks`).
Then `Gateway` builds a `Tracing` from the config at startup (its own tracer provider,
never OpenTelemetry's global one) and calls it explicitly: `open_call()` when a call
begins (its `CallSpan` closed when it ends), `attempt()` around each try at a deployment,
`headers()` for the `traceparent` that each upstream request carries (naming its
attempt's span). A proxy call's parent is the span its `traceparent` header names
(`CallOptions.traceparent`); an SDK caller's own current span is the parent of the
SDK's.

Spans carry what a spend-log row says about a call (model, provider, cost, status,
`x-portkey-trace-id`), never a prompt, an image or a credential; a failure is recorded by
its status and its error's type and code, never by its message (a provider's refusal may
quote the prompt) nor its traceback.

Nothing here imports opentelemetry until tracing is built: with tracing off, no span is
made and opentelemetry is never loaded. Configuration is OpenTelemetry's own variables,
read from the config's environment snapshot (`tracing_settings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from time import time_ns
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

from prismgate.errors import ConfigError, PrismgateError
from prismgate.observability.callbacks import wants_tracing
from prismgate.observability.span_records import (
    CLIENT,
    INTERNAL,
    SERVER,
    Parent,
    ReadableSpans,
    Remote,
    Shape,
    Shared,
    SpanRecord,
    is_remote,
)
from prismgate.observers import CLIENT_CLOSED
from prismgate.streaming import RelayedStream
from prismgate.transport import Transport, with_headers
from prismgate.types import Served

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    from prismgate.call_options import CallOptions
    from prismgate.config import Config
    from prismgate.observability.batches import BatchPoster
    from prismgate.routing.router import Target

__all__ = [
    "AttemptSpan",
    "CallSpan",
    "Tracing",
    "TracingSettings",
    "check_tracing",
    "propagating",
    "tracing_from_config",
    "tracing_settings",
]

K = TypeVar("K")

log = logging.getLogger(__name__)

# OpenTelemetry's default OTLP/HTTP receiver, and the path of its traces.
DEFAULT_ENDPOINT = "http://localhost:4318"
TRACES_PATH = "/v1/traces"
DEFAULT_SERVICE_NAME = "prismgate"
# LiteLLM's OTEL_EXPORTER values → OpenTelemetry's OTEL_TRACES_EXPORTER ones.
_LITELLM_EXPORTERS = {"otlp_http": "otlp", "console": "console"}
_EXPORTERS = ("otlp", "console", "none")
_COMPRESSIONS = ("none", "gzip", "deflate")
_CREDENTIAL_PROVIDERS = (
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
)
# Seconds `Tracing.aclose` waits for the exporter to send what it holds (a collector that
# is down makes the OTLP exporter retry for 30 s and more).
CLOSE_TIMEOUT = 5.0
# Span shapes and endings a `Tracing` keeps (emptied when full).
_KEPT = 1024


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """Where spans go and how they are sent, from OpenTelemetry's variables (LiteLLM's
    where it has its own)."""

    enabled: bool = True
    exporter: str = "otlp"  # otlp (OTLP over HTTP, protobuf), console or none
    endpoint: str = DEFAULT_ENDPOINT + TRACES_PATH
    headers: tuple[tuple[str, str], ...] = ()
    service_name: str = DEFAULT_SERVICE_NAME
    # OpenTelemetry's variables name a credential provider: the requests session is its.
    credential_provider: bool = False
    # The batch span processor's (OTEL_BSP_*), and the OTLP exporter's.
    batch_size: int = 512
    max_queued: int = 2048
    flush_interval: float = 5.0  # seconds
    timeout: float = 10.0  # seconds, per export
    compression: str = "none"  # none, gzip or deflate
    certificate: str | None = None  # a CA bundle, for an https endpoint
    client_certificate: str | None = None
    client_key: str | None = None


def tracing_settings(environ: Mapping[str, str]) -> TracingSettings:
    """The settings the environment gives; a ConfigError naming the variable that is
    wrong (never its value: headers hold API keys)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return TracingSettings(enabled=False)
    exporter = _exporter_name(environ)
    protocol, variable = _traces_variable(environ, "PROTOCOL")
    if exporter == "otlp" and (protocol or "http/protobuf") != "http/protobuf":
        raise ConfigError(
            f"{variable}: {protocol!r} is not available; prismgate exports "
            "OTLP over HTTP as protobuf (http/protobuf), which every OTLP collector accepts"
        )
    endpoint, variable = _endpoint(environ)
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        raise ConfigError(
            f"{variable}: not an http(s) URL without credentials (such as "
            f"{DEFAULT_ENDPOINT}); put an API key in OTEL_EXPORTER_OTLP_HEADERS"
        )
    compression, variable = _traces_variable(environ, "COMPRESSION")
    compression = (compression or "none").lower()
    if compression not in _COMPRESSIONS:
        raise ConfigError(f"{variable}: {compression!r} is not one of {', '.join(_COMPRESSIONS)}")
    batch_size = int(_number(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512))
    max_queued = int(_number(environ, "OTEL_BSP_MAX_QUEUE_SIZE", 2048))
    if batch_size > max_queued:
        raise ConfigError(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE: more than OTEL_BSP_MAX_QUEUE_SIZE, the spans "
            "that may wait; make it at most as many"
        )
    return TracingSettings(
        exporter=exporter,
        endpoint=endpoint,
        headers=_headers(environ),
        service_name=environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME,
        credential_provider=any(environ.get(name) for name in _CREDENTIAL_PROVIDERS),
        batch_size=batch_size,
        max_queued=max_queued,
        flush_interval=_number(environ, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000,
        # Seconds, as OpenTelemetry's Python SDK (and so LiteLLM) reads it; the
        # specification says milliseconds, which would make those users' "10" 10 ms.
        timeout=_number(environ, _traces_variable(environ, "TIMEOUT")[1], 10),
        compression=compression,
        certificate=_traces_variable(environ, "CERTIFICATE")[0],
        client_certificate=_traces_variable(environ, "CLIENT_CERTIFICATE")[0],
        client_key=_traces_variable(environ, "CLIENT_KEY")[0],
    )


def _traces_variable(environ: Mapping[str, str], setting: str) -> tuple[str | None, str]:
    """An OTLP exporter setting: the traces variable's value, else the general one's;
    with the name of the variable that gave it."""
    for name in (f"OTEL_EXPORTER_OTLP_TRACES_{setting}", f"OTEL_EXPORTER_OTLP_{setting}"):
        if value := environ.get(name, "").strip():
            return value, name
    return None, f"OTEL_EXPORTER_OTLP_{setting}"


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    """A positive number a variable holds (a time, or a count), else `default`."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name}: {raw!r} is not a positive number")
    return value


def _exporter_name(environ: Mapping[str, str]) -> str:
    if standard := environ.get("OTEL_TRACES_EXPORTER"):
        name = standard.split(",")[0].strip().lower()
        if name not in _EXPORTERS:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER: {name!r} is not available; use one of "
                f"{', '.join(_EXPORTERS)}"
            )
        return name
    if litellm := environ.get("OTEL_EXPORTER"):
        name = litellm.strip().lower()
        if name not in _LITELLM_EXPORTERS:
            raise ConfigError(f"OTEL_EXPORTER: {name!r} is not available; use otlp_http or console")
        return _LITELLM_EXPORTERS[name]
    return "otlp"


def _endpoint(environ: Mapping[str, str]) -> tuple[str, str]:
    """The traces URL and the variable it came from: the signal's own URL as it is, the
    base URL with /v1/traces added (OpenTelemetry's rule), else LiteLLM's OTEL_ENDPOINT
    with /v1/traces added unless it has it."""
    if url := environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return url.strip(), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    if url := environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return url.strip().rstrip("/") + TRACES_PATH, "OTEL_EXPORTER_OTLP_ENDPOINT"
    if url := environ.get("OTEL_ENDPOINT"):
        url = url.strip().rstrip("/")
        return (url if url.endswith(TRACES_PATH) else url + TRACES_PATH), "OTEL_ENDPOINT"
    return DEFAULT_ENDPOINT + TRACES_PATH, "the default endpoint"


def _headers(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """`key=value,key2=value2`, values percent-encoded (OpenTelemetry's format)."""
    raw = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        or environ.get("OTEL_EXPORTER_OTLP_HEADERS")
        or environ.get("OTEL_HEADERS")
        or ""
    )
    pairs = []
    for item in raw.split(","):
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            if item.strip():
                raise ConfigError(
                    "OTEL_EXPORTER_OTLP_HEADERS: each header is written name=value, "
                    "separated by commas"
                )
            continue
        pairs.append((unquote(name.strip()).lower(), unquote(value.strip())))
    return tuple(pairs)


def check_tracing(environ: Mapping[str, str]) -> None:
    """At config load: the settings are right and OpenTelemetry is installed."""
    settings = tracing_settings(environ)
    if not settings.enabled:
        return
    wanted = ["opentelemetry.sdk"]
    if settings.exporter == "otlp":
        wanted.append("opentelemetry.exporter.otlp.proto.http")
        tls_context(settings)
    for module in wanted:
        if _missing(module):
            raise ConfigError(
                "litellm_settings.callbacks: 'otel' needs OpenTelemetry, which is not "
                "installed; pip install 'prismgate[otel]'"
            )


def tls_context(settings: TracingSettings) -> ssl.SSLContext | None:
    """The TLS context the OTLP certificate variables describe (a CA bundle, a client
    certificate and its key); None when they name none. A ConfigError names the
    variable whose file does not load (never its contents)."""
    if not (settings.certificate or settings.client_certificate):
        return None
    try:
        context = ssl.create_default_context(cafile=settings.certificate)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_CERTIFICATE: the CA bundle does not load ({type(exc).__name__})"
        ) from None
    if settings.client_certificate:
        try:
            context.load_cert_chain(settings.client_certificate, settings.client_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: the client certificate and its key "
                f"(OTEL_EXPORTER_OTLP_CLIENT_KEY) do not load ({type(exc).__name__})"
            ) from None
    return context


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:  # a parent package is missing
        return True


def tracing_from_config(config: Config) -> Tracing | None:
    """The config's tracing, with a tracer provider of its own; None when it is off."""
    if not wants_tracing(config):
        return None
    settings = tracing_settings(config.environ)
    if not settings.enabled:
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.service_name}))
    if settings.exporter == "otlp" and not settings.credential_provider:
        from prismgate.observability.span_export import otlp_batches

        tls = tls_context(settings)
        batches = otlp_batches(settings, provider, tls, close_timeout=CLOSE_TIMEOUT)
        return Tracing(provider, owns_provider=True, span_records=True, batches=batches)
    processor = _processor(settings, provider)
    return Tracing(provider, owns_provider=True, span_records=True, processor=processor)


def _processor(settings: TracingSettings, provider: TracerProvider) -> SpanProcessor | None:
    """The provider's one processor (None: spans are not exported), for an exporter of
    OpenTelemetry's: the console's, or OTLP through a credential provider's requests
    session. A batch processor, exporting from a thread of its own (sizes from
    OpenTelemetry's variables), taking this module's span records
    (`Tracing(span_records=True)`): they are encoded, or made `ReadableSpan`s, there."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    from prismgate.observability.span_export import OtlpRecordExporter, RecordExporter

    exporter: RecordExporter | OtlpRecordExporter | None = None
    if settings.exporter == "otlp":
        exporter = OtlpRecordExporter(
            provider, endpoint=settings.endpoint, headers=dict(settings.headers)
        )
    elif settings.exporter == "console":
        exporter = RecordExporter(ConsoleSpanExporter(), provider)
    if exporter is None:
        return None
    processor = BatchSpanProcessor(exporter)
    provider.add_span_processor(processor)
    _quiet_drops(logging.getLogger("opentelemetry.sdk._shared_internal"))
    return processor


class _DropsOncePerMinute(logging.Filter):
    """The SDK logs one warning per span it drops from a full queue (a collector that is
    down, under load: thousands a second). This lets one through a minute, with how many
    it held back."""

    def __init__(self) -> None:
        super().__init__()
        self._next = 0.0
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Queue full"):
            return True
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return False
        if self._held:
            record.msg = f"{record.getMessage()} ({self._held} more since the last such line)"
            record.args = None
        self._next, self._held = now + 60.0, 0
        return True


def _quiet_drops(logger: logging.Logger) -> None:
    if not any(isinstance(f, _DropsOncePerMinute) for f in logger.filters):
        logger.addFilter(_DropsOncePerMinute())


def propagating(tracing: Tracing | None, transport: Transport) -> Transport:
    """`transport`, each request carrying the trace context of the span current when it
    is sent (its attempt's) when there is tracing; as it is without."""
    return transport if tracing is None else with_headers(transport, tracing.headers)


# The span current in a task: a call's while it runs, an attempt's inside it. Cheaper
# than OpenTelemetry's context.
_CURRENT: ContextVar[Parent | None] = ContextVar("prismgate_span", default=None)


class Tracing:
    """Spans for calls and their attempts, exported through one tracer provider's span
    processors (the config's, or one a caller passes to `Gateway(tracing=...)`).

    A span is a handful of plain values while its call runs (ids from
    `random.getrandbits`, the start in ns, its `Shape` and a few attributes of its own:
    an SDK span cost ~10x the instructions). Shapes, and the attributes spans end with,
    are made once and kept here, so that they are encoded once. The SDK sees a span once
    it ends, handed to the provider's span
    processors (`on_end`: they are not told when spans start). The provider's sampler
    decides for a call's span; its attempts follow that decision. A span that is not sampled
    still names itself upstream (`traceparent` flags 00) and is never exported.

    `owns_provider`: `aclose()` shuts the provider down (exporting what it holds), waiting
    at most `close_timeout` seconds. `span_records`: the provider's processors take the
    `SpanRecord`s themselves, and make what they need of them in their own thread (the
    config's provider: a batch processor and span_export.py's exporters); `processor`,
    the provider's only one when it is known, is handed them directly. `batches`: the
    config's OTLP export, from the event loop (span_export.py's `otlp_batches`), is
    handed them instead of the provider's processors."""

    def __init__(
        self,
        provider: TracerProvider,
        *,
        owns_provider: bool = False,
        close_timeout: float = CLOSE_TIMEOUT,
        span_records: bool = False,
        processor: SpanProcessor | None = None,
        batches: BatchPoster[SpanRecord] | None = None,
    ) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import sampling
        from opentelemetry.trace import SpanContext, TraceFlags
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._provider = provider
        # The SDK has no public way to reach a provider's processors without making an SDK
        # span per call, which is what this class avoids (it cost ~450k instructions a
        # call); `_active_span_processor` has been there since the SDK's 0.x releases.
        processors = provider._active_span_processor
        # Its processors take span records as they are (a batch processor only queues
        # them: `SpanRecord.context`), or the SDK's ReadableSpans made of them.
        self._hand_over: Callable[[SpanRecord], None]
        self._batches = batches
        if batches is not None:
            self._hand_over = batches.add
        elif span_records:
            # Straight to the one processor when it is known: a call a span fewer.
            receiver = processors if processor is None else processor
            self._hand_over = cast("Callable[[SpanRecord], None]", receiver.on_end)
        else:
            readable = ReadableSpans(provider)
            self._hand_over = lambda span: processors.on_end(readable.of(span))
        self._owns_provider = owns_provider
        self._close_timeout = close_timeout
        self._sampler = None if provider.sampler is sampling.DEFAULT_ON else provider.sampler
        self._propagator = TraceContextTextMapPropagator()
        self._trace = trace
        self._span_context = SpanContext
        self._flags = (TraceFlags(0), TraceFlags(1))
        self._kinds = (trace.SpanKind.INTERNAL, trace.SpanKind.SERVER, trace.SpanKind.CLIENT)
        # What spans share, made once: shapes by (operation, model, kind) and by
        # (attempt, target, provider, model); the attributes a served call ends with.
        self._shapes: dict[tuple[Any, ...], Shape] = {}
        self._endings: dict[tuple[Any, ...], Shared] = {}
        self._answered = Shared({"http.response.status_code": 200})

    def open_call(self, operation: str, model: str, options: CallOptions) -> CallSpan:
        """The call's span, current (the parent of its attempts' spans) until it is
        closed (`CallSpan.close`). Opened and closed inline by the call's own coroutine
        (call_reporting.py): a coroutine of its own would be resumed at every wait."""
        kind = SERVER if options.remote else INTERNAL
        alike = (operation, model, kind)
        shape = self._shapes.get(alike) or _kept(self._shapes, alike, _call_shape(*alike))
        attributes: dict[str, Any] = {}
        if options.request_id is not None:
            attributes["prismgate.request_id"] = options.request_id
        if options.trace_id is not None:
            attributes["portkey.trace_id"] = options.trace_id
        key, team = options.principal.key, options.principal.team
        if key is not None and key.key_alias:
            attributes["prismgate.key_alias"] = key.key_alias
        if team is not None:
            attributes["prismgate.team_id"] = team.team_id
        span = self._start(shape, attributes, options.traceparent)
        return CallSpan(self, span, _CURRENT.set(span))

    def attempt(self, target: Target) -> AttemptSpan:
        """A context manager: the span of one try at `target` (numbered from 1 within
        its call), current while it runs, so that its upstream requests carry its trace
        context. Entered inside the attempt's own coroutine, for the same reason as
        `open_call`."""
        return AttemptSpan(self, target)

    def headers(self) -> dict[str, str]:
        """The current span's W3C `traceparent`, for an upstream request; outside the
        spans of this class, the current OpenTelemetry span's trace context; empty when
        there is none."""
        span = _CURRENT.get()
        if span is None:
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier)
            return carrier
        flags = "01" if span.sampled else "00"
        # printf-style: a quarter fewer instructions than an f-string's format specs.
        traceparent = "00-%032x-%016x-%s" % (span.trace_id, span.span_id, flags)  # noqa: UP031
        return {"traceparent": traceparent}

    def parent(self, traceparent: str) -> Parent | None:
        """The caller's span a `traceparent` names; None when it is not a valid one.
        Only `traceparent` is read: a caller's `tracestate` and baggage are not passed on
        to providers."""
        found = self._propagator.extract({"traceparent": traceparent})
        context = self._trace.get_current_span(found).get_span_context()
        if not context.is_valid:
            return None
        return Remote(context.trace_id, context.span_id, context.trace_flags.sampled)

    async def aclose(self) -> None:
        """Export the spans still held, and stop (a tracer provider this owns), within
        `close_timeout`: past it the spans left are dropped, and that is logged."""
        if not self._owns_provider:
            return
        if self._batches is not None:
            await self._batches.aclose()  # within its own close timeout, this one's
        # The exporter sends over blocking HTTP, in a thread of its own: a daemon, so that
        # one stuck on a collector that does not answer never holds up the loop's close.
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def shut_down() -> None:
            try:
                self._provider.shutdown()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                    loop.call_soon_threadsafe(_settle, done)

        threading.Thread(target=shut_down, name="prismgate-tracing-close", daemon=True).start()
        try:
            await asyncio.wait_for(done, self._close_timeout)
        except TimeoutError:
            log.warning(
                "tracing: the span exporter did not finish within %g s (is the collector "
                "down?); the spans it still held are dropped",
                self._close_timeout,
            )

    def _start(
        self, shape: Shape, attributes: dict[str, Any], traceparent: str | None
    ) -> SpanRecord:
        """A call's span, sampled as the provider's sampler says: its parent the proxy
        caller's span (its valid `traceparent`), else the current span (this class's;
        else an SDK caller's OpenTelemetry span)."""
        parent = None if traceparent is None else self.parent(traceparent)
        if parent is None:
            parent = _CURRENT.get()
        if parent is None and shape.kind == INTERNAL:
            parent = self._sdk_parent()
        if self._sampler is None:  # the SDK's default: the parent's decision, else yes
            return SpanRecord(shape, parent, True if parent is None else parent.sampled, attributes)
        span = SpanRecord(shape, parent, True, attributes)
        span.sampled = self._sampled(span, parent)
        return span

    def _sdk_parent(self) -> Parent | None:
        context = self._trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        remote = Remote if context.is_remote else Parent
        return remote(context.trace_id, context.span_id, context.trace_flags.sampled)

    def _sampled(self, span: SpanRecord, parent: Parent | None) -> bool:
        """What a sampler other than the default says of `span`."""
        from opentelemetry.sdk.trace.sampling import Decision

        context = None
        if parent is not None:
            parent_context = self._span_context(
                parent.trace_id,
                parent.span_id,
                is_remote=is_remote(parent),
                trace_flags=self._flags[parent.sampled],
            )
            context = self._trace.set_span_in_context(self._trace.NonRecordingSpan(parent_context))
        assert self._sampler is not None
        result = self._sampler.should_sample(
            context, span.trace_id, span.name, self._kinds[span.kind], span.all_attributes()
        )
        return result.decision is Decision.RECORD_AND_SAMPLE

    def _end_call(
        self,
        span: SpanRecord,
        served: Served[Any] | None,
        failure: BaseException | None,
        *,
        remote: bool,
    ) -> None:
        """Record how a call ended and end its span. A proxy call's span is an error only
        for a 5xx (the caller's mistakes are not the gateway's, OpenTelemetry's HTTP
        rule)."""
        if served is not None:
            meta = served.meta
            key = (meta.provider, meta.model, meta.response_cost, meta.cache_status)
            ending = self._endings.get(key) or _kept(self._endings, key, _served(*key))
            if failure is None:
                span.ended = ending
            else:  # a stream that broke: its status is the failure's
                span.attributes.update(ending.attributes)
        if failure is not None:
            status = _failed(span, failure, error_status=not remote)
            if remote and status >= 500:
                _error_status(span, failure)
        self._end(span)

    def _end(self, span: SpanRecord) -> None:
        """End `span`: handed to the provider's span processors when it is sampled."""
        if span.sampled:
            span.end = time_ns()
            self._hand_over(span)


class CallSpan:
    """`Tracing.open_call`'s span, open."""

    __slots__ = ("_span", "_token", "_tracing")

    def __init__(self, tracing: Tracing, span: SpanRecord, token: Token[Parent | None]) -> None:
        self._tracing = tracing
        self._span = span
        self._token = token

    def close(self, served: Served[Any] | None, failure: BaseException | None) -> None:
        """The call ended, `served` or with `failure`: its span is no longer current, and
        ends (a stream's when the stream is closed)."""
        span, tracing = self._span, self._tracing
        _CURRENT.reset(self._token)
        remote = span.shape.kind == SERVER
        if failure is None and served is not None and isinstance(served.value, RelayedStream):
            served.value.at_close(
                lambda broke: tracing._end_call(span, served, broke, remote=remote)
            )
        else:
            tracing._end_call(span, served, failure, remote=remote)


class AttemptSpan:
    """`Tracing.attempt`'s context manager."""

    __slots__ = ("_span", "_target", "_token", "_tracing")

    def __init__(self, tracing: Tracing, target: Target) -> None:
        self._tracing = tracing
        self._target = target

    def __enter__(self) -> None:
        target = self._target
        deployment = target.deployment
        parent = _CURRENT.get()
        number = 1
        if isinstance(parent, SpanRecord):  # the call's span: it counts its attempts
            parent.children += 1
            number = parent.children
        key = (number, target.label, deployment.provider, deployment.model)
        shapes = self._tracing._shapes
        shape = shapes.get(key) or _kept(shapes, key, _attempt_shape(*key))
        span = SpanRecord(shape, parent, True if parent is None else parent.sampled)
        self._span = span
        self._token = _CURRENT.set(span)

    def __exit__(self, _kind: object, failure: BaseException | None, _trace: object) -> None:
        span = self._span
        _CURRENT.reset(self._token)
        if failure is None:
            span.ended = self._tracing._answered
        else:
            _failed(span, failure, error_status=True)
        self._tracing._end(span)


def _kept(kept: dict[tuple[Any, ...], K], key: tuple[Any, ...], made: K) -> K:
    """`made`, kept in `kept` under `key` (emptied when full: model names come from
    callers)."""
    if len(kept) >= _KEPT:
        kept.clear()
    kept[key] = made
    return made


def _call_shape(operation: str, model: str, kind: int) -> Shape:
    attributes = {"gen_ai.operation.name": operation, "gen_ai.request.model": model}
    return Shape(f"{operation} {model}", kind, attributes)


def _attempt_shape(number: int, label: str, provider: str, model: str) -> Shape:
    attributes = {
        "prismgate.attempt": number,
        "prismgate.target": label,  # group@deployment
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
    }
    return Shape(f"attempt {label}", CLIENT, attributes)


def _served(provider: str, model: str, cost: float | None, cache_status: str | None) -> Shared:
    """What a served call's span ends with."""
    attributes: dict[str, Any] = {
        "gen_ai.provider.name": provider,
        "gen_ai.response.model": model,
        "http.response.status_code": 200,
    }
    if cost is not None:
        attributes["prismgate.cost_usd"] = cost
    if cache_status is not None:
        attributes["prismgate.cache_status"] = cache_status
    return Shared(attributes)


def _failed(span: SpanRecord, failure: BaseException, *, error_status: bool) -> int:
    """Record a failure on `span` by its status and error type; the status."""
    if isinstance(failure, PrismgateError):
        status = failure.status_code
        error_type = failure.code or type(failure).__name__
    elif isinstance(failure, Exception):
        status, error_type = 500, type(failure).__name__
    else:  # cancelled: the caller left
        status, error_type = CLIENT_CLOSED, "cancelled"
    span.attributes["http.response.status_code"] = status
    span.attributes["error.type"] = error_type
    if error_status:
        _error_status(span, failure)
    return status


def _error_status(span: SpanRecord, failure: BaseException) -> None:
    # Never a message: a provider's (relayed in a PrismgateError's) may quote the prompt,
    # and a bug's may hold anything. The status and the error's code or type say enough.
    description = type(failure).__name__
    if isinstance(failure, PrismgateError):
        description = f"{failure.status_code} {failure.code or description}"
    span.status = description


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
