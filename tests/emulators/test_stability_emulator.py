"""The Stability emulator, through a real HTTP client: multipart only, Stability's
validation and error shape, real images, and the safety outcomes its docstring promises."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from .images import make_image
from .stability import RATIO_SIZES, StabilityEmulator

SD3 = "/v2beta/stable-image/generate/sd3"


@pytest.fixture(scope="module")
def server() -> Iterator[StabilityEmulator]:
    with StabilityEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(server: StabilityEmulator) -> StabilityEmulator:
    server.reset()
    return server


def post(
    emu: StabilityEmulator,
    fields: dict[str, str],
    *,
    path: str = SD3,
    files: dict[str, Any] | None = None,
    accept: str = "application/json",
    key: str | None = None,
) -> httpx.Response:
    # httpx sends multipart only with a file; an empty one keeps text-only forms multipart.
    return httpx.post(
        emu.base_url + path,
        data=fields,
        files=files or {"none": ("", b"")},
        headers={"Authorization": f"Bearer {key or emu.api_key}", "Accept": accept},
    )


def decoded(answer: httpx.Response) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(answer.json()["image"])))


def error_of(answer: httpx.Response) -> str:
    body = answer.json()
    assert set(body) == {"id", "name", "errors"}
    return str(body["errors"][0])


def test_text_to_image_at_the_ratio(emu: StabilityEmulator) -> None:
    headers = {"Authorization": f"Bearer {emu.api_key}", "Accept": "application/json"}
    urlencoded = httpx.post(emu.base_url + SD3, data={"prompt": "otter"}, headers=headers)
    assert urlencoded.status_code == 400 and "multipart" in error_of(urlencoded)
    answer = httpx.post(
        emu.base_url + SD3,
        files={"prompt": (None, "otter"), "aspect_ratio": (None, "9:21")},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["finish_reason"] == "SUCCESS"
    assert decoded(answer).size == RATIO_SIZES["9:21"]
    assert emu.forms[-1] == {"prompt": "otter", "aspect_ratio": "9:21"}


def test_json_body_gets_stabilitys_400(emu: StabilityEmulator) -> None:
    answer = httpx.post(
        emu.base_url + SD3, json={"prompt": "otter"},
        headers={"Authorization": f"Bearer {emu.api_key}"},
    )  # fmt: skip
    assert answer.status_code == 400
    assert "multipart/form-data" in error_of(answer)


@pytest.mark.parametrize(
    ("path", "fields", "words"),
    [
        (SD3, {"prompt": ""}, "prompt"),
        (SD3, {"prompt": "x", "aspect_ratio": "4:3"}, "aspect_ratio"),
        (SD3, {"prompt": "x", "output_format": "webp"}, "output_format"),
        (SD3, {"prompt": "x", "model": "sd9"}, "model"),
        (SD3, {"prompt": "x", "cfg_scale": "11"}, "cfg_scale"),
        (SD3, {"prompt": "x", "seed": "4294967295"}, "seed"),
        (SD3, {"prompt": "x", "mode": "image-to-image", "strength": "0.5"}, "image"),
        ("/v2beta/stable-image/generate/ultra", {"prompt": "x", "cfg_scale": "4"}, "cfg_scale"),
        ("/v2beta/stable-image/generate/core", {"prompt": "x", "style_preset": "oil"}, "style"),
    ],
)
def test_validation(emu: StabilityEmulator, path: str, fields: dict[str, str], words: str) -> None:
    answer = post(emu, fields, path=path)
    assert answer.status_code == 400
    assert words in error_of(answer)


def test_image_to_image_keeps_the_input_size(emu: StabilityEmulator) -> None:
    files = {"image": ("in.png", make_image(320, 200, "png"), "image/png")}
    answer = post(emu, {"prompt": "x", "mode": "image-to-image", "strength": "0.4"}, files=files)
    assert answer.status_code == 200, answer.text
    assert decoded(answer).size == (320, 200)
    refused = post(
        emu, {"prompt": "x", "mode": "image-to-image", "strength": "0.4", "aspect_ratio": "1:1"},
        files=files,
    )  # fmt: skip
    assert refused.status_code == 400 and "aspect_ratio" in error_of(refused)
    no_strength = post(emu, {"prompt": "x", "mode": "image-to-image"}, files=files)
    assert no_strength.status_code == 400 and "strength" in error_of(no_strength)


def test_image_accept_returns_bytes_and_headers(emu: StabilityEmulator) -> None:
    answer = post(emu, {"prompt": "x", "seed": "77", "output_format": "jpeg"}, accept="image/*")
    assert answer.headers["content-type"] == "image/jpeg"
    assert answer.headers["finish-reason"] == "SUCCESS" and answer.headers["seed"] == "77"
    assert Image.open(io.BytesIO(answer.content)).size == (1024, 1024)


def test_seed_makes_the_same_image(emu: StabilityEmulator) -> None:
    first = post(emu, {"prompt": "x", "seed": "5"}).json()
    again = post(emu, {"prompt": "x", "seed": "5"}).json()
    other = post(emu, {"prompt": "x", "seed": "5", "model": "sd3.5-medium"}).json()
    assert first["image"] == again["image"] != other["image"]
    assert first["seed"] == 5


def test_safety_outcomes(emu: StabilityEmulator) -> None:
    refused = post(emu, {"prompt": "forbidden thing"})
    assert refused.status_code == 403 and refused.json()["name"] == "content_moderation"
    filtered = post(emu, {"prompt": "filtered thing"})
    assert filtered.status_code == 200
    assert filtered.json()["finish_reason"] == "CONTENT_FILTERED"


def test_auth_balance_and_faults(emu: StabilityEmulator) -> None:
    assert post(emu, {"prompt": "x"}, key="sk-wrong").status_code == 401
    balance = httpx.get(emu.base_url + "/v1/user/balance",
                        headers={"Authorization": f"Bearer {emu.api_key}"})  # fmt: skip
    assert balance.json() == {"credits": 42.5}
    emu.fail_next("status", status=429, retry_after=2)
    limited = post(emu, {"prompt": "x"})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert limited.json()["name"] == "rate_limit_exceeded"
    assert len(emu.forms) == 0  # nothing was accepted
