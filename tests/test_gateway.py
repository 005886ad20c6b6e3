"""The Gateway built from a config: model groups, defaults, and what reaches providers."""

from __future__ import annotations

import pytest

import prismgate
from prismgate import Gateway, ImageGenerationRequest, load_config
from prismgate.errors import BadRequestError
from prismgate.gateway import CallOptions
from prismgate.routing.deployments import CallerOverrides
from tests.emulators import OpenAIEmulator
from tests.meta import with_meta


def gateway_for(compatible: OpenAIEmulator, **settings: object) -> Gateway:
    return Gateway(
        load_config(
            {
                "model_list": [
                    {
                        "model_name": "sdxl",
                        "litellm_params": {
                            "model": "openai/sdxl",
                            "api_base": compatible.base_url + "/v1",
                            "api_key": "sk-config-secret-0001",
                            "seed": 7,
                        },
                    },
                    {"model_name": "otter-images", "litellm_params": {"model": "mock/otters"}},
                    {"model_name": "chat-only", "litellm_params": {"model": "openai/gpt-4o"}},
                ],
                **settings,
            },
            environ={},
        )
    )


async def test_model_groups_and_config_params(compatible_emulator: OpenAIEmulator) -> None:
    async with gateway_for(compatible_emulator) as gateway:
        response = with_meta(
            await gateway.image_generation(
                ImageGenerationRequest(prompt="an otter", model="sdxl"),
                CallOptions(extra={"negative_prompt": "blurry"}),
            )
        )
    sent = compatible_emulator.requests[-1]
    assert sent.json == {
        "model": "sdxl", "prompt": "an otter", "seed": 7, "negative_prompt": "blurry"
    }  # fmt: skip
    assert sent.headers["authorization"] == "Bearer sk-config-secret-0001"
    assert response._hidden_params is not None
    assert response._hidden_params.model_group == "sdxl"


async def test_unknown_model_lists_the_available_ones(compatible_emulator: OpenAIEmulator) -> None:
    async with gateway_for(compatible_emulator) as gateway:
        with pytest.raises(prismgate.NotFoundError) as caught:
            await gateway.image_generation(ImageGenerationRequest(prompt="x", model="dall-e-3"))
    assert caught.value.code == "model_not_found"
    assert caught.value.status_code == 404
    assert caught.value.message == (
        "model 'dall-e-3' is not served here; available models: chat-only, otter-images, sdxl"
    )


async def test_default_image_model_is_configurable(compatible_emulator: OpenAIEmulator) -> None:
    settings = {"general_settings": {"default_image_model": "otter-images"}}
    async with gateway_for(compatible_emulator, **settings) as gateway:
        response = with_meta(
            await gateway.image_generation(ImageGenerationRequest(prompt="x", n=2))
        )
    assert response._hidden_params is not None
    assert response._hidden_params.provider == "mock"
    assert len(response.data) == 2


async def test_chat_models_cannot_generate_images(compatible_emulator: OpenAIEmulator) -> None:
    async with gateway_for(compatible_emulator) as gateway:
        with pytest.raises(prismgate.BadRequestError) as caught:
            await gateway.image_generation(ImageGenerationRequest(prompt="x", model="chat-only"))
    assert caught.value.message == "chat-only cannot generate images (it is a chat model)"


@pytest.mark.parametrize("drop", [True, False])
async def test_drop_params_from_litellm_settings_and_model_info_limits(drop: bool) -> None:
    # model_info narrows what the model takes; litellm_settings decides refuse or drop.
    config = load_config(
        {
            "litellm_settings": {"drop_params": drop},
            "model_list": [
                {
                    "model_name": "img",
                    "litellm_params": {"model": "mock/m"},
                    "model_info": {"image": {"params": ["n", "size"]}},
                }
            ],
        },
        environ={},
    )
    request = ImageGenerationRequest(prompt="x", model="img", size="64x64", style="vivid")
    async with Gateway(config) as gateway:
        if not drop:
            with pytest.raises(prismgate.UnsupportedParamsError, match="accepts n, size"):
                await gateway.image_generation(request)
            return
        response = with_meta(await gateway.image_generation(request))
    assert response._hidden_params is not None
    assert response._hidden_params.dropped_params == ("style",)
    assert len(response.data) == 1


async def test_secrets_from_config_never_reach_an_error(
    compatible_emulator: OpenAIEmulator,
) -> None:
    compatible_emulator.fail_next("status", status=500, times=3)  # the first try and 2 retries
    async with gateway_for(compatible_emulator) as gateway:
        with pytest.raises(prismgate.APIError) as caught:
            await gateway.image_generation(ImageGenerationRequest(prompt="x", model="sdxl"))
    assert "sk-config-secret-0001" not in str(caught.value.wire_body())


async def test_bare_names_need_a_provider() -> None:
    async with Gateway(load_config(environ={})) as gateway:
        with pytest.raises(prismgate.BadRequestError) as caught:
            await gateway.image_generation(ImageGenerationRequest(prompt="x", model="sdxl"))
    assert caught.value.message.startswith(
        "cannot tell which provider serves 'sdxl': name it as provider/model (for example "
        "openai/sdxl)"
    )


async def test_provider_settings_never_enter_the_body(compatible_emulator: OpenAIEmulator) -> None:
    config = load_config(
        {
            "model_list": [
                {
                    "model_name": "img",
                    "litellm_params": {
                        "model": "openai/sdxl",
                        "api_base": compatible_emulator.base_url + "/v1",
                        "organization": "org-from-config",
                        "aws_region_name": "us-east-1",
                    },
                }
            ]
        },
        environ={},
    )
    async with Gateway(config) as gateway:
        await gateway.image_generation(
            ImageGenerationRequest(prompt="x", model="img"), CallOptions(extra={"steps": 4})
        )
    sent = compatible_emulator.requests[-1]
    assert sent.json == {"model": "sdxl", "prompt": "x", "steps": 4}
    assert sent.headers["openai-organization"] == "org-from-config"


@pytest.mark.parametrize(
    "keyword", ["organization", "vertex_project", "aws_region_name", "awsBedrockRuntimeEndpoint"]
)
async def test_keywords_never_reconfigure_a_configured_model_group(
    compatible_emulator: OpenAIEmulator, keyword: str
) -> None:
    config = load_config(
        {"model_list": [{"model_name": "img", "litellm_params": {
            "model": "openai/sdxl", "api_base": compatible_emulator.base_url + "/v1"}}]},
        environ={},
    )  # fmt: skip
    async with Gateway(config) as gateway:
        with pytest.raises(BadRequestError) as caught:
            await gateway.image_generation(
                ImageGenerationRequest(prompt="x", model="img"), CallOptions(extra={keyword: "v"})
            )
    assert caught.value.param == keyword and caught.value.code == "setting_not_allowed"
    assert compatible_emulator.requests == []


async def test_an_sdk_call_configures_its_own_deployment(
    compatible_emulator: OpenAIEmulator,
) -> None:
    async with Gateway(load_config({}, environ={})) as gateway:
        await gateway.image_generation(
            ImageGenerationRequest(prompt="x", model="openai/sdxl"),
            CallOptions(
                extra={"organization": "org-mine", "steps": 4},
                overrides=CallerOverrides(api_base=compatible_emulator.base_url + "/v1"),
            ),
        )
    sent = compatible_emulator.requests[-1]
    assert sent.json == {"model": "sdxl", "prompt": "x", "steps": 4}
    assert sent.headers["openai-organization"] == "org-mine"


def test_unresolvable_deployments_fail_at_startup_naming_the_path() -> None:
    config = load_config(
        {
            "model_list": [
                {"model_name": "ok", "litellm_params": {"model": "mock/m"}},
                {"model_name": "broken", "litellm_params": {"model": "no-such-model"}},
            ]
        },
        environ={},
    )
    with pytest.raises(prismgate.ConfigError) as caught:
        Gateway(config)
    assert str(caught.value).startswith(
        "model_list[1].litellm_params.model: cannot tell which provider serves 'no-such-model'"
    )


@pytest.mark.parametrize(
    ("provider", "settings", "ambient"),
    [
        ("bedrock", {"aws_region_name": "us-east-1"},
         {"AWS_ACCESS_KEY_ID": "AKIAAMBIENTSERVERKEY0", "AWS_SECRET_ACCESS_KEY": "server"}),
        ("vertex_ai", {"vertex_project": "p", "vertex_location": "us-central1"},
         {"GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/server-identity.json"}),
    ],
)  # fmt: skip
async def test_direct_mode_never_lends_the_servers_cloud_identity(
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    settings: dict[str, str],
    ambient: dict[str, str],
) -> None:
    # The server's identity sits where botocore's chain and Google's ADC look for it (the
    # process environment). A direct-mode caller bringing no credentials is refused.
    from prismgate.routing.deployments import CallerOverrides
    from prismgate.types.chat import ChatCompletionRequest
    from prismgate.types.validation import convert_request

    for name, value in ambient.items():
        monkeypatch.setenv(name, value)
    request = convert_request(
        {"model": "some-model", "messages": [{"role": "user", "content": "hi"}]},
        ChatCompletionRequest,
    )
    options = CallOptions(
        direct=True, overrides=CallerOverrides(custom_llm_provider=provider), extra=settings
    )
    async with Gateway(load_config(environ={}), direct_models=False) as gateway:
        with pytest.raises(prismgate.AuthenticationError, match="never used"):
            await gateway.chat_completion(request, options)


def test_service_account_keys_are_redacted() -> None:
    import json

    private_key = (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
    )
    credentials = json.dumps({"type": "service_account", "private_key": private_key})
    config = load_config(
        {"model_list": [{"model_name": "g", "litellm_params": {
            "model": "vertex_ai/gemini-1.5-pro", "vertex_credentials": credentials}}]},
        environ={},
    )  # fmt: skip
    gateway = Gateway(config)
    leaked = f"upstream echoed {credentials} and MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
    assert "MIIEvQ" not in gateway.redact(leaked)
