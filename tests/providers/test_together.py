"""Together AI images: `size` → width and height, `b64_json` → `base64`, up to four images
in one call, and Together's errors in the OpenAI shape."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

import prismgate
from prismgate.providers import canonical_provider
from prismgate.providers.together import TOGETHER_IMAGE_FIELDS
from tests.emulators import TogetherEmulator
from tests.images import image_bytes, opened
from tests.providers.probes import probe_status
from tests.serving import RunningProxy, model

ENV = ("TOGETHER_API_KEY", "TOGETHERAI_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHER_API_BASE",
       "TOGETHERAI_API_BASE")  # fmt: skip
FLUX = "black-forest-labs/FLUX.1-schnell"


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _server() -> Iterator[TogetherEmulator]:
    with TogetherEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(_server: TogetherEmulator) -> TogetherEmulator:
    _server.reset()
    return _server


def generate(emu: TogetherEmulator, **kwargs: Any) -> prismgate.ImageResponse:
    return prismgate.image_generation(
        model=f"together_ai/{FLUX}", prompt=kwargs.pop("prompt", "an otter"),
        api_base=emu.base_url + "/v1", api_key=emu.api_key, **kwargs,
    )  # fmt: skip


# (request parameter, value, body fields Together must receive)
ROWS = [
    ("prompt", "a red fox", {"prompt": "a red fox"}),
    ("n", 3, {"n": 3}),
    ("size", "1024x768", {"width": 1024, "height": 768}),
    ("negative_prompt", "blur", {"negative_prompt": "blur"}),
    ("output_format", "png", {"output_format": "png"}),
    ("response_format", "b64_json", {"response_format": "base64"}),
    ("steps", 4, {"steps": 4}),
    ("seed", 42, {"seed": 42}),
    ("guidance_scale", 3.5, {"guidance_scale": 3.5}),
]


def test_rows_cover_the_table() -> None:
    assert {param for param, _, _ in ROWS} == set(TOGETHER_IMAGE_FIELDS)


@pytest.mark.parametrize(("param", "value", "expected"), ROWS)
def test_each_row_reaches_the_body(
    emu: TogetherEmulator, param: str, value: Any, expected: dict[str, Any]
) -> None:
    generate(emu, **{param: value})
    base: dict[str, Any] = {"model": FLUX, "prompt": "an otter"}
    assert emu.requests[-1].json == {**base, **expected}


def test_base64_images_of_the_asked_size(emu: TogetherEmulator) -> None:
    response = generate(emu, n=2, size="768x512", response_format="b64_json")
    received = emu.requests[-1]
    assert received.path == "/v1/images/generations"
    assert received.headers["authorization"] == f"Bearer {emu.api_key}"
    assert len(emu.requests) == 1 and len(response.data) == 2
    for item in response.data:
        assert item.b64_json is not None and item.url is None
        assert opened(image_bytes(item)).size == (768, 512)
    assert response._hidden_params is not None
    assert response._hidden_params.response_cost == pytest.approx(2 * 0.0027)


def test_url_images_are_togethers_links(emu: TogetherEmulator) -> None:
    response = generate(emu, response_format="url", output_format="png")
    url = response.data[0].url
    assert url is not None and url.startswith(emu.base_url + "/files/")
    assert opened(httpx.get(url).content).format == "PNG"


def test_n_above_four_fans_out(emu: TogetherEmulator) -> None:
    response = generate(emu, n=6, response_format="b64_json")
    assert len(response.data) == 6
    assert sorted(r.json["n"] for r in emu.requests if r.json) == [2, 4]


def test_nsfw_refusal_is_a_content_policy_error(emu: TogetherEmulator) -> None:
    with pytest.raises(prismgate.ContentPolicyViolationError) as caught:
        generate(emu, prompt="something forbidden")
    assert caught.value.upstream_status == 422 and "NSFW" in caught.value.message


def test_unknown_extra_is_sent_and_refused_by_together(emu: TogetherEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        generate(emu, sampler="euler")
    assert emu.requests[-1].json is not None and emu.requests[-1].json["sampler"] == "euler"
    assert caught.value.param == "sampler"


def test_documented_extras_pass(emu: TogetherEmulator) -> None:
    generate(emu, disable_safety_checker=True)
    assert emu.requests[-1].json is not None
    assert emu.requests[-1].json["disable_safety_checker"] is True


def test_server_error_keeps_its_status(emu: TogetherEmulator) -> None:
    emu.fail_next("status", status=503, message="overloaded")
    with pytest.raises(prismgate.ServiceUnavailableError) as caught:
        generate(emu)
    assert "overloaded" in caught.value.message


def test_key_from_either_variable(emu: TogetherEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGETHERAI_API_KEY", emu.api_key)
    response = prismgate.image_generation(
        model=f"together_ai/{FLUX}", prompt="x", api_base=emu.base_url + "/v1"
    )
    assert len(response.data) == 1


def test_aliases_and_health_probe(emu: TogetherEmulator) -> None:
    assert canonical_provider("together-ai") == "together_ai"
    assert probe_status("together_ai", emu.base_url + "/v1", emu.api_key) == 200
    assert emu.requests[-1].path == "/v1/models"


def test_through_the_proxy(emu: TogetherEmulator, serve: Callable[..., RunningProxy]) -> None:
    proxy = serve({
        "model_list": [
            model("flux", f"together_ai/{FLUX}", api_base=emu.base_url + "/v1",
                  api_key=emu.api_key),
        ],
    })  # fmt: skip
    client = openai.OpenAI(api_key="sk-unused", base_url=proxy.base_url + "/v1")
    answer = client.images.generate(
        model="flux", prompt="an otter", size="512x512", n=2, response_format="b64_json"
    )
    assert answer.data is not None and len(answer.data) == 2
    for item in answer.data:
        decoded = opened(image_bytes(prismgate.ImageObject(b64_json=item.b64_json)))
        assert decoded.size == (512, 512)
    assert emu.requests[-1].json is not None
    assert emu.requests[-1].json["response_format"] == "base64"
    as_url = client.images.generate(model="flux", prompt="an otter", response_format="url")
    assert as_url.data is not None and as_url.data[0].url
    assert httpx.get(as_url.data[0].url).status_code == 200
