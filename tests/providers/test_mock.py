"""The built-in mock provider: real, deterministic images, no network."""

from __future__ import annotations

import pytest

import prismgate
from prismgate import aimage_generation, image_generation
from tests.images import image_bytes, opened


def test_seed_example_against_mock() -> None:
    response = image_generation(prompt="A cute baby sea otter", model="mock/dall-e-3")
    assert len(response.data) == 1
    image = opened(image_bytes(response.data[0]))
    assert (image.format, image.size) == ("PNG", (1024, 1024))
    assert response.data[0].revised_prompt == (
        "A cute baby sea otter (drawn by the prismgate mock provider)"
    )


@pytest.mark.parametrize(("fmt", "pil"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_formats_sizes_and_count(fmt: str, pil: str) -> None:
    response = image_generation(
        prompt="otters", model="mock/x", n=3, size="320x200", output_format=fmt,
        response_format="b64_json",
    )  # fmt: skip
    assert len(response.data) == 3
    for item in response.data:
        image = opened(image_bytes(item))
        assert (image.format, image.size) == (pil, (320, 200))


def test_url_gives_a_data_url_in_the_sdk() -> None:
    response = image_generation(prompt="otters", model="mock/x", response_format="url")
    item = response.data[0]
    assert item.b64_json is None
    assert item.url is not None and item.url.startswith("data:image/png;base64,")
    assert opened(image_bytes(item)).size == (1024, 1024)


async def test_images_are_deterministic() -> None:
    first = await aimage_generation(prompt="otters", model="mock/x", n=2, size="64x64")
    again = await aimage_generation(prompt="otters", model="mock/x", n=2, size="64x64")
    assert [d.b64_json for d in first.data] == [d.b64_json for d in again.data]
    assert first.data[0].b64_json != first.data[1].b64_json
    seeded = await aimage_generation(prompt="otters", model="mock/x", size="64x64", seed=5)
    assert seeded.data[0].b64_json != first.data[0].b64_json


def test_transparent_background() -> None:
    response = image_generation(
        prompt="otters", model="mock/x", size="64x64", background="transparent"
    )
    image = opened(image_bytes(response.data[0]))
    assert image.mode == "RGBA"
    assert image.getchannel("A").getextrema()[0] == 0  # the background is see-through


def test_size_limits_and_unknown_parameters() -> None:
    with pytest.raises(prismgate.BadRequestError, match="16 to 4096 pixels a side"):
        image_generation(prompt="x", model="mock/x", size="8x8")
    with pytest.raises(prismgate.BadRequestError, match="has no parameter 'steps'"):
        image_generation(prompt="x", model="mock/x", steps=3)


def test_mock_costs_nothing() -> None:
    response = image_generation(prompt="x", model="mock/x", size="64x64")
    assert response._hidden_params is not None
    assert response._hidden_params.response_cost == 0.0
