"""Chat completions with images through the SDK (the mock provider describes what it got)."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

import prismgate
from prismgate import acompletion, completion
from prismgate.media.images import ImageLimits, fit_image


def png(width: int, height: int, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


def data_url(data: bytes, declared: str) -> str:
    return f"data:{declared};base64,{base64.b64encode(data).decode()}"


def vision_message(*urls: str | dict[str, str]) -> list[dict[str, object]]:
    parts: list[dict[str, object]] = [{"type": "text", "text": "What is in these images?"}]
    parts += [{"type": "image_url", "image_url": url} for url in urls]
    return [{"role": "user", "content": parts}]


def test_sdk_completion_with_images() -> None:
    response = completion(
        model="mock/llava",
        messages=vision_message(data_url(png(64, 48), "image/png"), "https://example.com/a.png"),
    )
    assert isinstance(response, prismgate.ChatCompletion)
    text = response.choices[0].message.content
    assert text == (
        "I see 2 image(s): 64x48 image/png; a linked image (https://example.com/a.png). "
        "You said: What is in these images?"
    )
    assert response.usage is not None and response.usage.completion_tokens > 0
    assert response._hidden_params is not None and response._hidden_params.provider == "mock"


def test_a_lying_data_url_prefix_is_corrected() -> None:
    jpeg = png(10, 10, "JPEG")
    response = completion(model="mock/llava", messages=vision_message(data_url(jpeg, "image/png")))
    assert isinstance(response, prismgate.ChatCompletion)
    assert "10x10 image/jpeg" in (response.choices[0].message.content or "")


def test_format_overrides_the_sniffed_type() -> None:
    image = {"url": data_url(png(8, 8), "image/png"), "format": "image/png"}
    response = completion(model="mock/llava", messages=vision_message(image))
    assert isinstance(response, prismgate.ChatCompletion)
    assert "8x8 image/png" in (response.choices[0].message.content or "")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("gs://bucket/cat.png", "gs:// URLs work only with Vertex AI models"),
        (data_url(b"not an image at all", "image/png"), "is not a PNG, JPEG, GIF or WebP image"),
        ("data:image/png,rawbytes", "image data URLs must be base64"),
    ],
)
def test_bad_images_are_clear_400s(url: str, message: str) -> None:
    with pytest.raises(prismgate.BadRequestError, match=message) as caught:
        completion(model="mock/llava", messages=vision_message(url))
    assert caught.value.param == "messages[0].content[1].image_url"  # the part to change


def test_images_to_a_model_that_cannot_see_fail_before_any_call() -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        completion(
            model="openai/gpt-3.5-turbo",
            messages=vision_message("https://example.com/a.png"),
            api_key="sk-never-used",
            api_base="http://127.0.0.1:9/v1",  # would be a connection error if called
        )
    assert caught.value.code == "model_not_vision_capable"
    assert "supports_vision: false" in caught.value.message


async def test_async_streaming_chunks() -> None:
    stream = await acompletion(
        model="mock/llava", messages=vision_message(data_url(png(4, 4), "image/png")), stream=True
    )
    assert not isinstance(stream, prismgate.ChatCompletion)
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("I see 1 image(s): 4x4 image/png.")
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None


def test_sync_streaming_chunks() -> None:
    stream = completion(model="mock/x", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert not isinstance(stream, prismgate.ChatCompletion)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "I see no image. You said: hi"


def test_oversize_images_are_downscaled_or_refused() -> None:
    big = png(400, 200)
    limits = ImageLimits(media_types=frozenset({"image/png"}), max_bytes=10_000_000, max_side=100)
    data, media_type = fit_image(big, "image/png", limits, oversize="downscale")
    with Image.open(io.BytesIO(data)) as image:
        assert (image.size, media_type) == ((100, 50), "image/png")  # aspect ratio kept
    with pytest.raises(prismgate.BadRequestError, match="over this model's limits"):
        fit_image(big, "image/png", limits, oversize="reject")


def test_a_type_the_provider_refuses_is_transcoded() -> None:
    limits = ImageLimits(media_types=frozenset({"image/png", "image/jpeg"}), max_bytes=10**7)
    data, media_type = fit_image(png(20, 20, "WEBP"), "image/webp", limits, oversize="reject")
    assert media_type == "image/png"
    assert data.startswith(b"\x89PNG")


def test_model_info_keyword_overrides_capabilities_and_is_never_sent() -> None:
    # LiteLLM lets a call describe its model; the mock model here is told it cannot see.
    with pytest.raises(prismgate.BadRequestError, match="supports_vision: false"):
        completion(
            model="mock/llava",
            messages=vision_message(data_url(png(4, 4), "image/png")),
            model_info={"supports_vision": False},
        )
    answer = completion(
        model="mock/llava",
        messages=[{"role": "user", "content": "hi"}],
        model_info={"supports_vision": True},
    )
    assert isinstance(answer, prismgate.ChatCompletion)
