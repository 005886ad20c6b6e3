"""OpenRouter: chat on OpenAI's wire with image output in `message.images` (whole and
streamed), and generations and edits through its Image API (`POST /images`)."""

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
from prismgate.providers import canonical_provider, get_provider
from prismgate.providers.openrouter import OPENROUTER_IMAGE_FIELDS
from tests.emulators.openrouter import OpenRouterEmulator
from tests.serving import MASTER_KEY, RunningProxy, model

ENV = ("OPENROUTER_API_KEY", "OR_API_KEY", "OPENROUTER_API_BASE")
PAINTER = "openrouter/google/gemini-2.5-flash-image"
ASK = [{"role": "user", "content": "Draw a red kite."}]


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _server() -> Iterator[OpenRouterEmulator]:
    with OpenRouterEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(_server: OpenRouterEmulator) -> OpenRouterEmulator:
    _server.reset()
    return _server


def keys(emu: OpenRouterEmulator) -> dict[str, Any]:
    return {"api_base": emu.base_url + "/api/v1", "api_key": emu.api_key}


def picture(data_url: str) -> Image.Image:
    head, _, data = data_url.partition(",")
    assert head == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


def proxy_config(emu: OpenRouterEmulator, tmp_path: Path) -> dict[str, Any]:
    return {
        "model_list": [model("painter", PAINTER, **keys(emu))],
        "general_settings": {"master_key": MASTER_KEY, "image_store": {"path": str(tmp_path)}},
    }


# --- chat -----------------------------------------------------------------------------


def test_sdk_chat_keeps_message_images(emu: OpenRouterEmulator) -> None:
    answer = prismgate.completion(
        model=PAINTER, messages=ASK, modalities=["image", "text"], **keys(emu)
    )
    message = answer.choices[0].message  # type: ignore[union-attr]
    assert message.content == "Here is your picture."
    assert isinstance(message.images, list) and len(message.images) == 1
    assert picture(message.images[0].image_url.url).size == (1024, 1024)
    sent = emu.requests[-1]
    assert sent.path == "/api/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {emu.api_key}"
    assert sent.json is not None and sent.json["modalities"] == ["image", "text"]
    assert sent.json["model"] == "google/gemini-2.5-flash-image"


def test_attribution_headers_are_settings(emu: OpenRouterEmulator) -> None:
    prismgate.completion(
        model=PAINTER,
        messages=ASK,
        openrouter_site_url="https://example.org",
        openrouter_app_name="Prism test",
        **keys(emu),
    )
    headers = emu.requests[-1].headers
    assert headers["http-referer"] == "https://example.org"
    assert headers["x-title"] == "Prism test"


def test_image_output_from_a_text_model_keeps_openrouters_404(emu: OpenRouterEmulator) -> None:
    with pytest.raises(prismgate.NotFoundError) as caught:
        prismgate.completion(
            model="openrouter/openai/gpt-4o-mini",
            messages=ASK,
            modalities=["image", "text"],
            **keys(emu),
        )
    assert "output modalities" in caught.value.message


def test_a_chat_error_inside_a_200_is_an_error(emu: OpenRouterEmulator) -> None:
    with pytest.raises(prismgate.PrismgateError) as caught:
        prismgate.completion(
            model=PAINTER, messages=[{"role": "user", "content": "fail in band"}], **keys(emu)
        )
    assert caught.value.upstream_status == 502
    assert "Provider returned error" in caught.value.message


def test_a_bad_key_is_an_authentication_error(emu: OpenRouterEmulator) -> None:
    with pytest.raises(prismgate.AuthenticationError) as caught:
        prismgate.completion(
            model=PAINTER, messages=ASK, api_key="sk-or-wrong", api_base=keys(emu)["api_base"]
        )
    assert caught.value.upstream_status == 401


# --- image generation -----------------------------------------------------------------


def test_fields_table() -> None:
    assert {"prompt", "n", "size", "quality", "seed", "resolution"} <= set(OPENROUTER_IMAGE_FIELDS)
    assert canonical_provider("openrouter") == "openrouter"
    provider = get_provider("openrouter")
    assert provider.health_probe is not None and provider.image_edit is not None


def test_sdk_generation_goes_to_the_image_api_and_costs_what_openrouter_billed(
    emu: OpenRouterEmulator,
) -> None:
    emu.cost_per_image = 0.05  # OpenRouter's bill, not the catalog's $0.039
    answer = prismgate.image_generation(
        model=PAINTER, prompt="a lighthouse", size="1344x768", n=2, seed=7, **keys(emu)
    )
    assert len(answer.data) == 2 and len(emu.requests) == 2  # one image a call: fanned out
    for item in answer.data:
        assert item.b64_json is not None and item.url is None
        assert Image.open(io.BytesIO(base64.b64decode(item.b64_json))).size == (1344, 768)
    sent = emu.requests[-1]
    assert sent.path == "/api/v1/images"
    assert sent.headers["authorization"] == f"Bearer {emu.api_key}"
    assert sent.json == {
        "model": "google/gemini-2.5-flash-image",
        "prompt": "a lighthouse",
        "n": 1,
        "size": "1344x768",
        "seed": 7,
    }
    assert answer._hidden_params is not None
    assert answer._hidden_params.response_cost == pytest.approx(2 * 0.05)


def test_a_model_that_draws_several_gets_n_in_one_call(emu: OpenRouterEmulator) -> None:
    # Not in the catalog: OpenRouter decides, and this model draws up to four a call.
    answer = prismgate.image_generation(
        model="openrouter/black-forest-labs/flux.2-pro",
        prompt="a lighthouse",
        n=3,
        size="2K",
        output_format="jpeg",
        **keys(emu),
    )
    assert len(answer.data) == 3 and len(emu.requests) == 1
    assert emu.requests[0].json is not None and emu.requests[0].json["n"] == 3
    first = Image.open(io.BytesIO(base64.b64decode(answer.data[0].b64_json or "")))
    assert (first.format, first.size) == ("JPEG", (2048, 2048))
    assert answer._hidden_params is not None
    assert answer._hidden_params.response_cost == pytest.approx(3 * 0.04)


def test_edits_send_the_images_as_input_references(emu: OpenRouterEmulator) -> None:
    png = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(png, format="PNG")
    answer = prismgate.image_edit(
        model="openrouter/bytedance-seed/seedream-4.5",
        image=[png.getvalue(), png.getvalue()],
        prompt="make it blue",
        **keys(emu),
    )
    assert len(answer.data) == 1
    sent = emu.requests[-1].json
    assert sent is not None and sent["prompt"] == "make it blue"
    references = sent["input_references"]
    assert len(references) == 2 and references[0]["type"] == "image_url"
    assert picture(references[0]["image_url"]["url"]).size == (64, 48)
    assert answer._hidden_params is not None
    assert answer._hidden_params.response_cost == pytest.approx(0.04)


def test_an_edit_with_a_mask_is_refused_before_any_call(emu: OpenRouterEmulator) -> None:
    png = io.BytesIO()
    Image.new("RGBA", (32, 32)).save(png, format="PNG")
    with pytest.raises(prismgate.BadRequestError) as caught:
        prismgate.image_edit(
            model="openrouter/bytedance-seed/seedream-4.5",
            image=png.getvalue(),
            mask=png.getvalue(),
            prompt="x",
            **keys(emu),
        )
    assert caught.value.param == "mask" and "no mask" in caught.value.message
    assert not emu.requests


def test_a_size_of_no_documented_ratio_is_a_clear_400(emu: OpenRouterEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        prismgate.image_generation(model=PAINTER, prompt="x", size="1000x100", **keys(emu))
    assert "size" in caught.value.message
    assert not emu.requests


def test_openrouters_own_400_keeps_its_message(emu: OpenRouterEmulator) -> None:
    # An uncatalogued model: the gateway cannot know its limits, OpenRouter says them.
    with pytest.raises(prismgate.BadRequestError) as caught:
        prismgate.image_generation(
            model="openrouter/black-forest-labs/flux.2-pro", prompt="x", n=5, **keys(emu)
        )
    assert caught.value.upstream_status == 400
    assert "4 image(s) per request" in caught.value.message


def test_an_upstream_error_keeps_status_and_message(emu: OpenRouterEmulator) -> None:
    emu.fail_next("status", status=402, message="Insufficient credits")
    with pytest.raises(prismgate.PrismgateError) as caught:
        prismgate.image_generation(model=PAINTER, prompt="x", **keys(emu))
    assert caught.value.upstream_status == 402
    assert "Insufficient credits" in caught.value.message


def test_an_error_inside_a_200_is_an_error(emu: OpenRouterEmulator) -> None:
    with pytest.raises(prismgate.PrismgateError) as caught:
        prismgate.image_generation(model=PAINTER, prompt="fail in band", **keys(emu))
    assert caught.value.upstream_status == 502
    assert "Provider returned error" in caught.value.message


# --- through the proxy ----------------------------------------------------------------


def test_proxy_generation_b64_and_url_with_cost(
    emu: OpenRouterEmulator, serve: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    proxy = serve(proxy_config(emu, tmp_path))
    client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url + "/v1")
    raw = client.images.with_raw_response.generate(
        model="painter", prompt="a lighthouse", size="1024x1024", response_format="b64_json"
    )
    assert float(raw.headers["x-prismgate-response-cost"]) == pytest.approx(emu.cost_per_image)
    inline = raw.parse()
    assert inline.data is not None and inline.data[0].b64_json
    as_url = client.images.generate(model="painter", prompt="a lighthouse", response_format="url")
    assert as_url.data is not None and as_url.data[0].url
    served = httpx.get(as_url.data[0].url)
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"


def test_proxy_chat_relays_images_and_links_them_on_request(
    emu: OpenRouterEmulator, serve: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    proxy = serve(proxy_config(emu, tmp_path))
    client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url + "/v1")
    extra: dict[str, Any] = {"modalities": ["image", "text"]}
    inline = client.chat.completions.create(
        model="painter",
        messages=ASK,  # type: ignore[arg-type]
        extra_body=extra,
    )
    images = inline.choices[0].message.model_extra["images"]  # type: ignore[index]
    assert picture(images[0]["image_url"]["url"]).format == "PNG"
    linked = client.chat.completions.create(
        model="painter",
        messages=ASK,  # type: ignore[arg-type]
        extra_body={**extra, "image_response_format": "url"},
    )
    url = linked.choices[0].message.model_extra["images"][0]["image_url"]["url"]  # type: ignore[index]
    assert url.startswith(proxy.base_url + "/v1/images/files/")
    assert httpx.get(url).status_code == 200
    assert "image_response_format" not in json.dumps(emu.requests[-1].json)


def test_proxy_stream_carries_images_in_deltas(
    emu: OpenRouterEmulator, serve: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    proxy = serve(proxy_config(emu, tmp_path))
    client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url + "/v1")
    images = [
        image
        for chunk in client.chat.completions.create(
            model="painter",
            messages=ASK,  # type: ignore[arg-type]
            stream=True,
            extra_body={"modalities": ["image", "text"]},
        )
        for choice in chunk.choices
        for image in (choice.delta.model_extra or {}).get("images") or ()
    ]
    assert len(images) == 1 and picture(images[0]["image_url"]["url"]).size == (1024, 1024)


def test_proxy_refuses_a_bad_size_with_a_400(
    emu: OpenRouterEmulator, serve: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    proxy = serve(proxy_config(emu, tmp_path))
    answer = httpx.post(
        proxy.base_url + "/v1/images/generations",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json={"model": "painter", "prompt": "x", "size": "1000x100"},
    )
    assert answer.status_code == 400, answer.text
    assert "size" in answer.json()["error"]["message"]
    assert not emu.requests
