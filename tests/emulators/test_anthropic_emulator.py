"""Tests of the Anthropic Messages emulator, through a real HTTP client against the real server."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .anthropic import DEFAULT_ANTHROPIC_KEY, AnthropicEmulator
from .images import make_image

MESSAGES = "/v1/messages"
VERSION = "2023-06-01"


@pytest.fixture(scope="module")
def server() -> Iterator[AnthropicEmulator]:
    with AnthropicEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(server: AnthropicEmulator) -> AnthropicEmulator:
    server.reset()
    return server


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def image_block(data: bytes, media_type: str = "image/png") -> dict[str, Any]:
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": b64(data)},
    }


def body(*content: Any, **extra: Any) -> dict[str, Any]:
    blocks = list(content) or [{"type": "text", "text": "hello"}]
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 200,
        "messages": [{"role": "user", "content": blocks}],
        **extra,
    }


def post(
    http: httpx.Client,
    emu: AnthropicEmulator,
    payload: Any,
    *,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    sent = {"x-api-key": emu.api_key, "anthropic-version": VERSION} if headers is None else headers
    return http.post(emu.base_url + MESSAGES, json=payload, headers=sent, **kwargs)


def error_of(response: httpx.Response, status: int, type_: str) -> str:
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == type_
    assert payload["request_id"] == response.headers["request-id"]
    message: str = payload["error"]["message"]
    return message


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


# ---------------------------------------------------------------------------- lifecycle


def test_lifecycle_and_context_manager(http: httpx.Client) -> None:
    emulator = AnthropicEmulator()
    with pytest.raises(RuntimeError):
        _ = emulator.base_url
    with emulator as running:
        assert running is emulator
        assert emulator.api_key == DEFAULT_ANTHROPIC_KEY
        url = emulator.base_url
        assert post(http, emulator, body()).status_code == 200
        with pytest.raises(RuntimeError):
            emulator.start()
    with pytest.raises(httpx.ConnectError):
        http.post(url + MESSAGES, json={})
    emulator.stop()


def test_bad_fault_arguments(emu: AnthropicEmulator) -> None:
    for kind, kwargs in [("explode", {}), ("status", {}), ("delay", {}), ("reset", {"times": 0})]:
        with pytest.raises(ValueError):
            emu.fail_next(kind, **kwargs)  # type: ignore[arg-type]
    emu.fail_next("stream_error")  # accepted here, unlike the images emulator


# ---------------------------------------------------------------------------- answers


def test_answer_describes_the_images_it_received(
    http: httpx.Client, emu: AnthropicEmulator
) -> None:
    png, jpeg = make_image(64, 64, "png"), make_image(10, 10, "jpeg")
    payload = body(
        image_block(png),
        image_block(jpeg, "image/jpeg"),
        {"type": "text", "text": "What is in these?"},
    )
    response = post(http, emu, payload)
    assert response.status_code == 200, response.text
    assert response.headers["request-id"].startswith("req_")
    message = response.json()
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["model"] == "claude-sonnet-4-5"
    assert message["id"].startswith("msg_")
    assert message["content"] == [
        {
            "type": "text",
            "text": "I see 2 image(s): 64x64 image/png; 10x10 image/jpeg. "
            "You said: What is in these?",
        }
    ]
    assert message["stop_reason"] == "end_turn" and message["stop_sequence"] is None
    usage = message["usage"]
    assert usage["output_tokens"] == 14
    assert usage["input_tokens"] == 4 + 6 + 1  # words + one token per image at ~w*h/750
    assert [image.sha256 for image in emu.images] == [
        hashlib.sha256(png).hexdigest(),
        hashlib.sha256(jpeg).hexdigest(),
    ]
    assert emu.images[0].size == len(png)


def test_answers_are_deterministic(http: httpx.Client, emu: AnthropicEmulator) -> None:
    payload = body(image_block(make_image(32, 16, "webp"), "image/webp"))
    first, second = post(http, emu, payload).json(), post(http, emu, payload).json()
    assert first["content"] == second["content"]
    assert first["usage"] == second["usage"]
    assert first["content"][0]["text"] == "I see 1 image(s): 32x16 image/webp."


def test_bearer_auth_string_content_and_system(http: httpx.Client, emu: AnthropicEmulator) -> None:
    payload = {
        "model": "claude-haiku-4-5",
        "max_tokens": 50,
        "system": [{"type": "text", "text": "Be brief and kind."}],
        "messages": [
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "second question"},
        ],
    }
    headers = {"Authorization": f"Bearer {emu.api_key}", "anthropic-version": "2026-10-21"}
    response = post(http, emu, payload, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "I see 0 image(s). You said: second question"
    assert response.json()["usage"]["input_tokens"] == 4 + 2 + 2 + 2


def test_url_and_tool_result_images(http: httpx.Client, emu: AnthropicEmulator) -> None:
    url = "https://example.com/cat.png"
    payload = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "look"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "tu_1", "name": "shot", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "tu_1",
                        "content": [
                            {"type": "text", "text": "screenshot"},
                            image_block(make_image(20, 30, "png")),
                        ],
                    },
                    {"type": "image", "source": {"type": "url", "url": url}},
                ],
            },
        ],
    }
    response = post(http, emu, payload)
    assert response.status_code == 200, response.text
    text = response.json()["content"][0]["text"]
    assert text == f"I see 2 image(s): 20x30 image/png; url at {url}. You said: screenshot"


def test_max_tokens_and_stop_sequences(http: httpx.Client, emu: AnthropicEmulator) -> None:
    cut = post(http, emu, body(max_tokens=3)).json()
    assert cut["stop_reason"] == "max_tokens"
    assert cut["content"][0]["text"] == "I see 0"
    assert cut["usage"]["output_tokens"] == 3
    stopped = post(http, emu, body(stop_sequences=["said"])).json()
    assert stopped["stop_reason"] == "stop_sequence"
    assert stopped["stop_sequence"] == "said"
    assert stopped["content"][0]["text"] == "I see 0 image(s). You "


# ---------------------------------------------------------------------------- auth and headers


def test_auth_errors(http: httpx.Client, emu: AnthropicEmulator) -> None:
    missing = post(http, emu, body(), headers={"anthropic-version": VERSION})
    assert error_of(missing, 401, "authentication_error") == "x-api-key header is required"
    wrong = post(http, emu, body(), headers={"x-api-key": "nope", "anthropic-version": VERSION})
    assert error_of(wrong, 401, "authentication_error") == "invalid x-api-key"
    no_version = post(http, emu, body(), headers={"x-api-key": emu.api_key})
    assert "anthropic-version" in error_of(no_version, 400, "invalid_request_error")


def test_unknown_route_and_model(http: httpx.Client, emu: AnthropicEmulator) -> None:
    headers = {"x-api-key": emu.api_key, "anthropic-version": VERSION}
    assert http.post(emu.base_url + "/v1/complete", headers=headers).status_code == 404
    model = post(http, emu, {**body(), "model": "gpt-4o"})
    assert error_of(model, 404, "not_found_error") == "model: gpt-4o"
    with AnthropicEmulator(models=["claude-only-this"]) as strict:
        ok = post(http, strict, {**body(), "model": "claude-only-this"})
        assert ok.status_code == 200
        assert post(http, strict, body()).status_code == 404
        listing = http.get(
            strict.base_url + "/v1/models", headers=headers | {"x-api-key": strict.api_key}
        )
        assert [m["id"] for m in listing.json()["data"]] == ["claude-only-this"]


def test_model_listing(http: httpx.Client, emu: AnthropicEmulator) -> None:
    headers = {"x-api-key": emu.api_key, "anthropic-version": VERSION}
    listing = http.get(emu.base_url + "/v1/models", headers=headers)
    assert listing.status_code == 200 and listing.json()["has_more"] is False
    first = listing.json()["data"][0]["id"]
    assert http.get(f"{emu.base_url}/v1/models/{first}", headers=headers).json()["id"] == first
    assert http.get(emu.base_url + "/v1/models").status_code == 401


# ---------------------------------------------------------------------------- validation

PNG = make_image(8, 8, "png")
JPEG = make_image(8, 8, "jpeg")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"max_tokens": 5, "messages": []}, "model: Field required"),
        ({"model": "claude-x", "messages": []}, "max_tokens: Field required"),
        ({"model": "claude-x", "max_tokens": 5}, "messages: Field required"),
        (body(max_tokens=0), "max_tokens: Input should be greater than or equal to 1"),
        (body(max_tokens="5"), "max_tokens: Input should be a valid integer"),
        (body(max_tokens=True), "max_tokens: Input should be a valid integer"),
        (body(temperature=1.5), "temperature: range: 0..1"),
        (body(n=2), "n: Extra inputs are not permitted"),
        ({**body(), "messages": []}, "messages: at least one message is required"),
        (
            {**body(), "messages": [{"role": "system", "content": "be nice"}]},
            'Unexpected role "system". The Messages API accepts a top-level `system` parameter, '
            'not "system" as an input message role.',
        ),
        (
            {**body(), "messages": [{"role": "tool", "content": "x"}]},
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (
            {**body(), "messages": [{"role": "user", "content": ""}]},
            "messages.0: all messages must have non-empty content except for the optional final "
            "assistant message",
        ),
        (body({"type": "text", "text": ""}), "messages: text content blocks must be non-empty"),
        (
            body({"type": "image_url", "image_url": {"url": "https://x"}}),
            "messages.0.content.0: Input tag 'image_url' found using 'type' does not match any of "
            "the expected tags: 'text', 'image', 'tool_use', 'tool_result'",
        ),
        (
            body(image_block(PNG, "image/bmp")),
            "messages.0.content.0.image.source.base64.media_type: Input should be 'image/jpeg', "
            "'image/png', 'image/gif' or 'image/webp'",
        ),
        (
            body({"type": "text", "text": "hi"}, image_block(JPEG, "image/png")),
            "messages.0.content.1.image.source.base64.data: Image does not match the provided "
            "media type image/png",
        ),
        (
            body(image_block(PNG, "image/jpeg")),
            "messages.0.content.0.image.source.base64.data: Image does not match the provided "
            "media type image/jpeg",
        ),
        (
            body(
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "%%%"},
                }
            ),
            "messages.0.content.0.image.source.base64.data: The image data is not valid base64",
        ),
        (
            body(image_block(PNG[:8] + b"garbage", "image/png")),
            "messages.0.content.0.image.source.base64.data: Could not process image",
        ),
        (
            body({"type": "image", "source": {"type": "url", "url": "http://example.com/a.png"}}),
            "messages.0.content.0.image.source.url.url: Only HTTPS URLs are supported",
        ),
        (
            body({"type": "tool_use", "id": "a", "name": "b", "input": {}}),
            "messages.0.content.0: tool_use blocks are only allowed in assistant messages",
        ),
        (
            body(system=[{"type": "text", "text": ""}]),
            "system: text content blocks must be non-empty",
        ),
    ],
)
def test_validation_errors(
    http: httpx.Client, emu: AnthropicEmulator, payload: dict[str, Any], message: str
) -> None:
    response = post(http, emu, payload)
    assert error_of(response, 400, "invalid_request_error") == message
    assert emu.images == []


def test_unparsable_body(http: httpx.Client, emu: AnthropicEmulator) -> None:
    headers = {"x-api-key": emu.api_key, "anthropic-version": VERSION}
    response = http.post(emu.base_url + MESSAGES, content=b"{not json", headers=headers)
    assert error_of(response, 400, "invalid_request_error")


def test_image_size_limit_counts_the_base64_text(
    http: httpx.Client, emu: AnthropicEmulator
) -> None:
    data = PNG[:8] + bytes(4_000_000)  # 4.0 MB of bytes, 5.33 MB as base64
    response = post(http, emu, body(image_block(data)))
    encoded = len(b64(data))
    assert error_of(response, 400, "invalid_request_error") == (
        "messages.0.content.0.image.source.base64: image exceeds 5 MB maximum: "
        f"{encoded} bytes > 5242880 bytes"
    )


def test_image_dimension_limits(http: httpx.Client, emu: AnthropicEmulator) -> None:
    tall = post(http, emu, body(image_block(make_image(8, 8001, "png"))))
    assert error_of(tall, 400, "invalid_request_error") == (
        "messages.0.content.0.image.source.base64.data: At least one of the image dimensions "
        "exceed max allowed size: 8000 pixels"
    )
    assert post(http, emu, body(image_block(make_image(8000, 8, "png")))).status_code == 200
    small = image_block(make_image(8, 8, "png"))
    wide = image_block(make_image(2001, 4, "png"))
    many = post(http, emu, body(*([small] * 20), wide))
    assert error_of(many, 400, "invalid_request_error") == (
        "messages.0.content.20.image.source.base64.data: At least one of the image dimensions "
        "exceed max allowed size for many-image requests: 2000 pixels"
    )
    assert post(http, emu, body(*([small] * 19), wide)).status_code == 200


# ---------------------------------------------------------------------------- streaming


def test_streaming_events(http: httpx.Client, emu: AnthropicEmulator) -> None:
    payload = body(image_block(make_image(64, 64, "png")), {"type": "text", "text": "describe"})
    whole = post(http, emu, payload).json()
    response = post(http, emu, {**payload, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [data["delta"]["text"] for name, data in events if name == "content_block_delta"]
    assert len(deltas) >= 2
    assert "".join(deltas) == whole["content"][0]["text"]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == whole["usage"]["input_tokens"]
    final = events[-2][1]
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"] == {"output_tokens": whole["usage"]["output_tokens"]}


def test_stream_error_fault(http: httpx.Client, emu: AnthropicEmulator) -> None:
    emu.fail_next("stream_error")
    response = post(http, emu, body(stream=True))
    assert response.status_code == 200
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[-2:] == ["content_block_delta", "error"]
    assert names.count("content_block_delta") == 1
    assert events[-1][1] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    emu.fail_next("stream_error", status=500, message="boom")
    assert sse_events(post(http, emu, body(stream=True)).text)[-1][1]["error"] == {
        "type": "api_error",
        "message": "boom",
    }
    emu.fail_next("stream_error")  # a non-streamed request gets the error as its status
    assert error_of(post(http, emu, body()), 529, "overloaded_error") == "Overloaded"
    assert post(http, emu, body(stream=True)).text.rstrip().endswith('{"type":"message_stop"}')


def test_truncated_stream(http: httpx.Client, emu: AnthropicEmulator) -> None:
    emu.fail_next("truncate")
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream(
            "POST",
            emu.base_url + MESSAGES,
            json=body(stream=True),
            headers={"x-api-key": emu.api_key, "anthropic-version": VERSION},
        ) as response,
    ):
        assert response.status_code == 200
        response.read()


# ---------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("status", "type_"),
    [
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
        (413, "request_too_large"),
        (403, "permission_error"),
    ],
)
def test_status_faults_use_anthropic_bodies(
    http: httpx.Client, emu: AnthropicEmulator, status: int, type_: str
) -> None:
    emu.fail_next("status", status=status)
    error_of(post(http, emu, {"garbage": True}), status, type_)
    assert emu.requests[0].json == {"garbage": True}
    assert post(http, emu, body()).status_code == 200


def test_status_fault_retry_after_and_message(http: httpx.Client, emu: AnthropicEmulator) -> None:
    emu.fail_next("status", status=429, retry_after=2, times=2, message="slow down")
    for _ in range(2):
        response = post(http, emu, body())
        assert error_of(response, 429, "rate_limit_error") == "slow down"
        assert response.headers["retry-after"] == "2"
    assert post(http, emu, body()).status_code == 200


def test_delay_reset_and_truncate_faults(http: httpx.Client, emu: AnthropicEmulator) -> None:
    emu.fail_next("delay", delay=0.3)
    started = time.perf_counter()
    assert post(http, emu, body()).status_code == 200
    assert time.perf_counter() - started >= 0.3
    emu.fail_next("reset")
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        post(http, emu, body())
    emu.fail_next("truncate")
    with pytest.raises(httpx.RemoteProtocolError):
        post(http, emu, body())
    assert post(http, emu, body()).status_code == 200
    assert len(emu.requests) == 4


def test_requests_are_recorded_and_reset(http: httpx.Client, emu: AnthropicEmulator) -> None:
    payload = body(image_block(PNG))
    post(http, emu, payload, headers={"X-Api-Key": emu.api_key, "anthropic-version": VERSION})
    (received,) = emu.requests
    assert received.method == "POST" and received.path == MESSAGES
    assert received.raw_path == MESSAGES
    assert received.headers["x-api-key"] == emu.api_key
    assert received.json == payload
    assert json.loads(received.raw) == payload
    assert len(emu.images) == 1
    emu.fail_next("status", status=500)
    emu.reset()
    assert emu.requests == [] and emu.images == []
    assert post(http, emu, body()).status_code == 200
