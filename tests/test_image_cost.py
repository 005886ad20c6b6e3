"""Image prices: what the provider billed where it says, else the catalog's, per image by
quality and size, or by megapixels."""

from __future__ import annotations

import pytest

from prismgate.catalog import ImageCapabilities, ImagePricing, MegapixelPrice, builtin_catalog
from prismgate.cost import image_cost, image_price_bound
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


def _priced_by_megapixels() -> list[str]:
    catalog = builtin_catalog()
    return [
        key
        for key in sorted(catalog.keys())
        if (info := catalog.lookup(key)) is not None
        and info.image is not None
        and info.image.pricing is not None
        and info.image.pricing.per_megapixel is not None
    ]


@pytest.mark.parametrize("model", _priced_by_megapixels())
def test_a_price_bound_covers_what_any_size_is_billed(model: str) -> None:
    """A budget holds the bound before the call and is charged the cost after: the bound
    is never less, for every size the model lists and for none named."""
    info = builtin_catalog().lookup(model)
    assert info is not None and info.image is not None
    # Free sizes (within rules): some of them, up to the rules' largest (4 MP).
    sizes = info.image.sizes or ("1024x1024", "1440x1440", "1536x1024", "2048x2048")
    dearest = 0.0
    for size in sizes:
        billed = cost(model, size, images=3)
        assert billed is not None
        dearest = max(dearest, billed)
        request = ImageGenerationRequest(prompt="x", size=size, n=3)
        assert image_price_bound(info.image, request) >= billed - 1e-12, size
    unnamed = image_price_bound(info.image, ImageGenerationRequest(prompt="x", n=3))
    default = cost(model, None, images=3)  # no size named: the model makes its default
    assert unnamed is not None and default is not None and unnamed >= default - 1e-12
    if info.image.sizes:  # a fixed list: any of them may come back
        assert unnamed >= dearest - 1e-12


def test_a_model_priced_only_by_megapixels_has_a_bound() -> None:
    capabilities = ImageCapabilities(
        sizes=("1024x1024", "2048x2048"),
        pricing=ImagePricing(per_megapixel=MegapixelPrice(first=0.03, each_further=0.015)),
    )
    bound = image_price_bound(capabilities, ImageGenerationRequest(prompt="x", size="1024x1024"))
    assert bound == pytest.approx(0.03)
    # No size named: the dearest listed one, 4 MP.
    unnamed = image_price_bound(capabilities, ImageGenerationRequest(prompt="x", n=2))
    assert unnamed == pytest.approx(2 * 0.075)
