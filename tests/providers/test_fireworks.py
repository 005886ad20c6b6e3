"""Fireworks AI FLUX: `size` → aspect ratio, one image per call, data URLs unwrapped, the
image type asked for with a header, and the safety check's filter in the OpenAI shape."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

import prismgate
from prismgate.providers import canonical_provider
from prismgate.providers.fireworks import FIREWORKS_IMAGE_FIELDS
from tests.emulators import FireworksEmulator
from tests.emulators.stability import RATIO_SIZES
from tests.images import image_bytes, opened
from tests.providers.probes import probe_status
from tests.serving import RunningProxy, model

ENV = ("FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY", "FIREWORKS_AI_API_BASE",
       "FIREWORKS_API_BASE")  # fmt: skip
MODEL = "fireworks_ai/flux-1-schnell-fp8"
PATH = "/inference/v1/workflows/accounts/fireworks/models/flux-1-schnell-fp8/text_to_image"


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _server() -> Iterator[FireworksEmulator]:
    with FireworksEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(_server: FireworksEmulator) -> FireworksEmulator:
    _server.reset()
    return _server


def generate(emu: FireworksEmulator, **kwargs: Any) -> prismgate.ImageResponse:
    return prismgate.image_generation(
        model=kwargs.pop("model", MODEL), prompt=kwargs.pop("prompt", "an otter"),
        api_base=emu.base_url, api_key=emu.api_key, **kwargs,
    )  # fmt: skip


# (request parameter, value, body Fireworks must receive, headers it must receive)
ROWS: list[tuple[str, Any, dict[str, Any], dict[str, str]]] = [
    ("prompt", "a red fox", {"prompt": "a red fox"}, {}),
    ("size", "1536x1024", {"aspect_ratio": "3:2"}, {}),
    ("output_format", "jpeg", {}, {"json-return-image-accept": "image/jpeg"}),
    ("guidance_scale", 2.5, {"guidance_scale": 2.5}, {}),
    ("num_inference_steps", 3, {"num_inference_steps": 3}, {}),
    ("seed", 42, {"seed": 42}, {}),
]


def test_rows_cover_the_table() -> None:
    assert {param for param, *_ in ROWS} == set(FIREWORKS_IMAGE_FIELDS)


@pytest.mark.parametrize(("param", "value", "expected", "headers"), ROWS)
def test_each_row_reaches_the_request(
    emu: FireworksEmulator, param: str, value: Any, expected: dict[str, Any],
    headers: dict[str, str],
) -> None:  # fmt: skip
    generate(emu, **{param: value})
    received = emu.requests[-1]
    base = {"prompt": "an otter"} if param != "prompt" else {}
    assert received.json == {**base, **expected}
    for name, header in headers.items():
        assert received.headers[name] == header
    if not headers:
        assert "json-return-image-accept" not in received.headers


def test_images_of_the_asked_ratio(emu: FireworksEmulator) -> None:
    response = generate(emu, size="1792x1024", n=2, response_format="b64_json")
    assert len(emu.requests) == 2 and len(response.data) == 2
    received = emu.requests[-1]
    assert received.path == PATH
    assert received.headers["accept"] == "application/json"
    assert received.headers["authorization"] == f"Bearer {emu.api_key}"
    for item in response.data:
        image = opened(image_bytes(item))
        assert image.size == RATIO_SIZES["16:9"] and image.format == "PNG"
    assert response._hidden_params is not None
    assert response._hidden_params.adjusted == ("size=1792x1024->aspect_ratio=16:9",)
    assert response._hidden_params.response_cost == pytest.approx(2 * 0.0014)


def test_jpeg_and_url(emu: FireworksEmulator) -> None:
    response = generate(emu, output_format="jpeg", response_format="url")
    url = response.data[0].url
    assert url is not None and url.startswith("data:image/jpeg;base64,")
    assert opened(image_bytes(response.data[0])).format == "JPEG"


def test_full_model_path_is_kept(emu: FireworksEmulator) -> None:
    generate(emu, model="fireworks_ai/accounts/fireworks/models/flux-1-dev-fp8")
    assert emu.requests[-1].path.endswith("/models/flux-1-dev-fp8/text_to_image")


def test_filtered_image_is_a_content_policy_error(emu: FireworksEmulator) -> None:
    with pytest.raises(prismgate.ContentPolicyViolationError) as caught:
        generate(emu, prompt="a filtered scene", safety_check=True)
    assert "CONTENT_FILTERED" in caught.value.message
    assert emu.requests[-1].json is not None and emu.requests[-1].json["safety_check"] is True


def test_unsupported_ratio_is_refused_before_any_call(emu: FireworksEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        generate(emu, size="1000x100")
    assert caught.value.param == "size"
    assert emu.requests == []


def test_negative_prompt_is_not_a_fireworks_parameter(emu: FireworksEmulator) -> None:
    with pytest.raises(prismgate.UnsupportedParamsError):
        generate(emu, negative_prompt="blur")
    assert emu.requests == []


def test_errors_keep_status_and_message(emu: FireworksEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        generate(emu, sampler="euler")
    assert "Unknown field in the request: sampler" in caught.value.message
    emu.fail_next("status", status=429, retry_after=2)
    with pytest.raises(prismgate.RateLimitError) as limited:
        generate(emu)
    assert limited.value.retry_after == 2
    with pytest.raises(prismgate.AuthenticationError):
        prismgate.image_generation(
            model=MODEL, prompt="x", api_base=emu.base_url, api_key="fw-wrong"
        )


def test_aliases_and_health_probe(emu: FireworksEmulator) -> None:
    assert canonical_provider("fireworks-ai") == "fireworks_ai"
    assert probe_status("fireworks_ai", emu.base_url, emu.api_key) == 200
    assert emu.requests[-1].path == "/inference/v1/models"


def test_through_the_proxy(
    emu: FireworksEmulator, serve: Callable[..., RunningProxy], tmp_path: Any
) -> None:
    proxy = serve({
        "model_list": [model("flux", MODEL, api_base=emu.base_url, api_key=emu.api_key)],
        "general_settings": {"image_store": {"path": str(tmp_path)}},
    })  # fmt: skip
    client = openai.OpenAI(api_key="sk-unused", base_url=proxy.base_url + "/v1")
    answer = client.images.generate(
        model="flux", prompt="an otter", size="1024x1024", response_format="b64_json"
    )
    assert answer.data is not None
    decoded = opened(image_bytes(prismgate.ImageObject(b64_json=answer.data[0].b64_json)))
    assert decoded.size == (1024, 1024)
    as_url = client.images.generate(model="flux", prompt="an otter", response_format="url")
    assert as_url.data is not None and as_url.data[0].url
    assert httpx.get(as_url.data[0].url).status_code == 200
