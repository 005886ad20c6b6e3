"""The gateway's own image fetching: remote images a provider would not fetch itself, and
URL-only answers when base64 was asked for. Always through the safe fetcher."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import pytest
from PIL import Image

import prismgate
from prismgate import Gateway, aimage_generation, load_config
from prismgate.gateway import CallOptions
from prismgate.identity import Principal
from prismgate.types.chat import ChatCompletionRequest
from prismgate.types.validation import convert_request
from tests.emulators import OpenAIEmulator
from tests.emulators.anthropic import AnthropicEmulator


@pytest.fixture(scope="module")
def _claude() -> Iterator[AnthropicEmulator]:
    with AnthropicEmulator() as emulator:
        yield emulator


@pytest.fixture
def claude(_claude: AnthropicEmulator) -> AnthropicEmulator:
    _claude.reset()
    return _claude


def hosted_image_url(emulator: OpenAIEmulator) -> str:
    """An image served over plain http by a loopback server (an emulator's own file)."""
    answer = prismgate.image_generation(
        prompt="an otter", model="openai/sdxl", api_base=emulator.base_url + "/v1",
        size="48x32", response_format="url",
    )  # fmt: skip
    url = answer.data[0].url
    assert url is not None and url.startswith("http://127.0.0.1:")
    return url


def gateway(
    claude: AnthropicEmulator, allowed: list[str], urls_base: str = "http://127.0.0.1:9/v1"
) -> Gateway:
    claude_params = {
        "model": "anthropic/claude-3-7-sonnet-latest",
        "api_base": claude.base_url,
        "api_key": claude.api_key,
    }
    url_only = {
        "mode": "image_generation",
        "image": {"params": ["n", "size"], "response_formats": ["url"]},
    }
    config = {
        "model_list": [
            {"model_name": "claude", "litellm_params": claude_params},
            {
                "model_name": "sdxl-urls",
                "litellm_params": {"model": "openai/sdxl", "api_base": urls_base},
                "model_info": url_only,
            },
        ],
        "general_settings": {"media": {"allowed_hosts": allowed}},
    }
    return Gateway(load_config(config, environ={}))


def vision_request(url: str) -> ChatCompletionRequest:
    parts = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": url}]
    data = {"model": "claude", "messages": [{"role": "user", "content": parts}]}
    return convert_request(data, ChatCompletionRequest)


async def test_http_images_are_fetched_and_sent_inline(
    claude: AnthropicEmulator, compatible_emulator: OpenAIEmulator
) -> None:
    url = hosted_image_url(compatible_emulator)
    host = url.removeprefix("http://").split("/")[0]
    async with gateway(claude, [host]) as served:
        options = CallOptions(principal=Principal(role="open", scope="alice"))
        answer = (await served.chat_completion(vision_request(url), options)).value
    assert answer.choices[0].message.content == (
        "I see 1 image(s): 48x32 image/png. You said: What is this?"
    )
    source = claude.requests[-1].json["messages"][0]["content"][1]["source"]  # type: ignore[index]
    assert source["type"] == "base64" and source["media_type"] == "image/png"


async def test_private_addresses_are_refused_before_any_call(
    claude: AnthropicEmulator, compatible_emulator: OpenAIEmulator
) -> None:
    url = hosted_image_url(compatible_emulator)
    async with gateway(claude, allowed=[]) as served:
        with pytest.raises(prismgate.BadRequestError) as caught:
            await served.chat_completion(vision_request(url))
    assert caught.value.status_code == 400
    assert caught.value.param == "messages[0].content[1].image_url"  # the part to change
    assert "127.0.0.1" not in caught.value.message  # no internal detail
    assert claude.requests == []


async def test_b64_json_for_a_model_that_answers_with_urls(
    claude: AnthropicEmulator, compatible_emulator: OpenAIEmulator
) -> None:
    host = compatible_emulator.base_url.removeprefix("http://")
    async with gateway(claude, [host], compatible_emulator.base_url + "/v1") as served:
        answer = await aimage_generation(
            prompt="an otter", model="sdxl-urls", size="40x24", response_format="b64_json",
            gateway=served,
        )  # fmt: skip
    sent = compatible_emulator.requests[0]
    assert "response_format" not in (sent.json or {})  # the model is not asked; we convert
    item = answer.data[0]
    assert item.url is None and item.b64_json is not None
    with Image.open(io.BytesIO(base64.b64decode(item.b64_json))) as image:
        assert image.size == (40, 24)
