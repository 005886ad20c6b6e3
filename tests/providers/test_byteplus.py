"""ByteDance Seedream on BytePlus ModelArk: free sizes within each model's pixel and
aspect-ratio rules, one image a call (`n` fanned out), reference-image edits, and
ModelArk's errors (a sensitive-content code is a content policy refusal)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

import prismgate
from prismgate.providers import canonical_provider
from prismgate.providers.byteplus import SEEDREAM_FIELDS
from tests.emulators import make_image
from tests.emulators.byteplus import BytePlusEmulator
from tests.images import image_bytes, opened
from tests.serving import RunningProxy, model

ENV = ("BYTEPLUS_API_KEY", "ARK_API_KEY", "BYTEPLUS_API_BASE")
V40 = "seedream-4-0-250828"
V45 = "seedream-4-5-251128"
SQUARE = make_image(512, 512, "png", seed=3)


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _server() -> Iterator[BytePlusEmulator]:
    with BytePlusEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(_server: BytePlusEmulator) -> BytePlusEmulator:
    _server.reset()
    return _server


def generate(emu: BytePlusEmulator, name: str = V40, **kwargs: Any) -> Any:
    return prismgate.image_generation(
        model=f"byteplus/{name}", prompt=kwargs.pop("prompt", "an otter"),
        api_base=emu.base_url + "/api/v3", api_key=emu.api_key, **kwargs,
    )  # fmt: skip


# (request parameter, value, body fields ModelArk must receive besides model and prompt)
ROWS = [
    ("size", "1280x720", {"size": "1280x720"}),
    ("response_format", "b64_json", {"response_format": "b64_json"}),
    ("watermark", False, {"watermark": False}),
]


def test_rows_cover_the_table() -> None:
    assert {param for param, _, _ in ROWS} | {"prompt"} == set(SEEDREAM_FIELDS)


@pytest.mark.parametrize(("param", "value", "expected"), ROWS)
def test_each_row_reaches_the_body(
    emu: BytePlusEmulator, param: str, value: Any, expected: dict[str, Any]
) -> None:
    generate(emu, **{param: value})
    assert emu.requests[-1].json == {"model": V40, "prompt": "an otter", **expected}


def test_nothing_is_injected(emu: BytePlusEmulator) -> None:
    """No watermark, size or sequential mode the caller did not ask for."""
    generate(emu)
    assert emu.requests[-1].json == {"model": V40, "prompt": "an otter"}


def test_n_fans_out_one_image_a_call_with_cost(emu: BytePlusEmulator) -> None:
    answer = generate(emu, n=3, size="1280x720", response_format="b64_json")
    assert len(emu.requests) == 3 and len(answer.data) == 3
    assert all(r.json is not None and "n" not in r.json for r in emu.requests)
    assert [opened(image_bytes(item)).size for item in answer.data] == [(1280, 720)] * 3
    assert answer._hidden_params.response_cost == pytest.approx(3 * 0.03)
    assert answer._hidden_params.upstream_calls == 3


def test_url_images_are_modelarks_links(emu: BytePlusEmulator) -> None:
    answer = generate(emu, V45, response_format="url")
    url = answer.data[0].url
    assert url.startswith(emu.base_url + "/files/")
    assert opened(httpx.get(url).content).format == "JPEG"
    assert answer._hidden_params.response_cost == pytest.approx(0.04)


@pytest.mark.parametrize(
    ("name", "kwargs", "param", "words"),
    [
        (V45, {"size": "1024x1024"}, "size", "3,686,400 to 16,777,216 pixels"),
        (V40, {"size": "1024x768"}, "size", "921,600 to 16,777,216 pixels"),
        (V40, {"size": "8192x256"}, "size", "aspect ratio from 1:16 to 16:1"),
        (V40, {"size": "2K"}, "size", "WIDTHxHEIGHT"),
        (V40, {"quality": "hd"}, "quality", "does not support"),
        (V40, {"negative_prompt": "blur"}, "negative_prompt", "does not support"),
        (V40, {"style": "vivid"}, "style", "does not support"),
    ],
)
def test_refused_before_any_call(
    emu: BytePlusEmulator, name: str, kwargs: dict[str, Any], param: str, words: str
) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        generate(emu, name, **kwargs)
    assert caught.value.status_code == 400 and caught.value.param == param
    assert words in caught.value.message
    assert emu.requests == []


def test_edit_sends_reference_images_as_data_urls(emu: BytePlusEmulator) -> None:
    other = make_image(300, 200, "jpeg", seed=4)
    answer = prismgate.image_edit(
        model=f"byteplus/{V40}", prompt="put the hat from image 2 on image 1",
        image=[SQUARE, other], size="1280x720", response_format="b64_json",
        api_base=emu.base_url + "/api/v3", api_key=emu.api_key,
    )  # fmt: skip
    sent = emu.requests[-1].json
    assert sent is not None and sent["size"] == "1280x720"
    assert sent["image"] == [
        "data:image/png;base64," + base64.b64encode(SQUARE).decode(),
        "data:image/jpeg;base64," + base64.b64encode(other).decode(),
    ]
    assert opened(image_bytes(answer.data[0])).size == (1280, 720)
    assert answer._hidden_params.response_cost == pytest.approx(0.03)


def test_one_edit_image_is_sent_as_a_string(emu: BytePlusEmulator) -> None:
    prismgate.image_edit(
        model=f"byteplus/{V40}", prompt="make it night", image=SQUARE,
        api_base=emu.base_url + "/api/v3", api_key=emu.api_key,
    )  # fmt: skip
    sent = emu.requests[-1].json
    assert sent is not None and isinstance(sent["image"], str)


def test_edit_refuses_a_mask(emu: BytePlusEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        prismgate.image_edit(
            model=f"byteplus/{V40}", prompt="x", image=SQUARE, mask=SQUARE,
            api_base=emu.base_url + "/api/v3", api_key=emu.api_key,
        )  # fmt: skip
    assert caught.value.param == "mask" and emu.requests == []


def test_sensitive_content_is_a_content_policy_error(emu: BytePlusEmulator) -> None:
    with pytest.raises(prismgate.ContentPolicyViolationError) as caught:
        generate(emu, prompt="something forbidden")
    assert caught.value.upstream_status == 400
    assert caught.value.code == "InputTextSensitiveContentDetected"


def test_seed_is_refused_where_modelark_ignores_it(emu: BytePlusEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        generate(emu, seed=42)
    assert caught.value.param == "seed" and "Seedream 3.0" in caught.value.message
    assert emu.requests == []


def test_seed_reaches_a_model_that_takes_one(emu: BytePlusEmulator) -> None:
    # Not catalogued here: the emulator does not serve it, so ModelArk's 404 comes back.
    with pytest.raises(prismgate.NotFoundError) as caught:
        generate(emu, "seedream-3-0-t2i-250415", seed=42)
    assert emu.requests[-1].json is not None and emu.requests[-1].json["seed"] == 42
    assert caught.value.code == "InvalidEndpointOrModel.NotFound"


def test_modelark_refusal_keeps_its_param(emu: BytePlusEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        generate(emu, watermark="no")
    assert caught.value.param == "watermark" and caught.value.upstream_status == 400


def test_bad_key_is_an_authentication_error(emu: BytePlusEmulator) -> None:
    with pytest.raises(prismgate.AuthenticationError) as caught:
        prismgate.image_generation(
            model=f"byteplus/{V40}", prompt="x", api_base=emu.base_url + "/api/v3",
            api_key="wrong-key",
        )  # fmt: skip
    assert caught.value.upstream_status == 401


def test_rate_limit_keeps_retry_after(emu: BytePlusEmulator) -> None:
    emu.fail_next("status", status=429, retry_after=3, times=5)
    with pytest.raises(prismgate.RateLimitError) as caught:
        generate(emu, num_retries=0)
    assert caught.value.retry_after == 3


def test_server_error_then_success_is_retried(emu: BytePlusEmulator) -> None:
    emu.fail_next("status", status=500)
    answer = generate(emu, num_retries=1)
    assert len(answer.data) == 1 and len(emu.requests) == 2


def test_key_from_arks_variable(emu: BytePlusEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARK_API_KEY", emu.api_key)
    answer = prismgate.image_generation(
        model=f"byteplus/{V40}", prompt="x", api_base=emu.base_url + "/api/v3"
    )
    assert len(answer.data) == 1


def test_aliases() -> None:
    assert canonical_provider("bytedance") == "byteplus"
    assert canonical_provider("byteplus-modelark") == "byteplus"


def test_through_the_proxy(emu: BytePlusEmulator, serve: Callable[..., RunningProxy]) -> None:
    proxy = serve({
        "model_list": [
            model("seedream", f"byteplus/{V40}", api_base=emu.base_url + "/api/v3",
                  api_key=emu.api_key),
        ],
    })  # fmt: skip
    client = openai.OpenAI(api_key="sk-unused", base_url=proxy.base_url + "/v1")
    raw = client.images.with_raw_response.generate(
        model="seedream", prompt="an otter", size="1280x720", n=2, response_format="b64_json"
    )
    answer = raw.parse()
    assert answer.data is not None and len(answer.data) == 2
    for item in answer.data:
        decoded = opened(image_bytes(prismgate.ImageObject(b64_json=item.b64_json)))
        assert decoded.size == (1280, 720)
    assert raw.headers["x-prismgate-response-cost"] == "0.060000"
    raw = client.images.with_raw_response.generate(
        model="seedream", prompt="an otter", size="1280x720", response_format="url"
    )
    as_url = raw.parse()
    assert as_url.data is not None and as_url.data[0].url
    assert opened(httpx.get(as_url.data[0].url).content).size == (1280, 720)
    assert raw.headers["x-prismgate-response-cost"] == "0.030000"
    edited = client.images.edit(
        model="seedream", prompt="make it night", image=("otter.png", SQUARE, "image/png"),
        response_format="b64_json", size="1280x720",  # type: ignore[arg-type]
    )  # fmt: skip
    assert edited.data is not None and edited.data[0].b64_json
    sent = emu.requests[-1].json
    assert sent is not None and sent["image"].startswith("data:image/png;base64,")
