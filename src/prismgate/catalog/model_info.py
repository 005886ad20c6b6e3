"""What is known about a model: the shape of both a catalog entry and a `model_info` override."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Mode = Literal["chat", "completion", "embedding", "image_generation", "image_edit"]


class MegapixelPrice(msgspec.Struct, kw_only=True, frozen=True):
    """A price by the image's megapixels (2^20 pixels, counted up to a whole one): `first`
    for the first, `each_further` for every one after it (fal, Black Forest Labs)."""

    first: float
    each_further: float


class ImagePricing(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """How an image model is billed, in USD.

    `per_image` maps quality → size → price; the quality `"*"` matches any quality, the
    size `"*"` any size. `per_megapixel`, where set, prices an image of a known size
    instead. Token prices apply to gpt-image style models that report `usage`.
    """

    per_image: dict[str, dict[str, float]] | None = None
    per_megapixel: MegapixelPrice | None = None
    input_text_per_token: float | None = None
    input_image_per_token: float | None = None
    output_image_per_token: float | None = None
    output_text_per_token: float | None = None


class SizeRules(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """The sizes a model with free `WIDTHxHEIGHT` sizes can make (gpt-image-2), as rules
    instead of a list. Each bound is optional; `max_aspect_ratio` is the long side over
    the short side (3.0: from 1:3 to 3:1). Named sizes in `sizes` (`auto`) stay accepted.
    """

    multiple_of: int | None = None
    min_edge: int | None = None
    max_edge: int | None = None
    max_aspect_ratio: float | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None


class ImageCapabilities(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """What an image model accepts. `None` means "no fixed rule", and nothing is checked."""

    # The optional OpenAI parameters the model has a meaning for; others are refused
    # (or dropped with drop_params). `response_format` is absent for base64-only models:
    # the gateway converts for them instead.
    params: tuple[str, ...] | None = None
    sizes: tuple[str, ...] | None = None
    # Free sizes within rules; with it, `sizes` holds only the named ones (`auto`).
    size_rules: SizeRules | None = None
    aspect_ratios: tuple[str, ...] | None = None
    default_size: str | None = None
    max_n: int | None = None
    qualities: tuple[str, ...] | None = None
    # OpenAI's quality words mapped onto a model whose own differ (`hd` → `premium`):
    # applied before `qualities` is checked, and reported as an adjustment.
    quality_aliases: dict[str, str] | None = None
    styles: tuple[str, ...] | None = None
    output_formats: tuple[str, ...] | None = None
    backgrounds: tuple[str, ...] | None = None
    max_prompt_chars: int | None = None
    # What the provider can return natively: ("url", "b64_json") or ("b64_json",).
    response_formats: tuple[str, ...] | None = None
    edits: bool | None = None
    variations: bool | None = None
    pricing: ImagePricing | None = None


class ModelInfo(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """Capabilities, limits and prices of one model, under LiteLLM's `model_info` names."""

    provider: str | None = None
    mode: Mode | None = None
    base_model: str | None = None
    supports_vision: bool | None = None
    supports_function_calling: bool | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    max_images_per_request: int | None = None
    max_image_bytes: int | None = None
    image: ImageCapabilities | None = None
    id: str | None = None
    # The provider's own word on the model's end: the day it stopped (or stops) answering
    # at the provider's endpoint (ISO date), and the model it names as the replacement.
    shutdown_date: str | None = None
    replacement: str | None = None
    # Where the catalog's facts about this model come from (the provider's pages), the
    # day they were last checked against them (ISO date), and what a reader should know
    # about them (a fact taken from elsewhere, a date the page implies).
    sources: tuple[str, ...] | None = None
    checked: str | None = None
    source_note: str | None = None

    def __getitem__(self, key: str) -> Any:
        # LiteLLM's get_model_info returns a dict; keep `info["supports_vision"]` working.
        if key not in self.__struct_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        """The non-empty fields as plain data (what /model/info shows)."""
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


def merge_model_info(base: ModelInfo | None, override: ModelInfo | None) -> ModelInfo | None:
    """`override`'s set fields win over `base`'s; image capabilities merge field by field."""
    if override is None or base is None:
        return override if base is None else base
    changes = _set_fields(override)
    if base.image is not None and override.image is not None:
        changes["image"] = msgspec.structs.replace(base.image, **_set_fields(override.image))
    return msgspec.structs.replace(base, **changes)


def _set_fields(struct: msgspec.Struct) -> dict[str, Any]:
    return {
        name: value
        for name in struct.__struct_fields__
        if (value := getattr(struct, name)) is not None
    }
