"""xAI image generation: OpenAI's `size` becomes xAI's `aspect_ratio`."""

from __future__ import annotations

import pytest

import prismgate
from prismgate import image_generation
from tests.emulators import OpenAIEmulator
from tests.golden import assert_golden
from tests.images import image_bytes, opened


def call(emulator: OpenAIEmulator, **kwargs: object) -> prismgate.ImageResponse:
    return image_generation(
        prompt="an otter", api_base=emulator.base_url + "/v1", api_key=emulator.api_key,
        **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def test_size_becomes_an_aspect_ratio(xai_emulator: OpenAIEmulator) -> None:
    response = call(
        xai_emulator, model="xai/grok-2-image-1212", n=2, size="1024x1024",
        response_format="b64_json",
    )  # fmt: skip
    assert_golden("xai_grok_2_image_square", xai_emulator.requests[-1])
    sent = xai_emulator.requests[-1].json
    assert sent is not None and sent["aspect_ratio"] == "1:1" and "size" not in sent
    assert len(response.data) == 2
    for item in response.data:
        image = opened(image_bytes(item))
        assert image.size[0] == image.size[1]
    assert response._hidden_params is not None
    assert response._hidden_params.response_cost == pytest.approx(0.14)


def test_near_ratio_is_reported(xai_emulator: OpenAIEmulator) -> None:
    response = call(xai_emulator, model="xai/grok-2-image-1212", size="1792x1024")
    assert xai_emulator.requests[-1].json["aspect_ratio"] == "16:9"
    assert response._hidden_params is not None
    assert response._hidden_params.adjusted == ("size=1792x1024->aspect_ratio=16:9",)


def test_ratio_far_from_any_is_refused(xai_emulator: OpenAIEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        call(xai_emulator, model="xai/grok-2-image-1212", size="1000x100")
    assert caught.value.param == "size"
    assert "aspect ratios 1:1, 3:4" in caught.value.message
    assert xai_emulator.requests == []


def test_style_is_not_an_xai_parameter(xai_emulator: OpenAIEmulator) -> None:
    with pytest.raises(prismgate.UnsupportedParamsError):
        call(xai_emulator, model="xai/grok-2-image-1212", style="vivid")
    assert xai_emulator.requests == []
