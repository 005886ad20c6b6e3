"""The Recraft emulator, through a real HTTP client."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from .images import make_image
from .recraft import RecraftEmulator

SQUARE = make_image(512, 512, "png", seed=1)


@pytest.fixture(scope="module")
def server() -> Iterator[RecraftEmulator]:
    with RecraftEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(server: RecraftEmulator) -> RecraftEmulator:
    server.reset()
    return server


def post(emu: RecraftEmulator, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return httpx.post(
        emu.base_url + "/v1/images/generations",
        json=body,
        headers={"Authorization": f"Bearer {key or emu.api_key}"},
    )


def test_base64_images_of_the_size(emu: RecraftEmulator) -> None:
    answer = post(emu, {"model": "recraftv3", "prompt": "x", "size": "1707x1024", "n": 2,
                        "response_format": "b64_json"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["credits"] == 80 and len(body["data"]) == 2
    for item in body["data"]:
        image = Image.open(io.BytesIO(base64.b64decode(item["b64_json"])))
        assert image.size == (1707, 1024) and item["image_id"]


def test_url_images_are_served_and_aspect_ratios_accepted(emu: RecraftEmulator) -> None:
    answer = post(emu, {"model": "recraftv4_1", "prompt": "x", "size": "16:9"})
    url = answer.json()["data"][0]["url"]
    assert Image.open(io.BytesIO(httpx.get(url).content)).size == (1344, 768)


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"size": "1024x1792"}, "invalid_size"),
        ({"model": "recraftv4_1", "size": "1820x1024"}, "invalid_size"),
        ({"n": 7}, "invalid_parameter"),
        ({"model": "recraftv4", "negative_prompt": "blur"}, "invalid_parameter"),
        ({"style": "vivid"}, "invalid_style"),
        ({"quality": "hd"}, "invalid_parameter"),
        ({"model": "nope"}, "invalid_model"),
        ({"prompt": "x" * 1001}, "prompt_too_long"),
    ],
)
def test_validation(emu: RecraftEmulator, extra: dict[str, Any], code: str) -> None:
    answer = post(emu, {"model": "recraftv3", "prompt": "x", **extra})
    assert answer.status_code == 400
    assert set(answer.json()) == {"code", "message"} and answer.json()["code"] == code


def test_edits_are_multipart(emu: RecraftEmulator) -> None:
    headers = {"Authorization": f"Bearer {emu.api_key}"}
    url = emu.base_url + "/v1/images/"
    files = {"image": ("a.png", SQUARE, "image/png")}
    missing = httpx.post(url + "imageToImage", data={"prompt": "x"}, files=files,
                         headers=headers)  # fmt: skip
    assert missing.status_code == 400 and "strength" in missing.json()["message"]
    done = httpx.post(url + "imageToImage", data={"prompt": "x", "strength": "0.5"},
                      files=files, headers=headers)  # fmt: skip
    assert done.status_code == 200, done.text
    small = make_image(256, 256, "png", seed=2)
    wrong_mask = httpx.post(url + "inpaint", data={"prompt": "x"}, headers=headers,
                            files={**files, "mask": ("m.png", small, "image/png")})  # fmt: skip
    assert wrong_mask.status_code == 400 and wrong_mask.json()["code"] == "invalid_mask"
    as_json = httpx.post(url + "inpaint", json={"prompt": "x"}, headers=headers)
    assert as_json.status_code == 400


def test_plain_text_errors_and_faults(emu: RecraftEmulator) -> None:
    refused = post(emu, {"prompt": "x"}, key="bad")
    assert refused.status_code == 401 and refused.text == "request unauthorized"
    lost = httpx.post(emu.base_url + "/v1/images/nope", json={})
    assert lost.status_code == 404 and lost.text == "404 page not found"
    emu.fail_next("status", status=429, retry_after=2)
    limited = post(emu, {"prompt": "x"})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    emu.fail_next("status", status=500)
    assert post(emu, {"prompt": "x"}).status_code == 500
