"""What a call cost, in USD, from the catalog's prices (or `model_info` overrides)."""

from __future__ import annotations

import contextlib
import math

from prismgate.catalog import ImageCapabilities, MegapixelPrice, ModelInfo
from prismgate.errors import BadRequestError
from prismgate.providers.image_rules import parse_size
from prismgate.types import ImageRequest, ImageResponse
from prismgate.types.chat import ChatCompletionRequest, ChatUsage, ImagePart, TextPart

__all__ = ["chat_cost", "chat_price_bound", "image_cost", "image_price_bound"]

# What a price bound assumes where the request does not say: output tokens of one image of
# a token-priced model (gpt-image's 1536x1024 at high quality), pixels per output token
# (the same ratio), input tokens of one input image, and a chat answer's length.
IMAGE_OUTPUT_TOKENS = 6240
PIXELS_PER_IMAGE_TOKEN = 250
INPUT_IMAGE_TOKENS = 6000
CHAT_OUTPUT_TOKENS = 4096


def image_cost(
    capabilities: ImageCapabilities | None,
    request: ImageRequest,
    response: ImageResponse,
) -> float | None:
    """What the provider billed, where its answer says; otherwise token-priced models
    pay for `usage`, the others per image by quality and size (or by megapixel).

    None only when the model has no price at all (an uncatalogued self-hosted model).
    """
    if response.billed_cost is not None:
        return response.billed_cost
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
    asked = response.size or request.size
    if pricing.per_megapixel is not None and (dimensions := _dimensions(asked)) is not None:
        return _megapixel_price(pricing.per_megapixel, *dimensions) * len(response.data)
    if pricing.per_image is None:
        return None
    by_size = _prices_for_quality(
        pricing.per_image,
        response.quality or getattr(request, "quality", None),
        capabilities.qualities,
    )
    size = asked or capabilities.default_size or "*"
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


def image_price_bound(
    capabilities: ImageCapabilities | None, request: ImageRequest
) -> float | None:
    """The most this request can cost on this model, known before the call: `n` images at
    the dearest price its size and quality allow (every size or tier when it names none,
    or `auto`; by megapixels too, for models priced so), plus, for token-priced models,
    its prompt and input images. None when the model has no price."""
    if capabilities is None or (pricing := capabilities.pricing) is None:
        return None
    size = request.size
    if size == "auto" or not size:
        size = None
    per_image = 0.0
    if table := pricing.per_image:
        # Unset means the model's default quality (listed first), as the provider bills it.
        quality = getattr(request, "quality", None) or (
            capabilities.qualities[0] if capabilities.qualities else None
        )
        # Its size's price, else its dearest size's, in its tier, else in every tier.
        tier = table.get(quality) if quality in table else table.get("*")
        for by_size in (tier,) if tier is not None else table.values():
            price = by_size[size] if size in by_size else max(by_size.values(), default=0.0)
            per_image = max(per_image, price)
    if pricing.per_megapixel is not None:
        # Priced by its megapixels (what `image_cost` bills when the size is known): its
        # size's, else the dearest of the sizes the model lists and its default.
        asked = _dimensions(size)
        listed = (*(capabilities.sizes or ()), capabilities.default_size)
        sizes = [asked] if asked else map(_dimensions, listed)
        for dimensions in sizes:
            if dimensions is not None:
                price = _megapixel_price(pricing.per_megapixel, *dimensions)
                per_image = max(per_image, price)
    if pricing.output_image_per_token is not None:
        tokens = IMAGE_OUTPUT_TOKENS
        if size is not None:
            with contextlib.suppress(BadRequestError):  # not WxH: the model's rules say so
                width, height = parse_size(size)
                tokens = max(tokens, width * height // PIXELS_PER_IMAGE_TOKEN)
        per_image = max(per_image, tokens * pricing.output_image_per_token)
    bound = (request.n or 1) * per_image
    # A token is never shorter than one character, so the prompt's length bounds its tokens.
    if pricing.input_text_per_token:
        bound += len(getattr(request, "prompt", None) or "") * pricing.input_text_per_token
    if pricing.input_image_per_token:
        images = getattr(request, "image", None)
        inputs = len(images) if isinstance(images, list) else int(images is not None)
        bound += inputs * INPUT_IMAGE_TOKENS * pricing.input_image_per_token
    return bound


def chat_price_bound(info: ModelInfo | None, request: ChatCompletionRequest) -> float | None:
    """The most a chat request can cost on this model: its text (one token at most per
    character) and images in, and `max_completion_tokens` (or `max_tokens`, or the model's
    output limit) out, for each of its `n` choices. None when the model has no price."""
    if info is None or info.input_cost_per_token is None:
        return None
    characters = images = 0
    for message in request.messages:
        if isinstance(message.content, str):
            characters += len(message.content)
        elif message.content is not None:
            for part in message.content:
                if isinstance(part, TextPart):
                    characters += len(part.text)
                elif isinstance(part, ImagePart):
                    images += 1
    out = (request.n or 1) * (
        request.max_completion_tokens
        or request.max_tokens
        or info.max_output_tokens
        or CHAT_OUTPUT_TOKENS
    )
    tokens_in = characters + images * INPUT_IMAGE_TOKENS
    return tokens_in * info.input_cost_per_token + out * (info.output_cost_per_token or 0.0)


_MEGAPIXEL = 1 << 20  # how fal and Black Forest Labs count one (1024x1024 is one)


def _dimensions(size: str | None) -> tuple[int, int] | None:
    width, x, height = (size or "").partition("x")
    return (int(width), int(height)) if x and width.isdigit() and height.isdigit() else None


def _megapixel_price(price: MegapixelPrice, width: int, height: int) -> float:
    """One image's price: its megapixels counted up to a whole one, at least one."""
    megapixels = max(1, math.ceil(width * height / _MEGAPIXEL))
    return price.first + (megapixels - 1) * price.each_further
