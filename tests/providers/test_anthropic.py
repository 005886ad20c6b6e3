"""Anthropic through the SDK and the proxy, against the Anthropic emulator."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from PIL import Image

import prismgate
from prismgate import completion
from tests.emulators.anthropic import AnthropicEmulator
from tests.serving import RunningProxy

MODEL = "anthropic/claude-3-7-sonnet-latest"


@pytest.fixture(scope="module")
def _server() -> Iterator[AnthropicEmulator]:
    with AnthropicEmulator() as emulator:
        yield emulator


@pytest.fixture
def anthropic(_server: AnthropicEmulator) -> AnthropicEmulator:
    _server.reset()
    return _server


def image(width: int, height: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


def ask(emulator: AnthropicEmulator, *parts: dict[str, object], **kwargs: object) -> object:
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, *parts]},
    ]
    return completion(
        model=MODEL, messages=messages, api_key=emulator.api_key, api_base=emulator.base_url,
        **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def image_part(url: str, **extra: str) -> dict[str, object]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


def test_claude_with_a_jpeg_whose_prefix_lies(anthropic: AnthropicEmulator) -> None:
    jpeg = base64.b64encode(image(40, 30, "JPEG")).decode()
    answer = ask(anthropic, image_part(f"data:image/png;base64,{jpeg}"))
    assert isinstance(answer, prismgate.ChatCompletion)
    assert answer.choices[0].message.content == (
        "I see 1 image(s): 40x30 image/jpeg. You said: What is this?"
    )
    sent = anthropic.requests[-1]
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["x-api-key"] == anthropic.api_key
    body = sent.json
    assert body is not None
    assert body["system"] == "Answer briefly."
    assert body["max_tokens"] == 64000  # the catalog's, since the caller gave none
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/jpeg", "data": jpeg},
    }


def test_seed_format_field_and_https_urls(anthropic: AnthropicEmulator) -> None:
    png = base64.b64encode(image(8, 8, "PNG")).decode()
    ask(anthropic, image_part(f"data:image/png;base64,{png}", format="image/png"),
        image_part("https://images.example.com/cat.jpg"))  # fmt: skip
    blocks = anthropic.requests[-1].json["messages"][0]["content"]  # type: ignore[index]
    assert blocks[1]["source"]["media_type"] == "image/png"
    assert blocks[2] == {
        "type": "image",
        "source": {"type": "url", "url": "https://images.example.com/cat.jpg"},
    }


def test_non_images_are_refused_and_oversize_downscaled(anthropic: AnthropicEmulator) -> None:
    bmp = base64.b64encode(image(20, 10, "BMP")).decode()
    with pytest.raises(prismgate.BadRequestError, match="is not a PNG, JPEG, GIF or WebP"):
        ask(anthropic, image_part(f"data:image/bmp;base64,{bmp}"))
    assert anthropic.requests == []
    wide = base64.b64encode(image(9000, 10, "PNG")).decode()  # over Anthropic's 8000 px
    answer = ask(anthropic, image_part(f"data:image/png;base64,{wide}"))
    assert isinstance(answer, prismgate.ChatCompletion)
    assert "8000x9 image/png" in (answer.choices[0].message.content or "")
    data = anthropic.requests[-1].json["messages"][0]["content"][1]["source"]["data"]  # type: ignore[index]
    with Image.open(io.BytesIO(base64.b64decode(data))) as sent:
        assert sent.size == (8000, 9)  # aspect ratio kept


def test_streaming_is_translated(anthropic: AnthropicEmulator) -> None:
    stream = ask(anthropic, stream=True)
    chunks = list(stream)  # type: ignore[call-overload]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "I see 0 image(s). You said: What is this?"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0


def test_anthropic_errors_keep_their_meaning(anthropic: AnthropicEmulator) -> None:
    anthropic.fail_next("status", status=529)
    with pytest.raises(prismgate.ServiceUnavailableError) as caught:
        ask(anthropic)
    assert caught.value.upstream_status == 529
    with pytest.raises(prismgate.AuthenticationError):
        completion(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                   api_key="sk-ant-wrong-key-123", api_base=anthropic.base_url)  # fmt: skip
    with pytest.raises(prismgate.UnsupportedParamsError, match="presence_penalty"):
        ask(anthropic, presence_penalty=0.5)


def test_a_caller_that_leaves_cancels_the_upstream_stream(
    anthropic: AnthropicEmulator, serve: Callable[..., RunningProxy]
) -> None:
    anthropic.stream_delay = 0.3  # a slow answer: the caller leaves long before its end
    proxy = serve(
        {"model_list": [{"model_name": "claude", "litellm_params": {
            "model": MODEL, "api_base": anthropic.base_url, "api_key": anthropic.api_key}}]}
    )  # fmt: skip
    body = {"model": "claude", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", proxy.base_url + "/v1/chat/completions", json=body) as answer:
        assert answer.status_code == 200
        next(answer.iter_bytes())  # the first event arrived; now hang up
    deadline = time.monotonic() + 5
    while anthropic.streams_abandoned == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert anthropic.streams_abandoned == 1  # the gateway closed its upstream call too


def test_drop_params_drops_what_claude_has_no_meaning_for(anthropic: AnthropicEmulator) -> None:
    with pytest.raises(prismgate.UnsupportedParamsError) as caught:
        ask(anthropic, seed=7, presence_penalty=0.2)
    assert caught.value.param == "presence_penalty"
    assert "drop_params=True" in caught.value.message
    assert anthropic.requests == []
    answer = ask(anthropic, seed=7, presence_penalty=0.2, drop_params=True)
    assert isinstance(answer, prismgate.ChatCompletion)
    sent = anthropic.requests[-1].json
    assert sent is not None and "seed" not in sent and "presence_penalty" not in sent
    assert answer._hidden_params is not None
    assert answer._hidden_params.dropped_params == ("presence_penalty", "seed")
