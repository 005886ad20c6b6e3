"""The Together AI images emulator, through a real HTTP client."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from .together import TogetherEmulator

MODEL = "black-forest-labs/FLUX.1-schnell"


@pytest.fixture(scope="module")
def server() -> Iterator[TogetherEmulator]:
    with TogetherEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(server: TogetherEmulator) -> TogetherEmulator:
    server.reset()
    return server


def post(emu: TogetherEmulator, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return httpx.post(
        emu.base_url + "/v1/images/generations",
        json=body,
        headers={"Authorization": f"Bearer {key or emu.api_key}"},
    )


def test_base64_images_of_the_size(emu: TogetherEmulator) -> None:
    answer = post(emu, {"model": MODEL, "prompt": "x", "width": 640, "height": 320, "n": 2,
                        "response_format": "base64", "output_format": "png"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == [0, 1]
    for item in body["data"]:
        image = Image.open(io.BytesIO(base64.b64decode(item["b64_json"])))
        assert image.size == (640, 320) and image.format == "PNG"


def test_url_images_are_served(emu: TogetherEmulator) -> None:
    answer = post(emu, {"model": MODEL, "prompt": "x"})
    url = answer.json()["data"][0]["url"]
    image = Image.open(io.BytesIO(httpx.get(url).content))
    assert image.size == (1024, 1024) and image.format == "JPEG"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"response_format": "b64_json"}, "response_format"),
        ({"n": 5}, "n"),
        ({"width": 4096}, "width"),
        ({"output_format": "webp"}, "output_format"),
        ({"size": "1024x1024"}, "size"),
        ({"model": "nope/nope"}, "model"),
    ],
)
def test_validation(emu: TogetherEmulator, extra: dict[str, Any], param: str) -> None:
    answer = post(emu, {"model": MODEL, "prompt": "x", **extra})
    assert answer.status_code in (400, 404)
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param


def test_safety_auth_and_faults(emu: TogetherEmulator) -> None:
    refused = post(emu, {"model": MODEL, "prompt": "forbidden"})
    assert refused.status_code == 422 and "NSFW" in refused.json()["error"]["message"]
    assert post(emu, {"model": MODEL, "prompt": "x"}, key="bad").status_code == 401
    emu.fail_next("status", status=500)
    assert post(emu, {"model": MODEL, "prompt": "x"}).status_code == 500
    models = httpx.get(emu.base_url + "/v1/models",
                       headers={"Authorization": f"Bearer {emu.api_key}"})  # fmt: skip
    assert MODEL in {m["id"] for m in models.json()}
