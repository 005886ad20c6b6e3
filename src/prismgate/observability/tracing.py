"""OpenTelemetry traces: one span per call, a child span per upstream attempt, the
caller's W3C trace continued and handed on to the provider.

Off unless the config names LiteLLM's "otel" callback (`litellm_settings.callbacks`).
Then `Gateway` builds a `Tracing` from the config at startup (its own tracer provider,
never OpenTelemetry's global one) and calls it explicitly: `call()` around each call,
`attempts()` around each try at a deployment, `headers()` for the `traceparent` that each
upstream request carries (naming its attempt's span). The proxy adds `continue_traces()`,
which makes a request's `traceparent` header the parent of its call's span; an SDK
caller's own current span is the parent of the SDK's.

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
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

from prismgate._version import __version__
from prismgate.errors import ConfigError, PrismgateError
from prismgate.observability.callbacks import wants_tracing
from prismgate.observers import CLIENT_CLOSED
from prismgate.streaming import RelayedStream
from prismgate.transport import Transport, with_headers
from prismgate.types import Served

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span
    from starlette.types import ASGIApp, Receive, Scope, Send

    from prismgate.call_options import CallOptions
    from prismgate.config import Config
    from prismgate.routing.router import Target

__all__ = [
    "Tracing",
    "TracingSettings",
    "check_tracing",
    "propagating",
    "traced",
    "tracing_from_config",
    "tracing_settings",
]

A = TypeVar("A")

log = logging.getLogger(__name__)

# OpenTelemetry's default OTLP/HTTP receiver, and the path of its traces.
DEFAULT_ENDPOINT = "http://localhost:4318"
TRACES_PATH = "/v1/traces"
DEFAULT_SERVICE_NAME = "prismgate"
# LiteLLM's OTEL_EXPORTER values → OpenTelemetry's OTEL_TRACES_EXPORTER ones.
_LITELLM_EXPORTERS = {"otlp_http": "otlp", "console": "console"}
_EXPORTERS = ("otlp", "console", "none")
# Seconds `Tracing.aclose` waits for the exporter to send what it holds (a collector that
# is down makes the OTLP exporter retry for 30 s and more).
CLOSE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """Where spans go, from OpenTelemetry's variables (LiteLLM's where it has its own)."""

    enabled: bool = True
    exporter: str = "otlp"  # otlp (OTLP over HTTP, protobuf), console or none
    endpoint: str = DEFAULT_ENDPOINT + TRACES_PATH
    headers: tuple[tuple[str, str], ...] = ()
    service_name: str = DEFAULT_SERVICE_NAME


def tracing_settings(environ: Mapping[str, str]) -> TracingSettings:
    """The settings the environment gives; a ConfigError naming the variable that is
    wrong (never its value: headers hold API keys)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return TracingSettings(enabled=False)
    exporter = _exporter_name(environ)
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if exporter == "otlp" and protocol != "http/protobuf":
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not available; prismgate exports "
            "OTLP over HTTP as protobuf (http/protobuf), which every OTLP collector accepts"
        )
    endpoint, variable = _endpoint(environ)
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        raise ConfigError(
            f"{variable}: not an http(s) URL without credentials (such as "
            f"{DEFAULT_ENDPOINT}); put an API key in OTEL_EXPORTER_OTLP_HEADERS"
        )
    return TracingSettings(
        exporter=exporter,
        endpoint=endpoint,
        headers=_headers(environ),
        service_name=environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME,
    )


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
    for module in wanted:
        if _missing(module):
            raise ConfigError(
                "litellm_settings.callbacks: 'otel' needs OpenTelemetry, which is not "
                "installed; pip install 'prismgate[otel]'"
            )


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
    return Tracing(_provider(settings), owns_provider=True)


def _provider(settings: TracingSettings) -> TracerProvider:
    """A tracer provider exporting in batches from a thread of its own. The sampler,
    resource attributes and batch sizes are the SDK's, from OpenTelemetry's variables."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.service_name}))
    exporter: SpanExporter | None = None
    if settings.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.endpoint, headers=dict(settings.headers))
    elif settings.exporter == "console":
        exporter = ConsoleSpanExporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
        _quiet_drops(logging.getLogger("opentelemetry.sdk._shared_internal"))
    return provider


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


def traced(
    tracing: Tracing | None,
    operation: str,
    model: str,
    options: CallOptions,
    work: Callable[[], Awaitable[Served[A]]],
) -> Callable[[], Awaitable[Served[A]]]:
    """`work`, inside the call's span when there is tracing; as it is without (nothing
    is made per call then)."""
    if tracing is None:
        return work
    return lambda: tracing.call(operation, model, options, work)


def propagating(tracing: Tracing | None, transport: Transport) -> Transport:
    """`transport`, each request carrying the trace context of the span current when it
    is sent (its attempt's) when there is tracing; as it is without."""
    return transport if tracing is None else with_headers(transport, tracing.headers)


class Tracing:
    """Spans for calls and their attempts, from one tracer provider (the config's, or
    one a caller passes to `Gateway(tracing=...)`).

    `owns_provider`: `aclose()` shuts the provider down (exporting what it holds), waiting
    at most `close_timeout` seconds."""

    def __init__(
        self,
        provider: TracerProvider,
        *,
        owns_provider: bool = False,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._provider = provider
        self._owns_provider = owns_provider
        self._close_timeout = close_timeout
        self._tracer = provider.get_tracer("prismgate", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._context = context
        self._trace = trace

    async def call(
        self,
        operation: str,
        model: str,
        options: CallOptions,
        work: Callable[[], Awaitable[Served[A]]],
    ) -> Served[A]:
        """`work()` inside the call's span, the parent of its attempts' spans. A stream's
        span ends when the stream is closed."""
        kind = self._trace.SpanKind.SERVER if options.remote else self._trace.SpanKind.INTERNAL
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": model,
        }
        if options.request_id is not None:
            attributes["prismgate.request_id"] = options.request_id
        if options.trace_id is not None:
            attributes["portkey.trace_id"] = options.trace_id
        key, team = options.principal.key, options.principal.team
        if key is not None and key.key_alias:
            attributes["prismgate.key_alias"] = key.key_alias
        if team is not None:
            attributes["prismgate.team_id"] = team.team_id
        span = self._tracer.start_span(f"{operation} {model}", kind=kind, attributes=attributes)
        token = self._context.attach(self._trace.set_span_in_context(span))
        try:
            served = await work()
        except BaseException as exc:
            _end_call(span, None, exc, remote=options.remote)
            raise
        finally:
            self._context.detach(token)
        if isinstance(served.value, RelayedStream):
            done, remote = served, options.remote
            served.value.at_close(lambda failure: _end_call(span, done, failure, remote=remote))
        else:
            _end_call(span, served, None, remote=options.remote)
        return served

    def attempts(
        self, attempt: Callable[[Target], Awaitable[A]]
    ) -> Callable[[Target], Awaitable[A]]:
        """`attempt`, each run inside a span of its own (numbered from 1), the current
        span while it runs: its upstream requests carry its trace context."""
        numbers = itertools.count(1)
        tracer, client = self._tracer, self._trace.SpanKind.CLIENT

        async def traced(target: Target) -> A:
            deployment = target.deployment
            attributes: dict[str, Any] = {
                "prismgate.attempt": next(numbers),
                "prismgate.target": target.label,  # group@deployment
                "gen_ai.provider.name": deployment.provider,
                "gen_ai.request.model": deployment.model,
            }
            with tracer.start_as_current_span(
                f"attempt {target.label}",
                kind=client,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    value = await attempt(target)
                except BaseException as exc:
                    _failed(span, exc, error_status=True)
                    raise
                span.set_attribute("http.response.status_code", 200)
                return value

        return traced

    def headers(self) -> dict[str, str]:
        """The current span's W3C trace context (`traceparent`, and `tracestate` when
        there is one), for an upstream request; empty outside a span."""
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier

    def parent(self, traceparent: str) -> Context | None:
        """The context a caller's `traceparent` names; None when it is not a valid one.
        Only `traceparent` is read: a caller's `tracestate` and baggage are not passed on
        to providers."""
        found = self._propagator.extract({"traceparent": traceparent})
        if not self._trace.get_current_span(found).get_span_context().is_valid:
            return None
        return found

    def continue_traces(self, app: ASGIApp) -> ASGIApp:
        """`app`, with each request's `traceparent` header the parent of its call's span."""
        return _ContinueTraces(app, self)

    async def aclose(self) -> None:
        """Export the spans still held, and stop (a tracer provider this owns), within
        `close_timeout`: past it the spans left are dropped, and that is logged."""
        if not self._owns_provider:
            return
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


class _ContinueTraces:
    """Plain-ASGI middleware: a request's valid `traceparent` becomes the current
    context, so the call's span continues the caller's trace."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        from opentelemetry import context

        self.app = app
        self._tracing = tracing
        self._context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parent = None
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"traceparent":
                    parent = self._tracing.parent(value.decode("latin-1"))
                    break
        if parent is None:
            await self.app(scope, receive, send)
            return
        token = self._context.attach(parent)
        try:
            await self.app(scope, receive, send)
        finally:
            self._context.detach(token)


def _end_call(
    span: Span, served: Served[Any] | None, failure: BaseException | None, *, remote: bool
) -> None:
    """Record how a call ended and end its span. A proxy call's span is an error only
    for a 5xx (the caller's mistakes are not the gateway's, OpenTelemetry's HTTP rule)."""
    if served is not None:
        meta = served.meta
        ended: dict[str, Any] = {
            "gen_ai.provider.name": meta.provider,
            "gen_ai.response.model": meta.model,
            "http.response.status_code": 200,
        }
        if meta.response_cost is not None:
            ended["prismgate.cost_usd"] = meta.response_cost
        if meta.cache_status is not None:
            ended["prismgate.cache_status"] = meta.cache_status
        span.set_attributes(ended)  # at once: each attribute set takes the span's lock
    if failure is not None:
        status = _failed(span, failure, error_status=not remote)
        if remote and status >= 500:
            _error_status(span, failure)
    span.end()


def _failed(span: Span, failure: BaseException, *, error_status: bool) -> int:
    """Record a failure on `span` by its status and error type; the status."""
    if isinstance(failure, PrismgateError):
        status = failure.status_code
        error_type = failure.code or type(failure).__name__
    elif isinstance(failure, Exception):
        status, error_type = 500, type(failure).__name__
    else:  # cancelled: the caller left
        status, error_type = CLIENT_CLOSED, "cancelled"
    span.set_attribute("http.response.status_code", status)
    span.set_attribute("error.type", error_type)
    if error_status:
        _error_status(span, failure)
    return status


def _error_status(span: Span, failure: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    # Never a message: a provider's (relayed in a PrismgateError's) may quote the prompt,
    # and a bug's may hold anything. The status and the error's code or type say enough.
    description = type(failure).__name__
    if isinstance(failure, PrismgateError):
        description = f"{failure.status_code} {failure.code or description}"
    span.set_status(Status(StatusCode.ERROR, description))


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
