from __future__ import annotations

import pytest

import prismgate
from prismgate.catalog import Catalog, ImageCapabilities, ModelInfo, merge_model_info


@pytest.mark.parametrize(
    "model",
    ["openai/gpt-4-vision-preview", "vertex_ai/gemini-1.0-pro-vision", "xai/grok-2-vision-latest"],
)
def test_vision_models(model: str) -> None:
    assert prismgate.supports_vision(model) is True


@pytest.mark.parametrize("model", ["openai/gpt-3.5-turbo", "xai/grok-2-latest", "no-such-model"])
def test_not_vision_models(model: str) -> None:
    assert prismgate.supports_vision(model) is False


def test_get_model_info_by_bare_and_prefixed_name() -> None:
    bare = prismgate.get_model_info("dall-e-3")
    assert bare.provider == "openai" and bare.mode == "image_generation"
    assert bare["mode"] == "image_generation"  # LiteLLM's dict-style access
    assert bare.image is not None and bare.image.max_n == 1
    assert prismgate.get_model_info("openai/dall-e-3") == bare
    assert prismgate.get_model_info("dall-e-3", custom_llm_provider="openai") == bare


def test_get_model_info_unknown_is_not_found() -> None:
    with pytest.raises(prismgate.NotFoundError, match="not in prismgate's model catalog"):
        prismgate.get_model_info("openai/not-a-model")


def test_bedrock_inference_profiles_find_the_base_model() -> None:
    base = prismgate.get_model_info("bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0")
    assert prismgate.get_model_info("bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0") == base


def test_mock_models_are_described_by_the_provider() -> None:
    info = prismgate.get_model_info("mock/anything")
    assert info.mode == "image_generation" and info.supports_vision is True


def test_lookup_with_provider_stays_within_that_provider() -> None:
    catalog = Catalog(
        {
            "openai/m": ModelInfo(provider="openai", mode="chat"),
            "azure/m": ModelInfo(provider="azure"),
        }
    )
    assert catalog.lookup("m", "azure") == ModelInfo(provider="azure")
    assert catalog.lookup("m") == ModelInfo(provider="openai", mode="chat")
    assert catalog.lookup("m", "xai") is None  # never another provider's model


def test_model_info_overrides_merge_field_by_field() -> None:
    base = ModelInfo(
        provider="openai", mode="chat", supports_vision=False, max_input_tokens=10,
        image=ImageCapabilities(max_n=1, sizes=("1x1",)),
    )  # fmt: skip
    override = ModelInfo(supports_vision=True, image=ImageCapabilities(max_n=4))
    merged = merge_model_info(base, override)
    assert merged == ModelInfo(
        provider="openai", mode="chat", supports_vision=True, max_input_tokens=10,
        image=ImageCapabilities(max_n=4, sizes=("1x1",)),
    )  # fmt: skip
    assert merge_model_info(None, override) is override
    assert merge_model_info(base, None) is base
