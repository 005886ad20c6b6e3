"""`mock/<model>` obeys the real model's catalog rules; other mock names stay permissive.

Code tested against the quickstart (mock models) meets the refusals and the fan-out it
will meet against the provider: each case is asked of the real deployment (the OpenAI
emulator behind the proxy) and of the quickstart's mock, and the answers compared.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

import prismgate
from prismgate import aimage_edit, aimage_generation, completion, get_model_info
from prismgate.catalog import builtin_catalog
from prismgate.providers.mock import as_catalogued
from tests.emulators import OpenAIEmulator
from tests.serving import RunningProxy, model

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart.yaml"
# A real 16x16 PNG (an orange square with a blue circle).
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQAQMAAAAlPW0iAAAABlBMVEX/jAAePKCGKBv9AAAAJklEQVR42mNg"
    "gAHmA0wsCkwcAkwCHEwMDFD04QfTjw9Mfx7AVQEAdUIG1racT0IAAAAASUVORK5CYII="
)
PNG = base64.b64decode(PNG_B64)


def quickstart_config() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(QUICKSTART.read_text())
    return raw


def real_config(emulator: OpenAIEmulator) -> dict[str, Any]:
    """The quickstart's groups on the real provider (the emulator)."""
    where = {"api_base": emulator.base_url + "/v1", "api_key": emulator.api_key}
    return {
        "model_list": [
            model("dall-e-3", "openai/dall-e-3", **where),
            model("gpt-image-1", "openai/gpt-image-1", **where),
        ]
    }


def client(proxy: RunningProxy) -> openai.OpenAI:
    # The quickstart's key (the emulated config has no master key: any key is accepted).
    return openai.OpenAI(api_key="sk-1234", base_url=proxy.base_url + "/v1", max_retries=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": "dall-e-3", "size": "512x512"},
        {"model": "dall-e-3", "quality": "ultra"},
        {"model": "dall-e-3", "style": "retro"},
        {"model": "dall-e-3", "n": 11},
        {"model": "dall-e-3", "prompt": "x" * 4001},
        {"model": "dall-e-3", "extra_body": {"background": "transparent"}},
        {"model": "gpt-image-1", "size": "1792x1024"},
        {"model": "gpt-image-1", "style": "vivid"},
    ],
    ids=lambda kwargs: ",".join(f"{k}={str(v)[:12]}" for k, v in kwargs.items()),
)
def test_the_quickstart_refuses_what_the_real_model_refuses(
    serve: Any, openai_emulator: OpenAIEmulator, kwargs: dict[str, Any]
) -> None:
    real, mock = serve(real_config(openai_emulator)), serve(quickstart_config())
    refusals = []
    for proxy in (real, mock):
        with pytest.raises(openai.BadRequestError) as caught:
            client(proxy).images.generate(**{"prompt": "A cute baby sea otter", **kwargs})
        refusals.append(caught.value)
    real_body, mock_body = refusals[0].body, refusals[1].body
    assert isinstance(real_body, dict) and isinstance(mock_body, dict)
    # The same clear error, word for word, but for one thing: the mock answers in base64
    # and the gateway fulfils `response_format` for it (as for gpt-image), so the list of
    # parameters the provider itself takes does not name it.
    real_body["message"] = real_body["message"].replace("response_format, ", "")
    assert real_body == mock_body
    assert refusals[0].status_code == refusals[1].status_code == 400
    assert openai_emulator.requests == []  # checked before any upstream call


def test_the_quickstart_size_error_names_the_sizes(serve: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(serve(quickstart_config())).images.generate(
            model="dall-e-3", prompt="otter", size="512x512"
        )
    assert caught.value.body == {
        "message": "size '512x512' is not available for dall-e-3; it accepts 1024x1024, "
        "1792x1024, 1024x1792",
        "type": "invalid_request_error",
        "param": "size",
        "code": "invalid_value",
    }


async def test_n_is_fanned_out_as_for_the_real_model(openai_emulator: OpenAIEmulator) -> None:
    mock = await aimage_generation(prompt="otters", model="mock/dall-e-3", n=3)
    real = await aimage_generation(
        prompt="otters",
        model="openai/dall-e-3",
        n=3,
        api_base=openai_emulator.base_url + "/v1",
        api_key=openai_emulator.api_key,
        response_format="b64_json",
    )
    assert [r.json["n"] for r in openai_emulator.requests] == [1, 1, 1]
    for answer in (mock, real):
        assert len(answer.data) == 3
        assert answer._hidden_params is not None
        assert answer._hidden_params.upstream_calls == 3
    # gpt-image-1 makes up to ten per call: one call, as on the real model.
    many = await aimage_generation(prompt="otters", model="mock/gpt-image-1", n=3, size="auto")
    assert many._hidden_params is not None and many._hidden_params.upstream_calls == 1
    assert len(many.data) == 3


def test_the_quickstart_fans_out_through_the_proxy(serve: Any) -> None:
    answer = client(serve(quickstart_config())).images.generate(
        model="dall-e-3", prompt="otters", n=3
    )
    assert len(answer.data) == 3
    assert all(item.b64_json and item.revised_prompt for item in answer.data)


async def test_other_mock_names_stay_permissive() -> None:
    answer = await aimage_generation(
        prompt="otters", model="mock/anything-else", n=3, size="512x300", background="opaque"
    )
    assert len(answer.data) == 3 and answer.size == "512x300"
    assert answer._hidden_params is not None and answer._hidden_params.upstream_calls == 1
    assert get_model_info("mock/anything-else").image is not None
    assert get_model_info("mock/anything-else").image.max_n == 10  # type: ignore[union-attr]


async def test_a_catalogued_mock_answers_like_its_model_but_free() -> None:
    dall_e = await aimage_generation(
        prompt="otters", model="mock/dall-e-3", quality="hd", size="1792x1024"
    )
    assert dall_e._hidden_params is not None and dall_e._hidden_params.response_cost == 0.0
    # dall-e-3 answers with no gpt-image fields; gpt-image-1 with them.
    assert (dall_e.size, dall_e.output_format, dall_e.background) == (None, None, None)
    gpt = await aimage_generation(prompt="otters", model="mock/gpt-image-1", quality="low")
    assert (gpt.size, gpt.output_format) == ("1024x1024", "png")
    assert gpt._hidden_params is not None and gpt._hidden_params.response_cost == 0.0
    # A link is delivered, as for any base64-only model.
    linked = await aimage_generation(prompt="otters", model="mock/dall-e-3", response_format="url")
    assert linked.data[0].url is not None and linked.data[0].url.startswith("data:image/png")


def test_model_info_is_the_real_models() -> None:
    mock, real = get_model_info("mock/dall-e-3"), get_model_info("dall-e-3")
    assert mock.image is not None and real.image is not None
    assert mock.image.sizes == real.image.sizes
    assert mock.image.max_n == real.image.max_n == 1
    assert mock.provider == "mock"
    assert "response_format" not in (mock.image.params or ())
    assert mock.image.response_formats == ("b64_json",)
    assert get_model_info("mock/openai/dall-e-3") == mock  # provider/model names it too


async def test_edits_are_refused_where_the_model_cannot_edit(
    openai_emulator: OpenAIEmulator,
) -> None:
    bodies = []
    for name, where in (
        ("mock/dall-e-3", {}),
        (
            "openai/dall-e-3",
            {"api_base": openai_emulator.base_url + "/v1", "api_key": openai_emulator.api_key},
        ),
    ):
        with pytest.raises(prismgate.BadRequestError) as caught:
            await aimage_edit(image=PNG, prompt="add a hat", model=name, **where)
        assert caught.value.code == "model_not_supported"
        bodies.append(caught.value.body)
    assert bodies[0]["message"].replace("mock/", "openai/") == bodies[1]["message"]
    edited = await aimage_edit(image=PNG, prompt="add a hat", model="mock/gpt-image-1")
    assert len(edited.data) == 1


def test_vision_follows_the_model() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG_B64}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "What's this?"}, image]}]
    seen = completion(model="mock/gpt-4o", messages=messages)
    assert isinstance(seen, prismgate.ChatCompletion)
    assert "16x16 image/png" in (seen.choices[0].message.content or "")
    # gpt-3.5-turbo cannot see: refused before any call, as the real model would be.
    with pytest.raises(prismgate.BadRequestError, match="image"):
        completion(model="mock/gpt-3.5-turbo", messages=messages)


def test_uncatalogued_names_are_not_described() -> None:
    catalog = builtin_catalog()
    assert as_catalogued("anything-else", catalog) is None
    described = as_catalogued("gpt-4o", catalog)
    assert described is not None
    assert (described.input_cost_per_token, described.output_cost_per_token) == (0.0, 0.0)
    assert described.supports_vision is True
