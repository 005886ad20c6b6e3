"""The Fireworks AI FLUX emulator, through a real HTTP client."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from .fireworks import FireworksEmulator
from .stability import RATIO_SIZES

PATH = "/inference/v1/workflows/accounts/fireworks/models/flux-1-schnell-fp8/text_to_image"


@pytest.fixture(scope="module")
def server() -> Iterator[FireworksEmulator]:
    with FireworksEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(server: FireworksEmulator) -> FireworksEmulator:
    server.reset()
    return server


def post(
    emu: FireworksEmulator, body: dict[str, Any], *, path: str = PATH, **headers: str
) -> httpx.Response:
    return httpx.post(
        emu.base_url + path,
        json=body,
        headers={"Authorization": f"Bearer {emu.api_key}", "Accept": "application/json",
                 **headers},
    )  # fmt: skip


def image_of(answer: httpx.Response) -> Image.Image:
    prefix, _, data = answer.json()["base64"][0].partition(",")
    assert prefix.startswith("data:image/") and prefix.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_json_answer_with_a_png_data_url(emu: FireworksEmulator) -> None:
    answer = post(emu, {"prompt": "x", "aspect_ratio": "3:4", "seed": 9})
    assert answer.status_code == 200, answer.text
    assert answer.json()["finishReason"] == "SUCCESS" and answer.json()["seed"] == 9
    image = image_of(answer)
    assert image.size == RATIO_SIZES["3:4"] and image.format == "PNG"


def test_image_type_header_and_binary_accept(emu: FireworksEmulator) -> None:
    jpeg = post(emu, {"prompt": "x"}, **{"Json-Return-Image-Accept": "image/jpeg"})
    assert image_of(jpeg).format == "JPEG"
    binary = post(emu, {"prompt": "x"}, Accept="image/png")
    assert binary.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(binary.content)).size == (1024, 1024)


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": ""},
        {"prompt": "x", "aspect_ratio": "7:5"},
        {"prompt": "x", "num_inference_steps": 0},
        {"prompt": "x", "seed": -1},
        {"prompt": "x", "width": 1024},
        {"prompt": "x", "safety_check": "yes"},
    ],
)
def test_validation(emu: FireworksEmulator, body: dict[str, Any]) -> None:
    answer = post(emu, body)
    assert answer.status_code == 400
    assert set(answer.json()["error"]) == {"object", "type", "code", "message"}


def test_safety_model_auth_and_faults(emu: FireworksEmulator) -> None:
    filtered = post(emu, {"prompt": "filtered", "safety_check": True})
    assert filtered.json()["finishReason"] == "CONTENT_FILTERED"
    unchecked = post(emu, {"prompt": "filtered"})
    assert unchecked.json()["finishReason"] == "SUCCESS"
    other = PATH.replace("flux-1-schnell-fp8", "sdxl")
    assert post(emu, {"prompt": "x"}, path=other).status_code == 404
    assert post(emu, {"prompt": "x"}, Authorization="Bearer bad").status_code == 401
    emu.fail_next("status", status=503, retry_after=1)
    unavailable = post(emu, {"prompt": "x"})
    assert unavailable.status_code == 503 and unavailable.headers["retry-after"] == "1"
