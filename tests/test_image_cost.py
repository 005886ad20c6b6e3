"""Image prices: what the provider billed where it says, else the catalog's, per image by
quality and size, or by megapixels."""

from __future__ import annotations

import pytest

from prismgate.catalog import builtin_catalog
from prismgate.cost import image_cost
from prismgate.types import ImageGenerationRequest, ImageObject, ImageResponse


def cost(model: str, size: str | None, images: int = 1) -> float | None:
    info = builtin_catalog().lookup(model)
    assert info is not None and info.image is not None
    request = ImageGenerationRequest(prompt="x", size=size)
    response = ImageResponse(created=0, data=[ImageObject(b64_json="") for _ in range(images)])
    return image_cost(info.image, request, response)


@pytest.mark.parametrize(
    ("model", "size", "price"),
    [
        ("fal_ai/fal-ai/flux/dev", "1024x1024", 0.025),  # one megapixel is 2^20 pixels
        ("fal_ai/fal-ai/flux/dev", "1536x1024", 0.05),  # 1.5 counted up to 2
        ("fal_ai/fal-ai/flux/dev", "512x512", 0.025),  # at least one
        ("black_forest_labs/flux-2-pro", "1440x1440", 0.045),  # 1.98 MP: BFL's own example
        ("black_forest_labs/flux-2-pro", "2048x2048", 0.075),  # 4 MP: 0.03 + 3 x 0.015
        ("black_forest_labs/flux-2-pro", None, 0.03),  # no size known: the table's price
    ],
)
def test_megapixel_prices(model: str, size: str | None, price: float) -> None:
    assert cost(model, size) == pytest.approx(price)


def test_a_price_per_image_counts_every_image() -> None:
    assert cost("fal_ai/fal-ai/flux/dev", "1536x1024", images=3) == pytest.approx(0.15)
    assert cost("openai/dall-e-3", "1792x1024", images=2) == pytest.approx(0.16)


def test_what_the_provider_billed_is_the_cost() -> None:
    info = builtin_catalog().lookup("openrouter/google/gemini-2.5-flash-image")
    assert info is not None and info.image is not None
    request = ImageGenerationRequest(prompt="x")
    response = ImageResponse(created=0, data=[ImageObject(b64_json="")])
    assert image_cost(info.image, request, response) == pytest.approx(0.039)  # the catalog
    response.billed_cost = 0.0123
    assert image_cost(info.image, request, response) == pytest.approx(0.0123)
    assert image_cost(None, request, response) == pytest.approx(0.0123)  # uncatalogued
