"""OpenTelemetry traces: a span per call, a child per attempt, the W3C trace context
continued from the caller and handed to the provider; off, nothing of OpenTelemetry."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, TraceIdRatioBased
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    use_span,
)

from prismgate import Gateway, ImageGenerationRequest, load_config
from prismgate.errors import BadRequestError, ConfigError
from prismgate.gateway import CallOptions
from prismgate.observability.span_export import (
    OtlpRecordExporter,
    RecordEncoder,
    encode_records,
    otlp_batches,
)
from prismgate.observability.span_records import (
    CLIENT,
    INTERNAL,
    SERVER,
    ReadableSpans,
    Shape,
    Shared,
    SpanRecord,
)
from prismgate.observability.tracing import Tracing, tracing_from_config, tracing_settings
from prismgate.transport import UpstreamRequest, UpstreamResponse, with_headers
from prismgate.types.chat import ChatCompletionRequest
from prismgate.types.validation import convert_request
from tests.emulators import OpenAIEmulator
from tests.emulators.otlp import OtlpReceiver
from tests.emulators.tls import LoopbackCertificates
from tests.serving import MASTER_KEY, RunningProxy, model

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@dataclass
class Memory:
    provider: TracerProvider
    exporter: InMemorySpanExporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def memory() -> Memory:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Memory(provider, exporter)


@pytest.fixture
def otlp() -> Any:
    with OtlpReceiver() as receiver:
        yield receiver


def gateway_for(
    emulator: OpenAIEmulator, memory: Memory, provider: TracerProvider | None = None
) -> Gateway:
    config = load_config(
        {
            "model_list": [
                model("sdxl", "openai/sdxl", api_base=emulator.base_url + "/v1", api_key="sk-up"),
                model("otters", "mock/otters"),
            ],
            "router_settings": {"num_retries": 2},
            "general_settings": {"retries": {"base_delay": 0.01, "max_delay": 0.02}},
        },
        environ={},
    )
    return Gateway(config, tracing=Tracing(provider or memory.provider))


def traceparent_of(span: ReadableSpan) -> str:
    """The W3C traceparent naming `span`."""
    context = span.context
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


async def test_a_call_is_a_span_whose_attempts_are_children_named_upstream(
    compatible_emulator: OpenAIEmulator, memory: Memory
) -> None:
    compatible_emulator.fail_next("status", status=429)  # one retry: two attempts
    async with gateway_for(compatible_emulator, memory) as gateway:
        await gateway.image_generation(
            ImageGenerationRequest(prompt="an otter", model="sdxl", n=1),
            CallOptions(request_id="req-1", trace_id="pk-trace-1"),
        )
    [call] = [span for span in memory.spans() if span.parent is None]
    attempts = sorted(
        (span for span in memory.spans() if span.parent is not None),
        key=lambda span: span.attributes["prismgate.attempt"],  # type: ignore[index]
    )
    assert call.name == "image_generation sdxl" and call.kind is SpanKind.INTERNAL
    assert call.attributes is not None
    assert call.attributes["portkey.trace_id"] == "pk-trace-1"
    assert call.attributes["prismgate.request_id"] == "req-1"
    assert call.attributes["gen_ai.provider.name"] == "openai"
    assert call.attributes["http.response.status_code"] == 200
    assert len(attempts) == 2
    for attempt in attempts:
        assert attempt.kind is SpanKind.CLIENT
        assert attempt.parent is not None and call.context is not None
        assert attempt.parent.span_id == call.context.span_id
        assert attempt.context is not None
        assert attempt.context.trace_id == call.context.trace_id
    failed, served = attempts
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None and served.attributes is not None
    assert failed.attributes["http.response.status_code"] == 429
    assert served.status.status_code is StatusCode.UNSET
    # Each provider request names the span of the attempt that sent it.
    sent = [request.headers["traceparent"] for request in compatible_emulator.requests]
    assert sent == [traceparent_of(attempt) for attempt in attempts]
    assert all(not span.events for span in memory.spans())  # no traceback recorded


async def test_an_sdk_callers_current_span_is_the_calls_parent(
    compatible_emulator: OpenAIEmulator, memory: Memory
) -> None:
    tracer = memory.provider.get_tracer("the-app")
    async with gateway_for(compatible_emulator, memory) as gateway:
        with tracer.start_as_current_span("the app's work") as outer:
            await gateway.image_generation(ImageGenerationRequest(prompt="x", model="otters"))
    [call] = [span for span in memory.spans() if span.name == "image_generation otters"]
    assert call.parent is not None
    assert call.parent.span_id == outer.get_span_context().span_id


async def test_a_call_the_sampler_leaves_out_is_not_exported_yet_named_upstream(
    compatible_emulator: OpenAIEmulator, memory: Memory
) -> None:
    # The caller's span is not sampled: by the default sampler, nor are the call's spans.
    unsampled = SpanContext(int(CALLER_TRACE, 16), int(CALLER_SPAN, 16), False, TraceFlags(0))
    async with gateway_for(compatible_emulator, memory) as gateway:
        with use_span(NonRecordingSpan(unsampled)):
            await gateway.image_generation(ImageGenerationRequest(prompt="x", model="sdxl"))
    assert memory.spans() == []
    [sent] = [request.headers["traceparent"] for request in compatible_emulator.requests]
    assert sent.startswith(f"00-{CALLER_TRACE}-") and sent.endswith("-00")
    assert sent[36:52] != CALLER_SPAN  # the attempt's span, not the caller's


@pytest.mark.parametrize("sampler", [ALWAYS_OFF, TraceIdRatioBased(1.0)])
async def test_a_configured_sampler_decides_for_the_call_and_its_attempts(
    compatible_emulator: OpenAIEmulator, memory: Memory, sampler: Any
) -> None:
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(memory.exporter))
    async with gateway_for(compatible_emulator, memory, provider) as gateway:
        await gateway.image_generation(ImageGenerationRequest(prompt="x", model="sdxl"))
    sampled = sampler is not ALWAYS_OFF
    assert len(memory.spans()) == (2 if sampled else 0)
    [sent] = [request.headers["traceparent"] for request in compatible_emulator.requests]
    assert sent.endswith("-01" if sampled else "-00")


class Records(SpanExporter):
    """What a processor is handed by a `Tracing(span_records=True)`: span records."""

    def __init__(self) -> None:
        self.records: list[SpanRecord] = []

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.records.extend(spans)
        return SpanExportResult.SUCCESS


async def test_our_otlp_encoding_of_span_records_is_opentelemetrys(
    compatible_emulator: OpenAIEmulator, memory: Memory
) -> None:
    records = Records()
    provider = TracerProvider(resource=Resource.create({"service.name": "gw", "replicas": 3}))
    provider.add_span_processor(SimpleSpanProcessor(records))
    config = load_config(
        {
            "model_list": [
                model(
                    "sdxl",
                    "openai/sdxl",
                    api_base=compatible_emulator.base_url + "/v1",
                    api_key="sk-up",
                )
            ]
        },
        environ={},
    )
    tracing = Tracing(provider, span_records=True)
    compatible_emulator.fail_next("status", status=429)  # an attempt that failed
    async with Gateway(config, tracing=tracing) as gateway:
        parent = tracing.parent(f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")  # a remote parent
        await gateway.image_generation(
            ImageGenerationRequest(prompt="an otter", model="sdxl"),
            CallOptions(request_id="req-1", trace_id="pk-trace-1"),
        )
        assert parent is not None
    assert [span.ended is not None for span in records.records] == [False, True, True]
    for span in records.records:  # no key in two places (span_records.py)
        keys = [*span.shape.attributes, *span.attributes]
        keys += [*span.ended.attributes] if span.ended is not None else []
        assert len(keys) == len(set(keys))
    by_hand = Shape("by hand", SERVER, {"yes": True, "no": False, "one": 1})
    other = SpanRecord(
        by_hand, parent, True, {"cost": 0.25, "debt": -5, "big": 2**62, "text": "é" * 200}
    )
    other.ended = Shared({"ended": True, "empty": ""})
    other.end = 2**63
    other.status = "500 internal_error"
    # Equal values of three types, which the encoder keeps apart.
    alike = [SpanRecord(by_hand, None, True, {"v": value}) for value in (1, True, 1.0, 1, True)]
    spans = [*records.records, other, *alike, *records.records]
    encoder = RecordEncoder()
    for _ in range(2):  # then from what the encoder kept
        assert same_messages(encoder.encode(spans, provider.resource), spans, provider)
    assert same_messages(encode_records(spans, provider.resource), spans, provider)
    listed = SpanRecord(Shape("listed", CLIENT, {}), None, True, {"a": ("b", "c")})
    assert encode_records([other, listed], provider.resource) is None  # left to the SDK
    listed = SpanRecord(Shape("listed", CLIENT, {"a": ("b", "c")}), None, True)
    assert encoder.encode([other, listed], provider.resource) is None
    listed = SpanRecord(Shape("listed", CLIENT, {}), None, True)
    listed.ended = Shared({"a": ("b", "c")})
    assert encoder.encode([listed], provider.resource) is None
    assert same_messages(encoder.encode(spans, provider.resource), spans, provider)


def same_messages(ours: bytes | None, spans: Sequence[SpanRecord], provider: Any) -> bool:
    """Whether `ours` decodes to the message OpenTelemetry's encoder makes of `spans`."""
    assert ours is not None
    readable = ReadableSpans(provider)
    theirs = encode_spans([readable.of(span) for span in spans]).SerializePartialToString()
    return ExportTraceServiceRequest.FromString(ours) == ExportTraceServiceRequest.FromString(
        theirs
    )


def test_attributes_whose_values_keep_changing_are_encoded_each_time() -> None:
    provider = TracerProvider()
    shape = Shape("call", SERVER, {"gen_ai.request.model": "m"})
    encoder = RecordEncoder()
    for batch in range(3):
        spans = [
            SpanRecord(shape, None, True, {"prismgate.request_id": varying(batch, n), "n": n})
            for n in range(400)
        ]
        for span in spans:
            span.end = span.start + 1
        assert same_messages(encoder.encode(spans, provider.resource), spans, provider)


def varying(batch: int, n: int) -> object:
    """A request id, mostly; now and then one not ASCII, one too long for one-byte
    lengths, and a number under the same key."""
    if n % 13 == 0:
        return n
    if n % 11 == 0:
        return f"{'x' * 60}-{batch}-{n}"
    if n % 7 == 0:
        return f"réq-{batch}-{n}"
    return f"req-{batch}-{n}"


def test_a_span_our_encoding_leaves_out_is_exported_by_opentelemetrys(otlp: OtlpReceiver) -> None:
    provider = TracerProvider()
    exporter = OtlpRecordExporter(provider, endpoint=otlp.base_url + "/v1/traces")
    plain = SpanRecord(Shape("plain", INTERNAL, {"a": "b"}), None, True)
    listed = SpanRecord(Shape("listed", INTERNAL, {}), None, True, {"a": ("b", "c")})
    exporter.export([plain])
    exporter.export([plain, listed])
    exporter.shutdown()
    assert [span.name for span in otlp.spans] == ["plain", "plain", "listed"]
    assert otlp.spans[2].attributes["a"] == ["b", "c"]


async def test_a_failed_call_records_its_status_and_error_never_its_prompt_or_traceback(
    compatible_emulator: OpenAIEmulator, memory: Memory
) -> None:
    prompt = "a very private prompt"
    async with gateway_for(compatible_emulator, memory) as gateway:
        with pytest.raises(BadRequestError):
            await gateway.image_generation(
                ImageGenerationRequest(prompt=prompt, model="otters", n=99)
            )
    [call] = [span for span in memory.spans() if span.parent is None]
    assert call.status.status_code is StatusCode.ERROR
    assert call.attributes is not None
    assert call.attributes["http.response.status_code"] == 400
    assert call.attributes["error.type"]
    for span in memory.spans():
        assert not span.events
        assert prompt not in repr(dict(span.attributes or {}))


async def test_an_upstream_error_that_quotes_the_prompt_leaves_it_out_of_every_span(
    compatible_emulator: OpenAIEmulator, memory: Memory
) -> None:
    prompt = "the otter's secret recipe"
    compatible_emulator.fail_next("status", status=400, message=f"cannot draw '{prompt}'")
    async with gateway_for(compatible_emulator, memory) as gateway:
        with pytest.raises(BadRequestError) as caught:
            await gateway.image_generation(ImageGenerationRequest(prompt=prompt, model="sdxl"))
    assert prompt in caught.value.message  # the caller is told; the trace is not
    spans = memory.spans()
    assert {span.status.status_code for span in spans} == {StatusCode.ERROR}
    for span in spans:
        assert prompt not in repr((span.status.description, dict(span.attributes or {})))
        assert span.status.description is not None
        assert span.status.description.startswith("400 ")


async def test_closing_gives_up_on_a_collector_that_does_not_answer(
    otlp: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    exporter = OTLPSpanExporter(endpoint=otlp.base_url + "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracing = Tracing(provider, owns_provider=True, close_timeout=0.2)
    otlp.fail_next("delay", delay=3.0)  # the export at shutdown hangs for 3 s
    config = load_config({"model_list": [model("m", "mock/m")]}, environ={})
    async with Gateway(config, tracing=tracing) as gateway:
        await gateway.image_generation(ImageGenerationRequest(prompt="x", model="m"))
    began = time.monotonic()
    await tracing.aclose()
    assert time.monotonic() - began < 1.5
    assert "the span exporter did not finish within 0.2 s" in caplog.text


async def test_a_streamed_calls_span_ends_when_the_stream_is_closed(
    compatible_emulator: OpenAIEmulator, memory: Memory
) -> None:
    request = convert_request(
        {"model": "otters", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        ChatCompletionRequest,
    )
    async with gateway_for(compatible_emulator, memory) as gateway:
        served = await gateway.chat_completion_stream(request)
        assert [span.name for span in memory.spans()] == ["attempt otters@model_list[1]"]
        async for _ in served.value:
            pass
        await served.value.aclose()
    names = [span.name for span in memory.spans()]
    assert names == ["attempt otters@model_list[1]", "chat_completion otters"]


def proxy_with_tracing(
    serve: Callable[..., RunningProxy], emulator: OpenAIEmulator, receiver: OtlpReceiver
) -> RunningProxy:
    return serve(
        {
            "model_list": [
                model("images", "openai/sdxl", api_base=emulator.base_url + "/v1", api_key="sk-up")
            ],
            "general_settings": {
                "master_key": MASTER_KEY,
                "retries": {"base_delay": 0.01, "max_delay": 0.02},
            },
            "litellm_settings": {"callbacks": ["otel"]},
        },
        environ={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base_url,
            "OTEL_SERVICE_NAME": "prismgate-under-test",
        },
    )


def client(proxy: RunningProxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=MASTER_KEY, max_retries=0)


def test_the_proxy_continues_the_callers_trace_and_exports_it_over_otlp(
    serve: Callable[..., RunningProxy], compatible_emulator: OpenAIEmulator, otlp: OtlpReceiver
) -> None:
    proxy = proxy_with_tracing(serve, compatible_emulator, otlp)
    compatible_emulator.fail_next("status", status=500)  # one retry: two attempts
    client(proxy).images.generate(
        model="images",
        prompt="an otter",
        extra_headers={
            "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
            "x-portkey-trace-id": "pk-trace-7",
        },
    )
    proxy.stop()  # the gateway's tracer provider exports what it holds as it shuts down
    spans = otlp.spans
    [call] = [span for span in spans if span.kind == "SERVER"]
    attempts = [span for span in spans if span.kind == "CLIENT"]
    assert call.trace_id == CALLER_TRACE and call.parent_span_id == CALLER_SPAN
    assert call.name == "image_generation images"
    assert call.attributes["portkey.trace_id"] == "pk-trace-7"
    assert call.resource["service.name"] == "prismgate-under-test"
    assert [a.attributes["http.response.status_code"] for a in attempts] == [500, 200]
    assert {a.parent_span_id for a in attempts} == {call.span_id}
    sent = [request.headers["traceparent"] for request in compatible_emulator.requests]
    assert [parent[:52] for parent in sent] == [f"00-{CALLER_TRACE}-{a.span_id}" for a in attempts]


# Each is refused by W3C Trace Context's rules: the call starts a trace of its own.
HOSTILE_TRACEPARENTS = (
    "00-zz-00f067aa0ba902b7-01",  # not hex
    f"00-{'0' * 32}-{CALLER_SPAN}-01",  # the all-zero trace id is invalid
    f"ff-{CALLER_TRACE}-{CALLER_SPAN}-01",  # version ff is forbidden
    f"00-{CALLER_TRACE}-{CALLER_SPAN}-01-" + "a" * 4000,  # oversized
)


def test_a_hostile_traceparent_starts_a_new_trace_and_nothing_of_it_reaches_the_provider(
    serve: Callable[..., RunningProxy], compatible_emulator: OpenAIEmulator, otlp: OtlpReceiver
) -> None:
    proxy = proxy_with_tracing(serve, compatible_emulator, otlp)
    for traceparent in HOSTILE_TRACEPARENTS:
        answer = client(proxy).images.with_raw_response.generate(
            model="images",
            prompt="x",
            extra_headers={"traceparent": traceparent, "tracestate": "caller=smuggled"},
        )
        assert answer.status_code == 200
    proxy.stop()
    calls = [span for span in otlp.spans if span.kind == "SERVER"]
    assert len(calls) == len(HOSTILE_TRACEPARENTS)
    assert all(call.parent_span_id == "" for call in calls)
    assert CALLER_TRACE not in {call.trace_id for call in calls}
    sent = [request.headers for request in compatible_emulator.requests]
    assert [headers["traceparent"][3:35] for headers in sent] == [c.trace_id for c in calls]
    assert all("tracestate" not in headers for headers in sent)


def traced_config(otlp: OtlpReceiver, **environ: str) -> Any:
    return load_config(
        {"model_list": [model("m", "mock/m")], "litellm_settings": {"callbacks": ["otel"]}},
        environ={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.base_url, **environ},
    )


async def chat(gateway: Gateway) -> None:
    await gateway.chat_completion(
        convert_request(
            {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            ChatCompletionRequest,
        )
    )


async def test_spans_are_sent_from_the_event_loop_in_batches_with_no_thread(
    otlp: OtlpReceiver,
) -> None:
    config = traced_config(
        otlp, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="4", OTEL_BSP_SCHEDULE_DELAY="60000"
    )
    before = set(threading.enumerate())
    async with Gateway(config) as gateway:
        for _ in range(5):
            await chat(gateway)
        # Two calls make a batch of 4 spans: sent at once, long before the 60 s delay.
        await wait_until(lambda: len(otlp.spans) >= 8)
        started = set(threading.enumerate()) - before
        assert not [thread for thread in started if "Otel" in thread.name]  # no exporter
    assert len(otlp.spans) == 10  # the last call's two, sent as the gateway closed
    assert len({span.trace_id for span in otlp.spans}) == 5
    [request] = otlp.requests[:1]
    assert request.headers["content-type"] == "application/x-protobuf"


async def test_a_busy_gateway_sends_full_batches_not_what_came_in_during_the_last_post(
    otlp: OtlpReceiver,
) -> None:
    otlp.fail_next("delay", delay=0.05, times=100)  # each POST takes a while
    config = traced_config(
        otlp, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="4", OTEL_BSP_SCHEDULE_DELAY="60000"
    )
    async with Gateway(config) as gateway:
        for _ in range(20):  # spans keep coming while POSTs are under way
            await chat(gateway)
            await asyncio.sleep(0.03)
    per_post = [
        sum(len(scope.spans) for spans in export.resource_spans for scope in spans.scope_spans)
        for export in (ExportTraceServiceRequest.FromString(r.raw) for r in otlp.requests)
    ]
    assert sum(per_post) == 40
    assert set(per_post[:-1]) == {4}  # a part batch only at close


async def test_a_collector_that_fails_gets_the_batch_again_after_its_retry_after(
    otlp: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    otlp.fail_next("status", status=503, retry_after=0.3)
    otlp.fail_next("reset")
    config = traced_config(
        otlp,
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="2",
        OTEL_BSP_SCHEDULE_DELAY="50",
        OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20s3cret",
    )
    async with Gateway(config) as gateway:
        await chat(gateway)
        began = time.monotonic()
        await wait_until(lambda: len(otlp.spans) == 2, seconds=10)
        assert time.monotonic() - began >= 0.3  # the collector's Retry-After, not 50 ms
    assert [r.headers["authorization"] for r in otlp.requests] == ["Bearer s3cret"] * 3
    assert "tracing: the endpoint did not take a batch (status 503)" in caplog.text
    assert "tracing: the endpoint takes spans again; 0 were dropped meanwhile" in caplog.text
    assert otlp.base_url not in caplog.text and "s3cret" not in caplog.text


async def test_a_batch_the_collector_refuses_is_dropped_and_said_once(
    otlp: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    otlp.fail_next("status", status=400)  # a 4xx other than 429: sending again cannot help
    config = traced_config(otlp, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="2")
    async with Gateway(config) as gateway:
        await chat(gateway)
        await wait_until(lambda: "tracing: 2 spans dropped" in caplog.text)
        await chat(gateway)
        await wait_until(lambda: len(otlp.spans) == 2)
    assert len(otlp.requests) == 2


async def test_a_collector_that_cannot_keep_up_is_said_once_not_once_a_dropped_span(
    otlp: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    otlp.fail_next("delay", delay=1.0)  # the first export hangs: the queue fills up
    config = traced_config(otlp, OTEL_BSP_MAX_QUEUE_SIZE="2", OTEL_BSP_MAX_EXPORT_BATCH_SIZE="2")
    async with Gateway(config) as gateway:
        for _ in range(8):
            await chat(gateway)
    dropped = [r for r in caplog.records if "(the queue is full)" in r.getMessage()]
    assert 1 <= len(dropped) <= 2  # the first, and the tenth
    assert 0 < len(otlp.spans) < 16  # what the queue held was exported; the rest dropped


async def test_spans_are_compressed_as_the_variables_say(otlp: OtlpReceiver) -> None:
    config = traced_config(otlp, OTEL_EXPORTER_OTLP_TRACES_COMPRESSION="gzip")
    async with Gateway(config) as gateway:
        await chat(gateway)
    assert [request.headers["content-encoding"] for request in otlp.requests] == ["gzip"]
    assert [span.name for span in otlp.spans] == ["attempt m@model_list[0]", "chat_completion m"]


@pytest.fixture
def https_otlp(tmp_path: Path) -> Any:
    """An OTLP receiver over TLS, its certificate signed by a CA of the test's own."""
    certificates = LoopbackCertificates.make(tmp_path)
    receiver = OtlpReceiver()
    receiver.tls = certificates.server_context()
    with receiver:
        yield receiver, certificates


async def test_an_https_collector_is_trusted_by_the_ca_the_certificate_variable_names(
    https_otlp: tuple[OtlpReceiver, LoopbackCertificates], caplog: pytest.LogCaptureFixture
) -> None:
    receiver, certificates = https_otlp
    # Without the CA, the collector's certificate is refused: nothing is sent.
    async with Gateway(traced_config(receiver, OTEL_BSP_SCHEDULE_DELAY="50")) as gateway:
        await chat(gateway)
        await wait_until(
            lambda: "did not take a batch (ClientConnectorCertificateError)" in caplog.text
        )
    assert receiver.spans == []
    trusted = traced_config(receiver, OTEL_EXPORTER_OTLP_CERTIFICATE=str(certificates.ca))
    async with Gateway(trusted) as gateway:
        await chat(gateway)
    assert [span.kind for span in receiver.spans] == ["CLIENT", "INTERNAL"]


async def test_closing_gives_up_on_a_collector_that_hangs_and_counts_the_spans_dropped(
    otlp: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    otlp.fail_next("delay", delay=3.0)
    provider = TracerProvider()
    settings = tracing_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.base_url})
    batches = otlp_batches(settings, provider, None, close_timeout=0.2)
    tracing = Tracing(provider, owns_provider=True, span_records=True, batches=batches)
    config = load_config({"model_list": [model("m", "mock/m")]}, environ={})
    async with Gateway(config, tracing=tracing) as gateway:
        await chat(gateway)
    began = time.monotonic()
    await tracing.aclose()
    assert time.monotonic() - began < 1.5
    assert "tracing: 2 spans dropped (the gateway stopped before" in caplog.text


async def test_a_span_our_encoding_leaves_out_is_sent_encoded_by_opentelemetry(
    otlp: OtlpReceiver,
) -> None:
    provider = TracerProvider()
    settings = tracing_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.base_url})
    batches = otlp_batches(settings, provider, None, close_timeout=5.0)
    batches.add(SpanRecord(Shape("listed", INTERNAL, {}), None, True, {"a": ("b", "c")}))
    await batches.aclose()
    assert [span.attributes["a"] for span in otlp.spans] == [["b", "c"]]


async def wait_until(done: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_with_tracing_off_opentelemetry_is_never_imported() -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from prismgate import Gateway, ImageGenerationRequest, load_config

        def loaded():
            return any(name.split(".")[0] == "opentelemetry" for name in sys.modules)

        async def call(raw, environ):
            async with Gateway(load_config(raw, environ=environ)) as gateway:
                await gateway.image_generation(ImageGenerationRequest(prompt="x", model="m"))

        mock = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}]}
        asyncio.run(call(mock, {}))
        print("off", loaded())
        traced = {**mock, "litellm_settings": {"callbacks": ["otel"]}}
        asyncio.run(call(traced, {"OTEL_TRACES_EXPORTER": "none"}))
        print("on", loaded())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["off", "False", "on", "True"]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' is not"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER: 'zipkin' is not available"),
        ({"OTEL_EXPORTER": "otlp_grpc"}, "OTEL_EXPORTER: 'otlp_grpc' is not available"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:s3cret@collector:4318"},
            "OTEL_EXPORTER_OTLP_ENDPOINT: not an http(s) URL without credentials",
        ),
        ({"OTEL_BSP_SCHEDULE_DELAY": "soon"}, "OTEL_BSP_SCHEDULE_DELAY: 'soon' is not a positive"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "OTEL_BSP_MAX_QUEUE_SIZE: '0' is not a positive"),
        (
            {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4096"},
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE: more than OTEL_BSP_MAX_QUEUE_SIZE",
        ),
        ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "-1"}, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '-1'"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "OTEL_EXPORTER_OTLP_COMPRESSION: 'zstd' is"),
        (
            {"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"},
            "OTEL_EXPORTER_OTLP_CERTIFICATE: the CA bundle does not load",
        ),
    ],
)
def test_wrong_opentelemetry_settings_are_config_errors(
    environ: dict[str, str], message: str
) -> None:
    raw = {"litellm_settings": {"callbacks": ["otel"]}}
    with pytest.raises(ConfigError) as caught:
        load_config(raw, environ=environ)
    assert message in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_opentelemetry_and_litellm_variables_set_the_export() -> None:
    standard = tracing_settings(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=a%20b,x-team=imaging",
            "OTEL_SERVICE_NAME": "gw",
        }
    )
    assert standard.endpoint == "http://collector:4318/v1/traces"
    assert standard.headers == (("api-key", "a b"), ("x-team", "imaging"))
    assert standard.service_name == "gw"
    own = tracing_settings({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/custom"})
    assert own.endpoint == "http://c/custom"
    litellm = tracing_settings(
        {"OTEL_EXPORTER": "otlp_http", "OTEL_ENDPOINT": "https://t.example", "OTEL_HEADERS": "a=b"}
    )
    assert (litellm.exporter, litellm.endpoint) == ("otlp", "https://t.example/v1/traces")
    assert tracing_settings({"OTEL_EXPORTER": "console"}).exporter == "console"
    traced = load_config(
        {"litellm_settings": {"success_callback": ["otel"]}},
        environ={"OTEL_SDK_DISABLED": "true"},
    )
    assert tracing_from_config(traced) is None  # OpenTelemetry's own off switch
    assert not standard.credential_provider  # sent by prismgate, from the event loop
    assert (standard.batch_size, standard.max_queued, standard.flush_interval) == (512, 2048, 5.0)
    assert (standard.timeout, standard.compression) == (10.0, "none")
    tuned = tracing_settings(
        {
            "OTEL_BSP_SCHEDULE_DELAY": "250",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2.5",  # seconds, as OpenTelemetry's Python SDK reads it
            "OTEL_EXPORTER_OTLP_COMPRESSION": "GZIP",
        }
    )
    assert (tuned.flush_interval, tuned.batch_size, tuned.timeout) == (0.25, 64, 2.5)
    assert tuned.compression == "gzip"
    provided = {"OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER": "vault"}
    assert tracing_settings(provided).credential_provider  # the provider's session


class Recording:
    """A transport of the caller's own (not this package's): it keeps what it is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[UpstreamRequest, Mapping[str, str] | None]] = []

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        self.sent.append((request, None))
        return UpstreamResponse(status=200, headers={}, body=b"{}")

    def stream(self, request: UpstreamRequest) -> Any:
        raise NotImplementedError


class PassingOn(Recording):
    """A wrapper that takes the headers to add, as this package's transports do."""

    async def send(  # type: ignore[override]
        self, request: UpstreamRequest, *, added_headers: Mapping[str, str] | None = None
    ) -> UpstreamResponse:
        self.sent.append((request, added_headers))
        return UpstreamResponse(status=200, headers={}, body=b"{}")

    def stream(self, request: UpstreamRequest, *, added_headers: Any = None) -> Any:
        raise NotImplementedError


async def test_a_transport_of_the_callers_own_is_sent_copies_carrying_the_trace() -> None:
    request = UpstreamRequest(
        "POST",
        "http://up.example/v1",
        "openai",
        headers={"a": "b"},
        body=b"{}",
        timeout=5.0,
        connect_timeout=1.0,
        max_answer_bytes=1000,
    )
    trace = {"traceparent": "00-ab-cd-01"}
    recording, passing_on = Recording(), PassingOn()
    await with_headers(recording, lambda: trace).send(request)
    await with_headers(passing_on, lambda: trace).send(request)
    # A copy, every field kept; the caller's request left as it was.
    assert recording.sent == [(replace(request, headers={"a": "b", **trace}), None)]
    assert request.headers == {"a": "b"}
    assert passing_on.sent == [(request, trace)]  # no copy: the headers handed on
