"""What a call cost, in USD, from the catalog's prices (or `model_info` overrides)."""

from __future__ import annotations

from prismgate.catalog import ImageCapabilities, ModelInfo
from prismgate.types import ImageRequest, ImageResponse
from prismgate.types.chat import ChatUsage

__all__ = ["chat_cost", "image_cost"]


def image_cost(
    capabilities: ImageCapabilities | None,
    request: ImageRequest,
    response: ImageResponse,
) -> float | None:
    """Token-priced models pay for `usage`; the others per image by quality and size.

    None only when the model has no price at all (an uncatalogued self-hosted model).
    """
    if capabilities is None or capabilities.pricing is None:
        return None
    pricing = capabilities.pricing
    usage = response.usage
    if usage is not None and pricing.output_image_per_token is not None:
        inputs = usage.input_tokens_details
        outputs = usage.output_tokens_details
        text_in = inputs.text_tokens if inputs and inputs.text_tokens is not None else None
        image_in = inputs.image_tokens if inputs and inputs.image_tokens else 0
        if text_in is None:
            text_in = usage.input_tokens - image_in
        image_out = (
            outputs.image_tokens
            if outputs and outputs.image_tokens is not None
            else usage.output_tokens
        )
        text_out = outputs.text_tokens if outputs and outputs.text_tokens else 0
        return (
            text_in * (pricing.input_text_per_token or 0.0)
            + image_in * (pricing.input_image_per_token or 0.0)
            + image_out * pricing.output_image_per_token
            + text_out * (pricing.output_text_per_token or 0.0)
        )
    if pricing.per_image is None:
        return None
    by_size = _prices_for_quality(
        pricing.per_image,
        response.quality or getattr(request, "quality", None),
        capabilities.qualities,
    )
    size = response.size or request.size or capabilities.default_size or "*"
    price = by_size.get(size, by_size.get("*"))
    if price is None:  # an unlisted size: the model's most common (first) price
        price = next(iter(by_size.values()))
    return price * len(response.data)


def _prices_for_quality(
    per_image: dict[str, dict[str, float]], quality: str | None, qualities: tuple[str, ...] | None
) -> dict[str, float]:
    """The size → price table for `quality`; unset means the model's default quality,
    which the catalog lists first. An unpriced one (gpt-image's `auto`) costs the middle tier.
    """
    for candidate in (quality, "*", quality is None and qualities and qualities[0]):
        if candidate and candidate in per_image:
            return per_image[candidate]
    tiers = list(per_image.values())
    return tiers[len(tiers) // 2]


def chat_cost(info: ModelInfo | None, usage: ChatUsage | None) -> float | None:
    """Prompt and completion tokens at the model's per-token prices; None if unpriced."""
    if info is None or usage is None or info.input_cost_per_token is None:
        return None
    return usage.prompt_tokens * info.input_cost_per_token + usage.completion_tokens * (
        info.output_cost_per_token or 0.0
    )
