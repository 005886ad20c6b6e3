"""The BytePlus ModelArk (Seedream) emulator, through a real HTTP client."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from .byteplus import BytePlusEmulator

V40 = "seedream-4-0-250828"
V45 = "seedream-4-5-251128"


@pytest.fixture(scope="module")
def server() -> Iterator[BytePlusEmulator]:
    with BytePlusEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(server: BytePlusEmulator) -> BytePlusEmulator:
    server.reset()
    return server


def post(emu: BytePlusEmulator, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return httpx.post(
        emu.base_url + "/api/v3/images/generations",
        json=body,
        headers={"Authorization": f"Bearer {key or emu.api_key}"},
    )


def test_base64_image_of_the_size(emu: BytePlusEmulator) -> None:
    answer = post(emu, {"model": V40, "prompt": "x", "size": "1280x720",
                        "response_format": "b64_json"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["usage"]["generated_images"] == 1 and body["data"][0]["size"] == "1280x720"
    image = Image.open(io.BytesIO(base64.b64decode(body["data"][0]["b64_json"])))
    assert image.size == (1280, 720) and image.format == "JPEG"


def test_presets_and_urls(emu: BytePlusEmulator) -> None:
    answer = post(emu, {"model": V45, "prompt": "x", "size": "2K"})
    item = answer.json()["data"][0]
    assert item["size"] == "2048x2048"
    assert Image.open(io.BytesIO(httpx.get(item["url"]).content)).format == "JPEG"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"model": V45, "size": "1024x1024"}, "size"),
        ({"model": V45, "size": "1K"}, "size"),
        ({"size": "8192x256"}, "size"),
        ({"seed": 2**40}, "seed"),
        ({"watermark": "no"}, "watermark"),
        ({"response_format": "base64"}, "response_format"),
        ({"image": ["file:///etc/passwd"]}, "image"),
        ({"n": 2}, "n"),
        ({"model": "nope"}, "model"),
    ],
)
def test_validation(emu: BytePlusEmulator, extra: dict[str, Any], param: str) -> None:
    answer = post(emu, {"model": V40, "prompt": "x", **extra})
    assert answer.status_code in (400, 404)
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "param", "type"} and error["param"] == param


def test_safety_auth_and_faults(emu: BytePlusEmulator) -> None:
    refused = post(emu, {"model": V40, "prompt": "forbidden"})
    assert refused.json()["error"]["code"] == "InputTextSensitiveContentDetected"
    assert post(emu, {"model": V40, "prompt": "x"}, key="bad").status_code == 401
    emu.fail_next("status", status=429, retry_after=4)
    limited = post(emu, {"model": V40, "prompt": "x"})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "4"
    assert limited.json()["error"]["code"] == "RateLimitExceeded"
    emu.fail_next("status", status=503)
    assert post(emu, {"model": V40, "prompt": "x"}).status_code == 503
