"""Stability AI direct (v2beta): multipart forms, one image per call, `size` → aspect ratio,
SD3.5 image-to-image as edits, and Stability's filter and errors in the OpenAI shape."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

import prismgate
from prismgate.providers import canonical_provider
from prismgate.providers.stability import DEFAULT_STRENGTH, STABILITY_FAMILIES
from tests.emulators import FormFile, StabilityEmulator, make_image
from tests.emulators.stability import RATIO_SIZES
from tests.images import image_bytes, opened
from tests.providers.probes import probe_status
from tests.serving import RunningProxy, model

ENV = ("STABILITY_API_KEY", "STABILITY_API_BASE")
SQUARE = make_image(512, 512, "png", seed=3)


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _server() -> Iterator[StabilityEmulator]:
    with StabilityEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(_server: StabilityEmulator) -> StabilityEmulator:
    _server.reset()
    return _server


def generate(emu: StabilityEmulator, model: str, **kwargs: Any) -> prismgate.ImageResponse:
    return prismgate.image_generation(
        model=f"stability/{model}", prompt=kwargs.pop("prompt", "an otter"),
        api_base=emu.base_url, api_key=emu.api_key, **kwargs,
    )  # fmt: skip


def edit(emu: StabilityEmulator, model: str = "sd3.5-large", **kwargs: Any) -> Any:
    return prismgate.image_edit(
        image=kwargs.pop("image", SQUARE), prompt="give it a hat", model=f"stability/{model}",
        api_base=emu.base_url, api_key=emu.api_key, **kwargs,
    )  # fmt: skip


def text_fields(form: dict[str, Any]) -> dict[str, str]:
    return {name: value for name, value in form.items() if isinstance(value, str)}


# ---------------------------------------------------------------------------- the field tables

# (family model, request parameter, value, form fields the emulator must receive)
ROWS = [
    ("stable-image-ultra", "prompt", "a red fox", {"prompt": "a red fox"}),
    ("stable-image-ultra", "negative_prompt", "blur", {"negative_prompt": "blur"}),
    ("stable-image-ultra", "size", "1344x768", {"aspect_ratio": "16:9"}),
    ("stable-image-ultra", "output_format", "webp", {"output_format": "webp"}),
    ("stable-image-ultra", "seed", 42, {"seed": "42"}),
    ("stable-image-core", "prompt", "a red fox", {"prompt": "a red fox"}),
    ("stable-image-core", "negative_prompt", "blur", {"negative_prompt": "blur"}),
    ("stable-image-core", "size", "1024x1536", {"aspect_ratio": "2:3"}),
    ("stable-image-core", "output_format", "jpeg", {"output_format": "jpeg"}),
    ("stable-image-core", "seed", 7, {"seed": "7"}),
    ("stable-image-core", "style_preset", "anime", {"style_preset": "anime"}),
    ("sd3.5-large", "prompt", "a red fox", {"prompt": "a red fox"}),
    ("sd3.5-large", "negative_prompt", "blur", {"negative_prompt": "blur"}),
    ("sd3.5-large", "size", "2100x900", {"aspect_ratio": "21:9"}),
    ("sd3.5-large", "output_format", "jpeg", {"output_format": "jpeg"}),
    ("sd3.5-large", "seed", 9, {"seed": "9"}),
    ("sd3.5-large", "cfg_scale", 4.5, {"cfg_scale": "4.5"}),
]
REQUEST_FIELDS = {"prompt", "negative_prompt", "size", "output_format"}


def test_rows_cover_every_table_entry() -> None:
    covered = {(m, p) for m, p, _, _ in ROWS}
    for family in STABILITY_FAMILIES:
        model_name = family.models[0].removeprefix("stability/")
        # `strength` is an edit parameter: covered by the edit tests below.
        wanted = {(model_name, name) for name in family.fields if name != "strength"}
        assert wanted <= covered, wanted - covered


@pytest.mark.parametrize(("model_name", "param", "value", "expected"), ROWS)
def test_each_row_reaches_the_form(
    emu: StabilityEmulator, model_name: str, param: str, value: Any, expected: dict[str, str]
) -> None:
    kwargs = {param: value}
    if param == "prompt":
        kwargs = {"prompt": value}
    generate(emu, model_name, **kwargs)
    form = text_fields(emu.forms[-1])
    base = {"prompt": "an otter"} if param != "prompt" else {}
    if model_name.startswith("sd3"):
        base["model"] = model_name
    assert form == {**base, **expected}


# ---------------------------------------------------------------------------- generation


@pytest.mark.parametrize(
    ("model_name", "path"),
    [
        ("stable-image-ultra", "/v2beta/stable-image/generate/ultra"),
        ("stable-image-core", "/v2beta/stable-image/generate/core"),
        ("sd3.5-large", "/v2beta/stable-image/generate/sd3"),
        ("sd3.5-large-turbo", "/v2beta/stable-image/generate/sd3"),
        ("sd3.5-medium", "/v2beta/stable-image/generate/sd3"),
    ],
)
def test_each_model_goes_to_its_endpoint(
    emu: StabilityEmulator, model_name: str, path: str
) -> None:
    response = generate(emu, model_name, size="768x1344", response_format="b64_json")
    received = emu.requests[-1]
    assert received.path == path
    assert received.headers["authorization"] == f"Bearer {emu.api_key}"
    assert received.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert received.headers["accept"] == "application/json"
    # The SD3.5 models share /sd3: `model` must say which (a peer drops it).
    assert emu.forms[-1].get("model") == (model_name if "sd3" in path else None)
    assert opened(image_bytes(response.data[0])).size == (768, 1344)
    assert response._hidden_params is not None
    assert response._hidden_params.response_cost is not None


def test_n_fans_out_one_call_per_image(emu: StabilityEmulator) -> None:
    response = generate(emu, "sd3.5-medium", n=3, size="1024x1024", seed=5)
    assert len(emu.requests) == 3 and len(response.data) == 3
    for item in response.data:
        assert opened(image_bytes(item)).size == (1024, 1024)
    assert response._hidden_params is not None
    assert response._hidden_params.response_cost == pytest.approx(3 * 0.035)


def test_url_is_a_data_url_for_sdk_callers(emu: StabilityEmulator) -> None:
    response = generate(emu, "stable-image-core", response_format="url", output_format="jpeg")
    url = response.data[0].url
    assert url is not None and url.startswith("data:image/jpeg;base64,")
    assert opened(image_bytes(response.data[0])).format == "JPEG"
    # Stability never sees response_format: it is base64-only, the gateway converts.
    assert "response_format" not in emu.forms[-1]


def test_near_ratio_is_reported(emu: StabilityEmulator) -> None:
    response = generate(emu, "stable-image-ultra", size="1792x1024")
    assert emu.forms[-1]["aspect_ratio"] == "16:9"
    assert response._hidden_params is not None
    assert response._hidden_params.adjusted == ("size=1792x1024->aspect_ratio=16:9",)


def test_unsupported_size_is_refused_before_any_call(emu: StabilityEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        generate(emu, "sd3.5-large", size="1000x100")
    assert caught.value.param == "size" and "16:9" in caught.value.message
    assert emu.requests == []


def test_unknown_extras_are_sent_as_given(emu: StabilityEmulator) -> None:
    generate(emu, "sd3.5-large", style_preset="pixel-art")
    assert emu.forms[-1]["style_preset"] == "pixel-art"


def test_stability_refusal_of_an_unknown_extra_keeps_its_message(emu: StabilityEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        generate(emu, "stable-image-ultra", sampler="K_EULER")
    assert caught.value.upstream_status == 400
    assert "sampler: unrecognized field" in caught.value.message


def test_webp_on_sd3_is_stabilitys_400(emu: StabilityEmulator) -> None:
    # The catalog lists webp for SD3.5, but /sd3 makes only png and jpeg (Stability's docs).
    with pytest.raises(prismgate.BadRequestError) as caught:
        generate(emu, "sd3.5-large", output_format="webp")
    assert "output_format" in caught.value.message


# ---------------------------------------------------------------------------- safety and errors


def test_filtered_image_is_a_content_policy_error(emu: StabilityEmulator) -> None:
    with pytest.raises(prismgate.ContentPolicyViolationError) as caught:
        generate(emu, "stable-image-core", prompt="a filtered scene", n=2)
    assert "CONTENT_FILTERED" in caught.value.message
    assert len(emu.requests) == 2


def test_moderation_403_is_a_content_policy_error(emu: StabilityEmulator) -> None:
    with pytest.raises(prismgate.ContentPolicyViolationError) as caught:
        generate(emu, "stable-image-ultra", prompt="something forbidden")
    assert caught.value.status_code == 400
    assert caught.value.upstream_status == 403
    assert "flagged by our content moderation" in caught.value.message


def test_rate_limit_keeps_retry_after(emu: StabilityEmulator) -> None:
    emu.fail_next("status", status=429, retry_after=3, message="slow down")
    with pytest.raises(prismgate.RateLimitError) as caught:
        generate(emu, "sd3.5-large")
    assert caught.value.retry_after == 3
    assert caught.value.code == "rate_limit_exceeded" and "slow down" in caught.value.message


def test_wrong_key_is_an_authentication_error(emu: StabilityEmulator) -> None:
    with pytest.raises(prismgate.AuthenticationError) as caught:
        prismgate.image_generation(
            model="stability/sd3.5-large", prompt="x", api_base=emu.base_url,
            api_key="sk-wrong-key-1234567890",
        )  # fmt: skip
    assert caught.value.upstream_status == 401
    assert "sk-wrong-key" not in caught.value.message


def test_missing_key_names_the_variable() -> None:
    with pytest.raises(prismgate.AuthenticationError) as caught:
        prismgate.image_generation(model="stability/sd3.5-large", prompt="x")
    assert "STABILITY_API_KEY" in caught.value.message


def test_key_from_the_environment(emu: StabilityEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STABILITY_API_KEY", emu.api_key)
    monkeypatch.setenv("STABILITY_API_BASE", emu.base_url)
    response = prismgate.image_generation(model="stability/stable-image-core", prompt="x")
    assert len(response.data) == 1


# ---------------------------------------------------------------------------- edits


def test_edit_is_image_to_image_with_a_default_strength(emu: StabilityEmulator) -> None:
    response = edit(emu, model="sd3.5-large-turbo", output_format="jpeg")
    form = emu.forms[-1]
    assert text_fields(form) == {
        "model": "sd3.5-large-turbo",
        "mode": "image-to-image",
        "prompt": "give it a hat",
        "output_format": "jpeg",
        "strength": str(DEFAULT_STRENGTH),
    }
    image = form["image"]
    assert isinstance(image, FormFile) and image.data == SQUARE
    assert image.content_type == "image/png"
    # The result keeps the input image's size.
    assert opened(image_bytes(response.data[0])).size == (512, 512)


def test_edit_strength_seed_and_n(emu: StabilityEmulator) -> None:
    response = edit(emu, strength=0.25, seed=11, n=2, negative_prompt="rain")
    assert len(response.data) == 2 and len(emu.forms) == 2
    assert {f["strength"] for f in emu.forms} == {"0.25"}
    assert {f["seed"] for f in emu.forms} == {"11"}
    assert {f["negative_prompt"] for f in emu.forms} == {"rain"}


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"mask": make_image(512, 512, "png", transparent=True)}, "mask"),
        ({"image": [SQUARE, SQUARE]}, "image"),
        ({"size": "1024x1024"}, "size"),
    ],
)
def test_edit_refuses_what_image_to_image_cannot_do(
    emu: StabilityEmulator, kwargs: dict[str, Any], param: str
) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        edit(emu, **kwargs)
    assert caught.value.param == param
    assert emu.requests == []


def test_core_cannot_edit(emu: StabilityEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        edit(emu, model="stable-image-core")
    assert caught.value.code == "model_not_supported"
    assert emu.requests == []


# ---------------------------------------------------------------------------- the rest


def test_aliases_and_health_probe(emu: StabilityEmulator) -> None:
    assert canonical_provider("stability-ai") == "stability"
    assert probe_status("stability", emu.base_url, emu.api_key) == 200
    assert emu.requests[-1].path == "/v1/user/balance"


def test_through_the_proxy(
    emu: StabilityEmulator, serve: Callable[..., RunningProxy], tmp_path: Any
) -> None:
    proxy = serve({
        "model_list": [
            model("sd3", "stability/sd3.5-large", api_base=emu.base_url,
                  api_key="os.environ/STABILITY_KEY"),
        ],
        "general_settings": {"image_store": {"path": str(tmp_path)}},
    }, environ={"STABILITY_KEY": emu.api_key})  # fmt: skip
    client = openai.OpenAI(api_key="sk-unused", base_url=proxy.base_url + "/v1")
    as_b64 = client.images.generate(
        model="sd3", prompt="an otter", size="1536x1024", response_format="b64_json", n=2
    )
    assert as_b64.data is not None and len(as_b64.data) == 2
    for item in as_b64.data:
        decoded = opened(image_bytes(prismgate.ImageObject(b64_json=item.b64_json)))
        assert decoded.size == RATIO_SIZES["3:2"]
    assert emu.forms[-1]["model"] == "sd3.5-large"
    as_url = client.images.generate(model="sd3", prompt="an otter", response_format="url")
    assert as_url.data is not None and as_url.data[0].url
    fetched = httpx.get(as_url.data[0].url)
    assert fetched.status_code == 200 and opened(fetched.content).size == (1024, 1024)
