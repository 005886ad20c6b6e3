"""Chat models that draw (Gemini image models) answer with `message.images`, through the
SDK and the real proxy, inline or as signed links, streamed or whole."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

import prismgate
from tests.emulators.google import GoogleEmulator
from tests.serving import MASTER_KEY, RunningProxy, model

GEMINI_IMAGE = "gemini/gemini-2.5-flash-image"
ASK = [{"role": "user", "content": "Draw a red kite, and say what you drew."}]


@pytest.fixture(scope="module")
def _server() -> Iterator[GoogleEmulator]:
    with GoogleEmulator() as emulator:
        yield emulator


@pytest.fixture
def google(_server: GoogleEmulator) -> GoogleEmulator:
    _server.reset()
    return _server


def keys(emulator: GoogleEmulator) -> dict[str, Any]:
    return {"api_key": emulator.api_key, "api_base": emulator.base_url}


def decoded(data_url: str) -> Image.Image:
    head, _, data = data_url.partition(",")
    assert head.startswith("data:image/") and head.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def proxy_config(emulator: GoogleEmulator, tmp_path: Path) -> dict[str, Any]:
    return {
        "model_list": [model("painter", GEMINI_IMAGE, **keys(emulator))],
        "general_settings": {"master_key": MASTER_KEY, "image_store": {"path": str(tmp_path)}},
    }


def test_the_sdk_puts_a_drawn_image_in_message_images(google: GoogleEmulator) -> None:
    answer = prismgate.completion(model=GEMINI_IMAGE, messages=ASK, **keys(google))
    message = answer.choices[0].message  # type: ignore[union-attr]
    assert message.images is not None and len(message.images) == 1
    image = message.images[0]
    assert image.type == "image_url"
    assert decoded(image.image_url.url).size[0] > 0
    assert message["images"][0]["image_url"]["url"] == image.image_url.url  # LiteLLM-style


def test_the_proxy_answers_inline_or_with_signed_links(
    serve: Callable[..., RunningProxy], google: GoogleEmulator, tmp_path: Path
) -> None:
    proxy = serve(proxy_config(google, tmp_path))
    client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url + "/v1")
    inline = client.chat.completions.create(model="painter", messages=ASK)  # type: ignore[arg-type]
    images = inline.choices[0].message.model_extra["images"]  # type: ignore[index]
    assert images[0]["image_url"]["url"].startswith("data:image/")
    linked = client.chat.completions.create(
        model="painter",
        messages=ASK,  # type: ignore[arg-type]
        extra_body={"image_response_format": "url"},
    )
    url = linked.choices[0].message.model_extra["images"][0]["image_url"]["url"]  # type: ignore[index]
    assert url.startswith(proxy.base_url + "/v1/images/files/")
    served = httpx.get(url)
    assert served.status_code == 200 and served.headers["content-type"].startswith("image/")
    # The provider never saw the delivery choice: it is the gateway's.
    assert "image_response_format" not in json.dumps(google.requests[-1].json)


def test_a_stream_carries_the_images_in_its_deltas(
    serve: Callable[..., RunningProxy], google: GoogleEmulator, tmp_path: Path
) -> None:
    proxy = serve(proxy_config(google, tmp_path))
    client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url + "/v1")
    images = [
        image
        for chunk in client.chat.completions.create(
            model="painter",
            messages=ASK,  # type: ignore[arg-type]
            stream=True,
        )
        for choice in chunk.choices
        for image in (choice.delta.model_extra or {}).get("images") or ()
    ]
    assert len(images) == 1 and images[0]["image_url"]["url"].startswith("data:image/")


def test_a_bad_delivery_choice_is_a_400_naming_it(
    serve: Callable[..., RunningProxy], google: GoogleEmulator, tmp_path: Path
) -> None:
    proxy = serve(proxy_config(google, tmp_path))
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    for body, says in [
        ({"image_response_format": "png"}, "must be b64_json"),
        ({"image_response_format": "url", "stream": True}, "needs a whole answer"),
    ]:
        answer = httpx.post(
            proxy.base_url + "/v1/chat/completions",
            headers=headers,
            json={"model": "painter", "messages": ASK, **body},
        )
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["param"] == "image_response_format" and says in error["message"]
