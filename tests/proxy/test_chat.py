"""`POST /v1/chat/completions` through the real server, whole and streamed."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable

import httpx
import openai
from PIL import Image

from tests.emulators import OpenAIEmulator
from tests.proxy.conftest import RunningProxy, model


def png_data_url(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


CONFIG = {
    "model_list": [
        model("llava-hf", "mock/llava-hf", model_info={"supports_vision": True}),
        model("text-only", "mock/text", model_info={"supports_vision": False}),
    ]
}
MESSAGES = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What's in this image?"},
            {"type": "image_url", "image_url": {"url": png_data_url(32, 16), "detail": "low"}},
        ],
    }
]


def test_openai_sdk_vision_chat(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(CONFIG)
    client = openai.OpenAI(api_key="x", base_url=proxy.base_url + "/v1")
    answer = client.chat.completions.create(model="llava-hf", messages=MESSAGES)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == (
        "I see 1 image(s): 32x16 image/png. You said: What's in this image?"
    )
    assert answer.usage is not None and answer.usage.total_tokens > 0


def test_openai_sdk_streaming(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(CONFIG)
    client = openai.OpenAI(api_key="x", base_url=proxy.base_url + "/v1")
    stream = client.chat.completions.create(model="llava-hf", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "I see 1 image(s): 32x16 image/png. You said: What's in this image?"


def test_raw_stream_ends_with_done(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(CONFIG)
    with httpx.stream(
        "POST",
        proxy.base_url + "/chat/completions",
        json={"model": "llava-hf", "messages": MESSAGES, "stream": True},
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        body = b"".join(answer.iter_bytes())
    assert body.rstrip().endswith(b"data: [DONE]")
    assert answer.headers["x-request-id"]


def test_vision_awareness_refuses_before_any_call(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(CONFIG)
    answer = httpx.post(
        proxy.base_url + "/v1/chat/completions", json={"model": "text-only", "messages": MESSAGES}
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "model_not_vision_capable"
    assert "text-only does not accept images (supports_vision: false)" in error["message"]


def test_azure_style_chat_path_and_bad_parts(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(CONFIG)
    azure = openai.AzureOpenAI(api_key="x", azure_endpoint=proxy.base_url, api_version="2024-10-21")
    answer = azure.chat.completions.create(model="llava-hf", messages=MESSAGES)  # type: ignore[arg-type]
    assert (answer.choices[0].message.content or "").startswith("I see 1 image(s)")
    bad = httpx.post(
        proxy.base_url + "/v1/chat/completions",
        json={"model": "llava-hf", "messages": [{"role": "user", "content": [{"type": "video"}]}]},
    )
    assert bad.status_code == 400
    assert "messages[0].content" in bad.json()["error"]["message"]


def test_answers_carry_every_field_of_openais_wire(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(CONFIG)
    body = {"model": "llava-hf", "messages": [{"role": "user", "content": "hi"}]}
    whole = httpx.post(proxy.base_url + "/v1/chat/completions", json=body).json()
    assert whole["object"] == "chat.completion"
    choice = whole["choices"][0]
    assert (choice["index"], choice["message"]["role"]) == (0, "assistant")
    assert set(whole["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    with httpx.stream(
        "POST", proxy.base_url + "/v1/chat/completions", json={**body, "stream": True}
    ) as answer:
        events = [line for line in answer.iter_lines() if line.startswith("data: {")]
    first = json.loads(events[0].removeprefix("data: "))
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["index"] == 0
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert "finish_reason" in first["choices"][0]


def test_chat_answers_say_how_they_were_served(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(CONFIG)
    answer = httpx.post(
        proxy.base_url + "/v1/chat/completions",
        json={"model": "llava-hf", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert answer.headers["x-portkey-provider"] == "mock"
    assert answer.headers["x-prismgate-response-cost"] == "0.000000"


def test_an_error_event_a_provider_streams_never_shows_a_key(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    """A relayed OpenAI stream is not parsed, but an error event in it is redacted."""
    key = openai_emulator.api_key
    proxy = serve(
        {"model_list": [model("chat", "openai/gpt-4o", api_base=openai_emulator.base_url + "/v1",
                              api_key=key)]}
    )  # fmt: skip
    openai_emulator.fail_next("stream_error", message=f"upstream trouble with key {key}")
    with httpx.stream(
        "POST",
        proxy.base_url + "/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    ) as answer:
        body = answer.read().decode()
    assert "upstream trouble" in body and key not in body
