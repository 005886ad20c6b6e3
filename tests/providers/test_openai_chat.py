"""Vision chat on the OpenAI wire (OpenAI, Azure, xAI, compatible servers), SDK and proxy,
against the OpenAI-style emulator: the exact upstream body for each image form."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import openai
import pytest
from PIL import Image

import prismgate
from prismgate import acompletion, completion
from tests.emulators import OpenAIEmulator
from tests.serving import RunningProxy, model

QUESTION = "What is this?"


def image(width: int, height: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def image_part(url: str, **extra: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


def user(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": QUESTION}, *parts]}]


def ask(emulator: OpenAIEmulator, model_id: str, *parts: dict[str, Any], **kwargs: Any) -> Any:
    base = emulator.base_url if emulator.flavor == "azure" else emulator.base_url + "/v1"
    return completion(
        model=model_id, messages=user(*parts), api_key=emulator.api_key, api_base=base, **kwargs
    )


def sent_parts(emulator: OpenAIEmulator) -> list[dict[str, Any]]:
    body = emulator.requests[-1].json
    assert body is not None
    parts: list[dict[str, Any]] = body["messages"][0]["content"]
    return parts


def text_of(answer: Any) -> str:
    assert isinstance(answer, prismgate.ChatCompletion)
    return answer.choices[0].message.content or ""


def test_https_url_is_passed_as_is_with_detail(openai_emulator: OpenAIEmulator) -> None:
    url = "https://images.example.com/cat.jpg?size=large"
    answer = ask(openai_emulator, "openai/gpt-4o", image_part(url, detail="high"))
    sent = openai_emulator.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {openai_emulator.api_key}"
    assert sent.json == {
        "model": "gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": QUESTION},
                    {"type": "image_url", "image_url": {"url": url, "detail": "high"}},
                ],
            }
        ],
    }
    assert text_of(answer) == f"I see 1 image(s): url at {url}. You said: {QUESTION}"


def test_data_url_is_passed_as_is(openai_emulator: OpenAIEmulator) -> None:
    url = f"data:image/png;base64,{b64(image(16, 9, 'PNG'))}"
    answer = ask(openai_emulator, "openai/gpt-4o", image_part(url, detail="low"))
    assert sent_parts(openai_emulator)[1] == image_part(url, detail="low")
    assert text_of(answer) == f"I see 1 image(s): 16x9 image/png. You said: {QUESTION}"


def test_lying_prefix_arrives_with_the_true_type(openai_emulator: OpenAIEmulator) -> None:
    jpeg = b64(image(20, 10, "JPEG"))
    answer = ask(openai_emulator, "openai/gpt-4o", image_part(f"data:image/png;base64,{jpeg}"))
    assert sent_parts(openai_emulator)[1] == image_part(f"data:image/jpeg;base64,{jpeg}")
    assert "20x10 image/jpeg" in text_of(answer)


@pytest.mark.parametrize("flavor", ["openai", "azure"])
def test_format_is_never_forwarded(
    flavor: str, openai_emulator: OpenAIEmulator, azure_emulator: OpenAIEmulator
) -> None:
    # The strict emulators answer 400 unknown_parameter for any key but url/detail.
    emulator, model_id = {
        "openai": (openai_emulator, "openai/gpt-4o"),
        "azure": (azure_emulator, "azure/gpt-4o"),
    }[flavor]
    png = b64(image(8, 8, "PNG"))
    ask(emulator, model_id, image_part(f"data:image/png;base64,{png}", format="image/png"))
    assert sent_parts(emulator)[1] == image_part(f"data:image/png;base64,{png}")


def test_gs_url_is_refused_before_any_call(openai_emulator: OpenAIEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError):
        ask(openai_emulator, "openai/gpt-4o", image_part("gs://bucket/cat.png"))
    assert openai_emulator.requests == []


def test_plain_http_url_reaches_openai_style_servers_unchanged(
    openai_emulator: OpenAIEmulator,
) -> None:
    url = "http://intranet.example/cat.png"
    ask(openai_emulator, "openai/gpt-4o", image_part(url))
    assert sent_parts(openai_emulator)[1] == image_part(url)


def test_webp_to_xai_arrives_as_png(xai_emulator: OpenAIEmulator) -> None:
    webp = b64(image(30, 20, "WEBP"))
    answer = ask(
        xai_emulator, "xai/grok-2-vision-1212", image_part(f"data:image/webp;base64,{webp}")
    )
    url = sent_parts(xai_emulator)[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert text_of(answer) == f"I see 1 image(s): 30x20 image/png. You said: {QUESTION}"
    assert xai_emulator.requests[-1].json["model"] == "grok-2-vision-1212"  # type: ignore[index]


def test_azure_classic_path_version_and_key(azure_emulator: OpenAIEmulator) -> None:
    answer = ask(azure_emulator, "azure/gpt-4o", api_version="2024-10-21")
    sent = azure_emulator.requests[-1]
    assert sent.path == "/openai/deployments/gpt-4o/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == azure_emulator.api_key
    assert "authorization" not in sent.headers
    assert sent.json == {"messages": user()}  # the deployment in the path is the model
    assert text_of(answer) == f"I see 0 image(s). You said: {QUESTION}"


def test_streaming_through_the_sdk(openai_emulator: OpenAIEmulator) -> None:
    png = b64(image(4, 4, "PNG"))
    stream = ask(openai_emulator, "openai/gpt-4o", image_part(f"data:image/png;base64,{png}"),
                 stream=True)  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"I see 1 image(s): 4x4 image/png. You said: {QUESTION}"
    assert openai_emulator.requests[-1].json["stream"] is True  # type: ignore[index]


async def test_async_completion_to_a_self_hosted_server(
    compatible_emulator: OpenAIEmulator,
) -> None:
    answer = await acompletion(
        model="openai/llava-hf/llava-v1.6-vicuna-7b-hf",
        messages=user(image_part("https://example.com/a.png")),
        api_base=compatible_emulator.base_url + "/v1",
    )
    assert text_of(answer).startswith("I see 1 image(s): url at https://example.com/a.png.")
    assert compatible_emulator.requests[-1].json == {
        "model": "llava-hf/llava-v1.6-vicuna-7b-hf",
        "messages": user(image_part("https://example.com/a.png")),
    }


def test_rate_limit_during_chat(openai_emulator: OpenAIEmulator) -> None:
    openai_emulator.fail_next("status", status=429, retry_after=1, times=10)
    with pytest.raises(prismgate.RateLimitError) as caught:
        ask(openai_emulator, "openai/gpt-4o")
    assert caught.value.upstream_status == 429


def test_vision_awareness_refuses_before_any_call(openai_emulator: OpenAIEmulator) -> None:
    png = b64(image(4, 4, "PNG"))
    with pytest.raises(prismgate.BadRequestError, match="does not accept images"):
        ask(openai_emulator, "openai/gpt-3.5-turbo", image_part(f"data:image/png;base64,{png}"))
    assert openai_emulator.requests == []


def test_seed_llava_example_through_the_proxy(
    serve: Callable[..., RunningProxy], compatible_emulator: OpenAIEmulator
) -> None:
    entry = model(
        "llava-hf",
        "openai/llava-hf/llava-v1.6-vicuna-7b-hf",
        api_base=compatible_emulator.base_url + "/v1",
    )
    proxy = serve({"model_list": [entry]})
    client = openai.OpenAI(api_key="x", base_url=proxy.base_url + "/v1")
    url = f"data:image/png;base64,{b64(image(32, 16, 'PNG'))}"
    messages: Any = user(image_part(url, detail="low"))
    answer = client.chat.completions.create(model="llava-hf", messages=messages)
    assert answer.choices[0].message.content == (
        f"I see 1 image(s): 32x16 image/png. You said: {QUESTION}"
    )
    assert compatible_emulator.requests[-1].json == {
        "model": "llava-hf/llava-v1.6-vicuna-7b-hf",
        "messages": messages,
    }
    stream = client.chat.completions.create(model="llava-hf", messages=messages, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == f"I see 1 image(s): 32x16 image/png. You said: {QUESTION}"
