"""Invariants of the shipped catalog data (`prismgate/catalog/models/<provider>.json`).

These checks decode the file with the real schema and look for the kinds of mistakes a
hand-edited price/capability table picks up: a key filed under the wrong provider, a
price entered per million tokens instead of per token, a price keyed by a size the model
cannot produce, an image model without a price, and a few vision facts that are easy to
get backwards.
"""

from __future__ import annotations

import re

import msgspec
import pytest

from prismgate.catalog import builtin_catalog
from prismgate.catalog.catalog import catalog_files
from prismgate.catalog.model_info import ImageCapabilities, ImagePricing, ModelInfo
from prismgate.providers import provider_names

SIZE_RE = re.compile(r"^\d+x\d+$")
RATIO_RE = re.compile(r"^\d+(\.\d+)?:\d+(\.\d+)?$")

# The optional image parameters a catalog entry may claim to honour: OpenAI's (generation
# and edits), and the negative prompt many other providers take.
OPENAI_IMAGE_PARAMS = frozenset(
    {
        "n",
        "quality",
        "size",
        "style",
        "response_format",
        "user",
        "background",
        "output_format",
        "output_compression",
        "moderation",
        "input_fidelity",
        "negative_prompt",
    }
)

# Sanity bounds: no model costs a dollar per token, and none costs $1 or more per image.
# A value above these almost always means "per 1M tokens" or "per 1K images" was typed.
MAX_PRICE_PER_TOKEN = 1e-3
MAX_PRICE_PER_IMAGE = 1.0


def _load() -> dict[str, ModelInfo]:
    entries: dict[str, ModelInfo] = {}
    for _provider, data in catalog_files():
        entries.update(msgspec.json.decode(data, type=dict[str, ModelInfo]))
    return entries


CATALOG = _load()
IMAGE_MODELS = {k: v for k, v in CATALOG.items() if v.mode == "image_generation"}
CHAT_MODELS = {k: v for k, v in CATALOG.items() if v.mode == "chat"}


def test_catalog_is_not_empty() -> None:
    assert len(CATALOG) > 50
    assert IMAGE_MODELS
    assert CHAT_MODELS


def test_raw_file_has_no_unknown_keys() -> None:
    """msgspec ignores unknown keys; a misspelt field name would silently vanish."""
    raw = {k: v for _, data in catalog_files() for k, v in msgspec.json.decode(data).items()}
    model_fields = set(ModelInfo.__struct_fields__)
    image_fields = set(ImageCapabilities.__struct_fields__)
    pricing_fields = set(ImagePricing.__struct_fields__)
    for key, entry in raw.items():
        assert set(entry) <= model_fields, (key, set(entry) - model_fields)
        image = entry.get("image")
        if image is None:
            continue
        assert set(image) <= image_fields, (key, set(image) - image_fields)
        pricing = image.get("pricing")
        if pricing is not None:
            assert set(pricing) <= pricing_fields, (key, set(pricing) - pricing_fields)


@pytest.mark.parametrize("key", sorted(CATALOG))
def test_key_is_provider_slash_model(key: str) -> None:
    provider, sep, model = key.partition("/")
    assert sep and provider and model, key
    assert model == model.strip() and " " not in key, key
    info = CATALOG[key]
    assert info.provider == provider, (key, info.provider)
    assert info.mode is not None, key


def test_each_provider_is_listed_together() -> None:
    """The catalog resolves bare names to the first key; a provider's block must be contiguous."""
    seen: list[str] = []
    for key in CATALOG:
        provider = key.partition("/")[0]
        if not seen or seen[-1] != provider:
            assert provider not in seen, f"{key}: provider {provider!r} appears in two blocks"
            seen.append(provider)


@pytest.mark.parametrize("key", sorted(IMAGE_MODELS))
def test_image_model_has_capabilities_and_price(key: str) -> None:
    image = IMAGE_MODELS[key].image
    assert image is not None, key
    assert image.max_n is not None and image.max_n >= 1, key
    assert image.pricing is not None, key
    pricing = image.pricing
    assert pricing.per_image or pricing.output_image_per_token, (
        f"{key}: needs a per-image price or an output image token price"
    )
    assert image.params is not None, key
    assert set(image.params) <= OPENAI_IMAGE_PARAMS, (key, set(image.params) - OPENAI_IMAGE_PARAMS)
    # Every provider maps `size` and fans `n` out, so both are always honoured.
    assert "n" in image.params and "size" in image.params, key
    assert image.response_formats, key
    assert set(image.response_formats) <= {"url", "b64_json"}, key
    assert "b64_json" in image.response_formats, key


@pytest.mark.parametrize("key", sorted(IMAGE_MODELS))
def test_image_params_agree_with_capability_lists(key: str) -> None:
    image = IMAGE_MODELS[key].image
    assert image is not None and image.params is not None
    params = set(image.params)
    formats = set(image.response_formats or ())
    # `response_format` is only passed through where the provider itself can return URLs.
    assert ("response_format" in params) == ("url" in formats), key
    assert ("quality" in params) == (image.qualities is not None), key
    assert ("style" in params) == (image.styles is not None), key
    assert ("background" in params) == (image.backgrounds is not None), key
    if "output_format" in params:
        assert image.output_formats, key
    if image.output_formats is not None:
        assert set(image.output_formats) <= {"png", "jpeg", "webp"}, key


@pytest.mark.parametrize("key", sorted(IMAGE_MODELS))
def test_image_sizes_and_ratios_are_well_formed(key: str) -> None:
    image = IMAGE_MODELS[key].image
    assert image is not None
    for size in image.sizes or ():
        assert size == "auto" or SIZE_RE.match(size), (key, size)
    if image.sizes is not None:
        assert len(set(image.sizes)) == len(image.sizes), key
    for ratio in image.aspect_ratios or ():
        assert RATIO_RE.match(ratio), (key, ratio)
    if image.aspect_ratios is not None:
        assert len(set(image.aspect_ratios)) == len(image.aspect_ratios), key
    if image.default_size is not None:
        if image.sizes is not None:
            assert image.default_size in image.sizes, key
        else:
            assert image.default_size == "auto" or SIZE_RE.match(image.default_size), key
    if image.max_prompt_chars is not None:
        assert image.max_prompt_chars > 0, key


@pytest.mark.parametrize("key", sorted(IMAGE_MODELS))
def test_image_prices_are_keyed_by_known_values(key: str) -> None:
    image = IMAGE_MODELS[key].image
    assert image is not None and image.pricing is not None
    pricing = image.pricing
    for quality, by_size in (pricing.per_image or {}).items():
        assert quality == "*" or quality in (image.qualities or ()), (key, quality)
        assert by_size, (key, quality)
        for size, price in by_size.items():
            if image.sizes is not None:
                assert size == "*" or size in image.sizes, (key, quality, size)
            else:
                assert size == "*" or SIZE_RE.match(size), (key, quality, size)
            assert 0 < price < MAX_PRICE_PER_IMAGE, (key, quality, size, price)
    for field in (
        "input_text_per_token",
        "input_image_per_token",
        "output_image_per_token",
        "output_text_per_token",
    ):
        value = getattr(pricing, field)
        if value is not None:
            assert 0 < value < MAX_PRICE_PER_TOKEN, (key, field, value)


@pytest.mark.parametrize("key", sorted(CHAT_MODELS))
def test_chat_model_has_limits_and_prices(key: str) -> None:
    info = CHAT_MODELS[key]
    assert info.max_input_tokens is not None and info.max_input_tokens > 0, key
    assert info.max_output_tokens is not None and info.max_output_tokens > 0, key
    assert info.max_output_tokens <= info.max_input_tokens, key
    assert info.input_cost_per_token is not None, key
    assert info.output_cost_per_token is not None, key
    assert 0 < info.input_cost_per_token < MAX_PRICE_PER_TOKEN, key
    assert 0 < info.output_cost_per_token < MAX_PRICE_PER_TOKEN, key
    # Output tokens never cost less than input tokens for any catalogued provider;
    # the opposite usually means the two prices were swapped.
    assert info.output_cost_per_token >= info.input_cost_per_token, key
    assert info.supports_vision is not None, key
    assert info.image is None, key


@pytest.mark.parametrize("key", sorted(CATALOG))
def test_image_input_limits_only_on_vision_models(key: str) -> None:
    info = CATALOG[key]
    if info.max_images_per_request is not None or info.max_image_bytes is not None:
        assert info.supports_vision is True, key
    if info.max_images_per_request is not None:
        assert info.max_images_per_request >= 1, key
    if info.max_image_bytes is not None:
        assert info.max_image_bytes >= 1024 * 1024, key


@pytest.mark.parametrize(
    ("key", "vision"),
    [
        ("openai/gpt-4-vision-preview", True),
        ("vertex_ai/gemini-1.0-pro-vision", True),
        ("xai/grok-2-vision-latest", True),
        ("openai/gpt-3.5-turbo", False),
        ("xai/grok-2-latest", False),
    ],
)
def test_known_vision_facts(key: str, vision: bool) -> None:
    info = CATALOG[key]
    assert info.mode == "chat"
    assert info.supports_vision is vision


def test_each_providers_file_holds_only_its_own_registered_models() -> None:
    files = catalog_files()
    assert len({name for name, _ in files}) == len(files)
    for provider, data in files:
        assert provider in provider_names(), f"models/{provider}.json names no provider"
        for key, entry in msgspec.json.decode(data).items():
            assert key.startswith(provider + "/"), (provider, key)
            assert entry["provider"] == provider, (provider, key)


def test_a_bare_name_finds_the_makers_entry_first() -> None:
    catalog = builtin_catalog()
    assert catalog.lookup("dall-e-3") is catalog.lookup("openai/dall-e-3")
    assert catalog.lookup("gemini-2.5-flash") is catalog.lookup("vertex_ai/gemini-2.5-flash")
