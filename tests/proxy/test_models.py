"""The listings: /v1/models, /model/info, /model_group/info, /openapi.json."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.proxy.conftest import RunningProxy, model

SECRET = "sk-deployment-secret-123456"
CONFIG = {
    "model_list": [
        model("gpt-image-1", "azure/gpt-image-1", api_base="https://x.openai.azure.com",
              api_key=SECRET, api_version="2025-04-01-preview",
              aws_secret_access_key="aws-secret-abcdef"),
        model("gpt-image-1", "openai/gpt-image-1", api_key=SECRET),
        model("llava-hf", "openai/llava-hf/llava-v1.6-vicuna-7b-hf",
              api_base="http://localhost:8000/v1", api_key="fake-key",
              model_info={"supports_vision": True}),
        model("dall-e-3", "openai/dall-e-3", api_key=SECRET),
    ]
}  # fmt: skip


def test_models_list_the_groups(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(CONFIG)
    for path in ("/v1/models", "/models"):
        body = httpx.get(proxy.base_url + path).json()
        assert body["object"] == "list"
        assert [m["id"] for m in body["data"]] == ["gpt-image-1", "llava-hf", "dall-e-3"]


def test_model_info_never_shows_a_secret(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(CONFIG)
    for path in ("/model/info", "/v1/model/info"):
        answer = httpx.get(proxy.base_url + path)
        assert SECRET not in answer.text and "aws-secret" not in answer.text
        assert "fake-key" not in answer.text
        first = answer.json()["data"][0]
        assert first["model_name"] == "gpt-image-1"
        assert first["litellm_params"] == {
            "model": "azure/gpt-image-1", "api_base": "https://x.openai.azure.com",
            "api_version": "2025-04-01-preview",
        }  # fmt: skip
        assert first["model_info"]["provider"] == "azure"
        assert first["model_info"]["image"]["max_n"] == 10


def test_model_group_info_as_the_seed_shows_it(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(CONFIG)
    groups = {
        g["model_group"]: g for g in httpx.get(proxy.base_url + "/model_group/info").json()["data"]
    }
    llava = groups["llava-hf"]
    assert llava["providers"] == ["openai"]
    assert llava["supports_vision"] is True
    assert {"max_input_tokens", "max_output_tokens", "mode", "supports_function_calling"} <= set(
        llava
    )
    image = groups["gpt-image-1"]
    assert image["providers"] == ["azure", "openai"]
    assert image["mode"] == "image_generation"
    assert image["image_sizes"] == ["auto", "1024x1024", "1536x1024", "1024x1536"]
    assert image["image_max_n"] == 10
    assert image["image_response_formats"] == ["url", "b64_json"]
    assert groups["dall-e-3"]["image_styles"] == ["vivid", "natural"]


def test_openapi_is_generated_from_the_structs(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(CONFIG)
    document = httpx.get(proxy.base_url + "/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    generate = document["paths"]["/v1/images/generations"]["post"]
    assert generate["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ImageGenerationRequest"
    }
    request = document["components"]["schemas"]["ImageGenerationRequest"]
    assert request["required"] == ["prompt"]
    assert set(request["properties"]["response_format"]["anyOf"][0]["enum"]) == {"url", "b64_json"}
    assert "ImageResponse" in document["components"]["schemas"]


def test_openapi_describes_chat(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(CONFIG)
    document = httpx.get(proxy.base_url + "/openapi.json").json()
    chat = document["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletionRequest"
    }
    image_url = document["components"]["schemas"]["ImageURL"]
    assert set(image_url["properties"]) == {"url", "detail", "format"}
    assert "/openai/deployments/{deployment}/chat/completions" in document["paths"]


def test_openapi_describes_edits_and_variations_as_forms(
    serve: Callable[..., RunningProxy],
) -> None:
    proxy = serve(CONFIG)
    document = httpx.get(proxy.base_url + "/openapi.json").json()
    edit = document["paths"]["/v1/images/edits"]["post"]["requestBody"]["content"]
    form = edit["multipart/form-data"]["schema"]
    assert form["required"] == ["prompt", "image"]
    assert form["properties"]["image"]["items"] == {"type": "string", "format": "binary"}
    assert form["properties"]["mask"] == {"type": "string", "format": "binary"}
    vary = document["paths"]["/v1/images/variations"]["post"]["requestBody"]["content"]
    assert vary["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    assert "/openai/deployments/{deployment}/images/edits" in document["paths"]
