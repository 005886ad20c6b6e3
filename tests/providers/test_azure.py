"""Azure OpenAI image generation, classic deployment URLs and the v1 API."""

from __future__ import annotations

import msgspec
import pytest

import prismgate
from prismgate import Gateway, aimage_generation, image_generation, load_config
from tests.emulators import OpenAIEmulator
from tests.golden import assert_golden
from tests.images import image_bytes, opened


def test_seed_example_azure_from_environment(
    azure_emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_API_KEY", azure_emulator.api_key)
    monkeypatch.setenv("AZURE_API_BASE", azure_emulator.base_url)
    response = image_generation(
        prompt="A cute baby sea otter", model="azure/dall-e-3", api_version="2023-06-01-preview"
    )
    assert_golden("azure_dall_e_3_classic", azure_emulator.requests[-1])
    sent = azure_emulator.requests[-1]
    assert sent.path == "/openai/deployments/dall-e-3/images/generations"
    assert sent.query == {"api-version": "2023-06-01-preview"}
    assert sent.headers["api-key"] == azure_emulator.api_key
    assert "model" not in (sent.json or {})  # the deployment in the path chooses the model
    assert response.data[0].url


def test_azure_only_filter_fields_are_stripped(azure_emulator: OpenAIEmulator) -> None:
    response = image_generation(
        prompt="an otter", model="azure/dall-e-3", api_base=azure_emulator.base_url,
        api_key=azure_emulator.api_key, response_format="b64_json",
    )  # fmt: skip
    raw = azure_emulator.requests[-1]
    assert raw is not None
    encoded = msgspec.json.encode(response).decode()
    assert "content_filter_results" not in encoded
    assert "prompt_filter_results" not in encoded
    assert opened(image_bytes(response.data[0])).size == (1024, 1024)


def test_v1_api_sends_the_deployment_as_model(azure_emulator: OpenAIEmulator) -> None:
    image_generation(
        prompt="an otter",
        model="azure/gpt-image-1",
        api_base=azure_emulator.base_url + "/openai/v1",
        api_key=azure_emulator.api_key,
        quality="low",
    )
    assert_golden("azure_gpt_image_1_v1", azure_emulator.requests[-1])
    sent = azure_emulator.requests[-1]
    assert sent.path == "/openai/v1/images/generations"
    assert sent.json is not None and sent.json["model"] == "gpt-image-1"


async def test_config_deployment_with_environment_secret(azure_emulator: OpenAIEmulator) -> None:
    config = load_config(
        {
            "model_list": [
                {
                    "model_name": "gpt-image-1",
                    "litellm_params": {
                        "model": "azure/gpt-image-1",
                        "api_base": azure_emulator.base_url,
                        "api_key": "os.environ/AZURE_API_KEY_EU",
                    },
                }
            ]
        },
        environ={"AZURE_API_KEY_EU": azure_emulator.api_key},
    )
    async with Gateway(config) as gateway:
        response = await aimage_generation(
            prompt="A cute baby sea otter", model="gpt-image-1", n=2, size="1024x1024",
            gateway=gateway,
        )  # fmt: skip
    sent = azure_emulator.requests[-1]
    assert sent.query == {"api-version": "2025-04-01-preview"}
    assert len(response.data) == 2
    assert response._hidden_params is not None
    assert response._hidden_params.model_group == "gpt-image-1"
    assert response._hidden_params.provider == "azure"


def test_azure_content_filter_is_a_content_policy_violation(azure_emulator: OpenAIEmulator) -> None:
    with pytest.raises(prismgate.ContentPolicyViolationError) as caught:
        image_generation(
            prompt="something forbidden", model="azure/dall-e-3",
            api_base=azure_emulator.base_url, api_key=azure_emulator.api_key,
        )  # fmt: skip
    assert caught.value.upstream_status == 400
    assert caught.value.provider == "azure"


def test_unknown_deployment_is_not_found(azure_emulator: OpenAIEmulator) -> None:
    with pytest.raises(prismgate.NotFoundError) as caught:
        image_generation(
            prompt="an otter", model="azure/no-such-deployment",
            api_base=azure_emulator.base_url, api_key=azure_emulator.api_key,
        )  # fmt: skip
    assert caught.value.upstream_status == 404
    assert "deployment" in caught.value.message.lower()


def test_missing_azure_key_names_the_variables(azure_emulator: OpenAIEmulator) -> None:
    with pytest.raises(
        prismgate.AuthenticationError, match="AZURE_API_KEY or AZURE_OPENAI_API_KEY"
    ):
        image_generation(prompt="x", model="azure/dall-e-3", api_base=azure_emulator.base_url)
