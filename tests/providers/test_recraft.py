"""Recraft: sizes from each model's list, up to six images a call, V3's style and negative
prompt, edits as imageToImage (no mask) or inpaint (OpenAI's mask made Recraft's), and
Recraft's JSON and plain-text errors."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

import prismgate
from prismgate.providers import canonical_provider
from prismgate.providers.recraft import DEFAULT_STRENGTH, V3_FIELDS, V4_FIELDS
from tests.emulators import make_image
from tests.emulators.recraft import RecraftEmulator
from tests.images import image_bytes, opened
from tests.providers.probes import probe_status
from tests.serving import RunningProxy, model

ENV = ("RECRAFT_API_KEY", "RECRAFT_API_TOKEN", "RECRAFT_API_BASE")
SQUARE = make_image(512, 512, "png", seed=3)


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _server() -> Iterator[RecraftEmulator]:
    with RecraftEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(_server: RecraftEmulator) -> RecraftEmulator:
    _server.reset()
    return _server


def generate(emu: RecraftEmulator, name: str = "recraftv3", **kwargs: Any) -> Any:
    return prismgate.image_generation(
        model=f"recraft/{name}", prompt=kwargs.pop("prompt", "an otter"),
        api_base=emu.base_url + "/v1", api_key=emu.api_key, **kwargs,
    )  # fmt: skip


def edit(emu: RecraftEmulator, name: str = "recraftv4_1", **kwargs: Any) -> Any:
    return prismgate.image_edit(
        model=f"recraft/{name}", prompt="give it a hat", image=kwargs.pop("image", SQUARE),
        api_base=emu.base_url + "/v1", api_key=emu.api_key, **kwargs,
    )  # fmt: skip


def transparent_mask(width: int, height: int) -> bytes:
    """Opaque, with a fully transparent top-left quarter (the area to redraw)."""
    mask = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, width // 2, height // 2))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------- generation

# (model, request parameter, value, body fields Recraft must receive besides the prompt)
ROWS = [
    ("recraftv3", "n", 3, {"n": 3}),
    ("recraftv3", "size", "1820x1024", {"size": "1820x1024"}),
    ("recraftv3", "response_format", "b64_json", {"response_format": "b64_json"}),
    ("recraftv3", "style", "digital_illustration", {"style": "digital_illustration"}),
    ("recraftv3", "negative_prompt", "blur", {"negative_prompt": "blur"}),
    ("recraftv3", "substyle", "hand_drawn", {"substyle": "hand_drawn"}),
    ("recraftv4_1", "size", "1344x768", {"size": "1344x768"}),
    ("recraftv4_1", "n", 6, {"n": 6}),
    ("recraftv4_1", "controls", {"no_text": True}, {"controls": {"no_text": True}}),
    ("recraftv4_pro", "size", "2688x1536", {"size": "2688x1536"}),
]


def test_rows_cover_the_tables() -> None:
    tested = {param for _, param, _, _ in ROWS} | {"prompt", "strength"}
    assert set(V3_FIELDS) <= tested and set(V4_FIELDS) <= tested


@pytest.mark.parametrize(("name", "param", "value", "expected"), ROWS)
def test_each_row_reaches_the_body(
    emu: RecraftEmulator, name: str, param: str, value: Any, expected: dict[str, Any]
) -> None:
    generate(emu, name, **{param: value})
    assert emu.requests[-1].json == {"model": name, "prompt": "an otter", **expected}


def test_base64_images_of_the_size_with_cost(emu: RecraftEmulator) -> None:
    answer = generate(emu, n=2, size="1536x1024", response_format="b64_json")
    assert len(emu.requests) == 1 and emu.requests[-1].path == "/v1/images/generations"
    assert emu.requests[-1].headers["authorization"] == f"Bearer {emu.api_key}"
    assert [opened(image_bytes(item)).size for item in answer.data] == [(1536, 1024)] * 2
    assert answer._hidden_params.response_cost == pytest.approx(2 * 0.04)


def test_url_images_are_recrafts_links(emu: RecraftEmulator) -> None:
    answer = generate(emu, "recraftv4_1", response_format="url")
    url = answer.data[0].url
    assert url.startswith(emu.base_url + "/files/")
    assert opened(httpx.get(url).content).size == (1024, 1024)
    assert answer._hidden_params.response_cost == pytest.approx(0.035)


def test_n_above_six_fans_out(emu: RecraftEmulator) -> None:
    answer = generate(emu, "recraftv4_1", n=8, response_format="b64_json")
    assert len(answer.data) == 8
    assert sorted(r.json["n"] for r in emu.requests if r.json) == [2, 6]
    assert answer._hidden_params.response_cost == pytest.approx(8 * 0.035)


@pytest.mark.parametrize(
    ("name", "kwargs", "param", "words"),
    [
        ("recraftv3", {"size": "1024x1792"}, "size", "1820x1024"),  # DALL·E's size
        ("recraftv4_1", {"size": "1820x1024"}, "size", "1344x768"),  # V3's size on V4.1
        ("recraftv4_1", {"style": "digital_illustration"}, "style", "does not support"),
        ("recraftv4", {"negative_prompt": "blur"}, "negative_prompt", "does not support"),
        ("recraftv3", {"style": "vivid"}, "style", "realistic_image"),
        ("recraftv3", {"quality": "hd"}, "quality", "does not support"),
        ("recraftv3", {"prompt": "x" * 1001}, "prompt", "1000"),
        ("recraftv3", {"strength": 0.3}, "strength", "edits"),
    ],
)
def test_refused_before_any_call(
    emu: RecraftEmulator, name: str, kwargs: dict[str, Any], param: str, words: str
) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        generate(emu, name, **kwargs)
    assert caught.value.status_code == 400 and caught.value.param == param
    assert words in caught.value.message
    assert emu.requests == []


def test_drop_params_drops_what_v4_cannot_take(emu: RecraftEmulator) -> None:
    answer = generate(emu, "recraftv4", negative_prompt="blur", drop_params=True)
    assert answer._hidden_params.dropped_params == ("negative_prompt",)
    assert "negative_prompt" not in (emu.requests[-1].json or {})


# ---------------------------------------------------------------------------- edits


def test_edit_without_mask_is_image_to_image(emu: RecraftEmulator) -> None:
    answer = edit(emu, n=2, response_format="b64_json")
    received = emu.requests[-1]
    assert received.path == "/v1/images/imageToImage"
    form = emu.forms[-1]
    assert form["model"] == "recraftv4_1" and form["prompt"] == "give it a hat"
    assert form["strength"] == str(DEFAULT_STRENGTH) and form["n"] == "2"
    assert form["image"] == SQUARE
    assert [opened(image_bytes(item)).size for item in answer.data] == [(512, 512)] * 2
    assert answer._hidden_params.response_cost == pytest.approx(2 * 0.035)


def test_edit_strength_is_the_callers(emu: RecraftEmulator) -> None:
    edit(emu, strength=0.2)
    assert emu.forms[-1]["strength"] == "0.2"


def test_edit_with_mask_is_inpaint_with_recrafts_mask(emu: RecraftEmulator) -> None:
    edit(emu, "recraftv3", mask=transparent_mask(512, 512), negative_prompt="blur")
    assert emu.requests[-1].path == "/v1/images/inpaint"
    form = emu.forms[-1]
    assert "strength" not in form and form["negative_prompt"] == "blur"
    mask = Image.open(io.BytesIO(form["mask"]))  # type: ignore[arg-type]
    assert mask.mode == "L" and mask.size == (512, 512)
    assert mask.getpixel((10, 10)) == 255 and mask.getpixel((500, 500)) == 0


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"size": "1024x1024"}, "size"),
        ({"image": [SQUARE, SQUARE]}, "image"),
        ({"mask": transparent_mask(256, 256)}, "mask"),
        ({"mask": transparent_mask(512, 512), "strength": 0.4}, "strength"),
        ({"controls": {"no_text": True}}, "controls"),
    ],
)
def test_edit_refusals(emu: RecraftEmulator, kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        edit(emu, **kwargs)
    assert caught.value.status_code == 400 and caught.value.param == param
    assert emu.requests == []


# ---------------------------------------------------------------------------- errors


def test_plain_text_401_is_an_authentication_error(emu: RecraftEmulator) -> None:
    with pytest.raises(prismgate.AuthenticationError) as caught:
        prismgate.image_generation(
            model="recraft/recraftv3", prompt="x", api_base=emu.base_url + "/v1", api_key="bad"
        )
    assert caught.value.upstream_status == 401
    assert "request unauthorized" in caught.value.message and "bad" not in caught.value.message


def test_upstream_refusal_keeps_recrafts_words(emu: RecraftEmulator) -> None:
    # An uncatalogued model: no rules here, so Recraft itself refuses the size.
    with pytest.raises(prismgate.BadRequestError) as caught:
        prismgate.image_generation(
            model="recraft/recraftv2", prompt="x", size="999x999",
            api_base=emu.base_url + "/v1", api_key=emu.api_key,
        )  # fmt: skip
    assert caught.value.upstream_status == 400 and caught.value.code == "invalid_size"
    assert "Image size is not supported" in caught.value.message


def test_rate_limit_keeps_retry_after(emu: RecraftEmulator) -> None:
    emu.fail_next("status", status=429, retry_after=7, times=5)
    with pytest.raises(prismgate.RateLimitError) as caught:
        generate(emu, num_retries=0)
    assert caught.value.retry_after == 7


def test_server_error_keeps_its_status(emu: RecraftEmulator) -> None:
    emu.fail_next("status", status=503, message="overloaded", times=5)
    with pytest.raises(prismgate.ServiceUnavailableError) as caught:
        generate(emu, num_retries=0)
    assert "overloaded" in caught.value.message


def test_key_from_recrafts_own_variable(
    emu: RecraftEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECRAFT_API_TOKEN", emu.api_key)
    answer = prismgate.image_generation(
        model="recraft/recraftv3", prompt="x", api_base=emu.base_url + "/v1"
    )
    assert len(answer.data) == 1


def test_portkeys_name_is_an_alias() -> None:
    assert canonical_provider("recraft-ai") == "recraft"


# ---------------------------------------------------------------------------- the proxy


def test_through_the_proxy(emu: RecraftEmulator, serve: Callable[..., RunningProxy]) -> None:
    proxy = serve({
        "model_list": [
            model("recraft", "recraft/recraftv4_1", api_base=emu.base_url + "/v1",
                  api_key=emu.api_key),
        ],
    })  # fmt: skip
    client = openai.OpenAI(api_key="sk-unused", base_url=proxy.base_url + "/v1")
    raw = client.images.with_raw_response.generate(
        model="recraft", prompt="an otter", size="1344x768", n=2, response_format="b64_json"
    )
    answer = raw.parse()
    assert answer.data is not None and len(answer.data) == 2
    for item in answer.data:
        decoded = opened(image_bytes(prismgate.ImageObject(b64_json=item.b64_json)))
        assert decoded.size == (1344, 768)
    assert raw.headers["x-prismgate-response-cost"] == "0.070000"
    raw = client.images.with_raw_response.generate(
        model="recraft", prompt="an otter", response_format="url"
    )
    as_url = raw.parse()
    assert as_url.data is not None and as_url.data[0].url
    assert opened(httpx.get(as_url.data[0].url).content).size == (1024, 1024)
    assert raw.headers["x-prismgate-response-cost"] == "0.035000"
    edited = client.images.edit(
        model="recraft", prompt="give it a hat", image=("otter.png", SQUARE, "image/png"),
        response_format="b64_json",
    )  # fmt: skip
    assert edited.data is not None
    assert opened(image_bytes(prismgate.ImageObject(b64_json=edited.data[0].b64_json))).size == (
        512,
        512,
    )
    assert emu.requests[-1].path == "/v1/images/imageToImage"


def test_health_probe_reads_the_account_for_free(emu: RecraftEmulator) -> None:
    assert probe_status("recraft", emu.base_url + "/v1", emu.api_key) == 200
    assert emu.requests[-1].path == "/v1/users/me"
    assert probe_status("recraft", emu.base_url + "/v1", "wrong-key") == 401
