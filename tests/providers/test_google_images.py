"""Image generation on Google (Imagen on Vertex AI's `:predict`, Gemini image models on
`:generateContent`), through the SDK and the proxy, against the Google emulator."""

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
from prismgate import Gateway, aimage_generation, image_generation
from prismgate.config import load_config
from prismgate.providers.google import GEMINI, VERTEX_AI
from prismgate.providers.google.images import (
    GEMINI_IMAGE_FIELDS,
    IMAGEN_4_FIELDS,
    IMAGEN_FIELDS,
    VERTEX_GEMINI_IMAGE_FIELDS,
)
from tests.emulators.google import GoogleEmulator
from tests.serving import RunningProxy, model

IMAGEN = "vertex_ai/imagegeneration@006"
IMAGEN_4 = "vertex_ai/imagen-4.0-generate-001"
VERTEX_GEMINI = "vertex_ai/gemini-2.5-flash-image"
GEMINI_IMAGE = "gemini/gemini-2.5-flash-image"
LOCATION = "europe-west4"
GOOGLE_ENV = (
    "VERTEXAI_PROJECT", "GOOGLE_CLOUD_PROJECT", "VERTEXAI_LOCATION", "GOOGLE_CLOUD_LOCATION",
    "GEMINI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_BASE", "GOOGLE_APPLICATION_CREDENTIALS",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _no_google_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in GOOGLE_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _server() -> Iterator[GoogleEmulator]:
    with GoogleEmulator() as emulator:
        yield emulator


@pytest.fixture
def google(_server: GoogleEmulator) -> GoogleEmulator:
    _server.reset()
    return _server


def vertex(emu: GoogleEmulator) -> dict[str, Any]:
    """The seed's spelling of the Vertex settings."""
    return {
        "vertex_ai_project": emu.project,
        "vertex_ai_location": LOCATION,
        "vertex_credentials": json.dumps(emu.service_account_info()),
        "api_base": emu.base_url,
    }


def gemini(emu: GoogleEmulator) -> dict[str, Any]:
    return {"api_key": emu.api_key, "api_base": emu.base_url}


def size_of(b64: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return image.size


def sent(emu: GoogleEmulator) -> dict[str, Any]:
    """The body of the last model call (token grants left aside)."""
    calls = [r for r in emu.requests if r.path != "/token"]
    assert calls[-1].json is not None
    return calls[-1].json


def model_calls(emu: GoogleEmulator) -> list[Any]:
    return [r for r in emu.requests if r.path != "/token"]


# ---------------------------------------------------------------------------- Imagen


def test_seed_imagen_example_b64_json(google: GoogleEmulator) -> None:
    answer = image_generation(
        prompt="A lighthouse at dawn", model=IMAGEN, n=1, size="1024x1024",
        response_format="b64_json", **vertex(google),
    )  # fmt: skip
    assert len(answer.data) == 1 and answer.data[0].b64_json
    assert size_of(answer.data[0].b64_json) == (1024, 1024)
    assert answer._hidden_params["response_cost"] == pytest.approx(0.02)
    call = model_calls(google)[-1]
    assert call.path == (
        f"/v1/projects/{google.project}/locations/{LOCATION}/publishers/google/models/"
        "imagegeneration@006:predict"
    )
    assert call.headers["authorization"].startswith("Bearer ya29.emulator-")
    # Project, location and credentials shape the URL and header only, never the body.
    assert call.json == {
        "instances": [{"prompt": "A lighthouse at dawn"}],
        "parameters": {"sampleCount": 1, "aspectRatio": "1:1", "includeRaiReason": True},
    }


def test_imagen_url_response(google: GoogleEmulator) -> None:
    answer = image_generation(prompt="A lighthouse", model=IMAGEN, size="1792x1024",
                              response_format="url", **vertex(google))  # fmt: skip
    url = answer.data[0].url
    assert url and answer.data[0].b64_json is None
    if url.startswith("data:"):
        payload = url.split(",", 1)[1]
    else:
        payload = base64.b64encode(httpx.get(url).content).decode()
    assert size_of(payload) == (1408, 768)  # 1792x1024 is within 2 % of 16:9
    assert answer._hidden_params["adjusted"] == ("size=1792x1024->aspect_ratio=16:9",)
    assert answer._hidden_params["response_cost"] is not None


async def test_more_images_than_one_call_makes(google: GoogleEmulator) -> None:
    async with Gateway(load_config({}, environ={})) as gateway:
        answer = await aimage_generation(prompt="boats", model=IMAGEN, n=6, gateway=gateway,
                                         **vertex(google))  # fmt: skip
    assert len(answer.data) == 6
    counts = sorted(call.json["parameters"]["sampleCount"] for call in model_calls(google))
    assert counts == [2, 4]
    assert google.tokens_issued == 1  # one token for both calls
    assert answer._hidden_params["response_cost"] == pytest.approx(6 * 0.02)


# Each row of the Imagen tables: (parameter, value, what `parameters` then holds).
IMAGEN_ROWS: dict[str, tuple[Any, dict[str, Any]]] = {
    "n": (3, {"sampleCount": 3}),
    "size": ("1024x768", {"aspectRatio": "4:3"}),
    "negative_prompt": ("fog", {"negativePrompt": "fog"}),
    "output_format": ("jpeg", {"outputOptions": {"mimeType": "image/jpeg"}}),
    "output_compression": (40, {"outputOptions": {"compressionQuality": 40}}),
    "seed": (42, {"seed": 42}),
    "person_generation": ("allow_all", {"personGeneration": "allow_all"}),
    "safety_setting": ("block_only_high", {"safetySetting": "block_only_high"}),
    "add_watermark": (False, {"addWatermark": False}),
    "enhance_prompt": (True, {"enhancePrompt": True}),
    "guidance_scale": (12.5, {"guidanceScale": 12.5}),
    "language": ("ja", {"language": "ja"}),
    "sample_image_size": ("2K", {"sampleImageSize": "2K"}),
}
_OPENAI = {"n", "size", "negative_prompt", "output_format", "output_compression"}


def test_every_imagen_row_is_tested() -> None:
    assert set(IMAGEN_FIELDS) == {"prompt", *IMAGEN_ROWS}
    assert set(IMAGEN_4_FIELDS) == set(IMAGEN_FIELDS) - {"negative_prompt"}


@pytest.mark.parametrize("name", sorted(IMAGEN_ROWS))
def test_imagen_row_body(google: GoogleEmulator, name: str) -> None:
    value, expected = IMAGEN_ROWS[name]
    # sample_image_size is Imagen 4's; the rest go to Imagen 3, which has them all.
    target = IMAGEN_4 if name == "sample_image_size" else "vertex_ai/imagen-3.0-generate-002"
    kwargs = {name: value}
    if name == "output_compression":
        kwargs["output_format"] = "jpeg"  # Google compresses JPEG only
        expected = {"outputOptions": {"mimeType": "image/jpeg", "compressionQuality": 40}}
    answer = image_generation(prompt="a harbour", model=target, **kwargs, **vertex(google))
    assert answer.data
    parameters = {"sampleCount": 1, "includeRaiReason": True, **expected}
    assert sent(google) == {"instances": [{"prompt": "a harbour"}], "parameters": parameters}


def test_camel_case_extras_and_provider_objects(google: GoogleEmulator) -> None:
    image_generation(prompt="a bay", model=IMAGEN_4, personGeneration="ALLOW_ADULT",
                     parameters={"includeSafetyAttributes": True}, labels={"team": "art"},
                     **vertex(google))  # fmt: skip
    assert sent(google) == {
        "instances": [{"prompt": "a bay"}],
        "parameters": {"sampleCount": 1, "personGeneration": "ALLOW_ADULT",
                       "includeSafetyAttributes": True, "includeRaiReason": True},
        "labels": {"team": "art"},
    }  # fmt: skip
    with pytest.raises(prismgate.BadRequestError, match="storageUri is not supported"):
        image_generation(prompt="a bay", model=IMAGEN_4, storageUri="gs://b/x", **vertex(google))


def test_rewritten_prompt_is_the_revised_prompt(google: GoogleEmulator) -> None:
    answer = image_generation(prompt="a bay", model=IMAGEN_4, enhance_prompt=True,
                              **vertex(google))  # fmt: skip
    assert answer.data[0].revised_prompt == "A detailed, high-quality picture of: a bay"


def test_negative_prompt_is_refused_on_imagen_4(google: GoogleEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError, match="negative_prompt"):
        image_generation(prompt="a bay", model=IMAGEN_4, negative_prompt="fog", **vertex(google))
    # An uncatalogued Imagen 4 id: refused by its family, never silently dropped.
    with pytest.raises(prismgate.BadRequestError, match="negative_prompt"):
        image_generation(prompt="a bay", model="vertex_ai/imagen-4.0-generate-preview-06-06",
                         negative_prompt="fog", **vertex(google))  # fmt: skip
    assert model_calls(google) == []


def test_withheld_images_are_reported(google: GoogleEmulator) -> None:
    answer = image_generation(prompt="FILTER_SOME ships", model=IMAGEN, n=3, **vertex(google))
    assert len(answer.data) == 2
    assert answer._hidden_params["filtered"] == 1
    assert answer._hidden_params["response_cost"] == pytest.approx(2 * 0.02)
    with pytest.raises(prismgate.ContentPolicyViolationError, match="safety filter") as caught:
        image_generation(prompt="FILTER_ME", model=IMAGEN, n=2, **vertex(google))
    assert caught.value.status_code == 400


def test_imagen_errors_keep_their_meaning(google: GoogleEmulator) -> None:
    google.fail_next("status", status=429, retry_after=3)
    with pytest.raises(prismgate.RateLimitError) as caught:
        image_generation(prompt="a bay", model=IMAGEN, **vertex(google))
    assert caught.value.retry_after == 3 and caught.value.code == "RESOURCE_EXHAUSTED"
    with pytest.raises(prismgate.BadRequestError, match="Responsible AI"):
        image_generation(prompt="BLOCK_PROMPT", model=IMAGEN, **vertex(google))
    with pytest.raises(prismgate.BadRequestError, match="aspect ratio"):
        image_generation(prompt="a bay", model=IMAGEN, size="1000x300", **vertex(google))


def test_imagen_is_refused_on_the_gemini_api(google: GoogleEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError, match=r"vertex_ai/imagen-3\.0-generate-002"):
        image_generation(prompt="a bay", model="gemini/imagen-3.0-generate-002", **gemini(google))
    with pytest.raises(prismgate.BadRequestError, match="Gemini image models only"):
        image_generation(prompt="a bay", model="gemini/some-painter", **gemini(google))
    assert google.requests == []


def test_proxy_serves_imagen_with_the_seed_settings(
    google: GoogleEmulator, serve: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    config = {
        "model_list": [model(
            "imagen", IMAGEN, vertex_ai_project=google.project, vertex_ai_location=LOCATION,
            vertex_credentials="os.environ/VERTEX_SA_JSON", api_base=google.base_url,
        )],
        "general_settings": {"image_store": {"path": str(tmp_path)}},
    }  # fmt: skip
    proxy = serve(config, environ={"VERTEX_SA_JSON": json.dumps(google.service_account_info())})
    client = openai.OpenAI(api_key="x", base_url=proxy.base_url + "/v1")
    b64 = client.images.generate(model="imagen", prompt="otters", n=2, size="1024x1024",
                                 response_format="b64_json")  # fmt: skip
    assert (
        b64.data is not None and [size_of(d.b64_json or "") for d in b64.data] == [(1024, 1024)] * 2
    )
    linked = client.images.generate(model="imagen", prompt="otters", size="768x1365",
                                    response_format="url")  # fmt: skip
    assert linked.data is not None and linked.data[0].url
    fetched = httpx.get(linked.data[0].url)
    assert fetched.status_code == 200
    with Image.open(io.BytesIO(fetched.content)) as image:
        assert image.size == (768, 1408)  # 9:16
    for call in model_calls(google):
        assert google.project not in call.raw.decode() and LOCATION not in call.raw.decode()
        assert "private_key" not in call.raw.decode()


# ---------------------------------------------------------------------------- Gemini


def test_gemini_image_on_vertex(google: GoogleEmulator) -> None:
    answer = image_generation(prompt="a red kite", model=VERTEX_GEMINI, size="1792x1024",
                              **vertex(google))  # fmt: skip
    assert [size_of(d.b64_json or "") for d in answer.data] == [(1344, 768)]
    call = model_calls(google)[-1]
    assert call.path.endswith("/models/gemini-2.5-flash-image:generateContent")  # never :predict
    assert call.json == {
        "contents": [{"role": "user", "parts": [{"text": "a red kite"}]}],
        "generationConfig": {"imageConfig": {"aspectRatio": "16:9"},
                             "responseModalities": ["IMAGE"]},
    }  # fmt: skip
    usage = answer.usage
    assert usage is not None and usage.output_tokens == 1290
    assert usage.output_tokens_details is not None
    assert usage.output_tokens_details.image_tokens == 1290
    expected = usage.input_tokens * 3e-7 + 1290 * 3e-5
    assert answer._hidden_params["response_cost"] == pytest.approx(expected)


async def test_gemini_image_on_the_gemini_api_fans_out(google: GoogleEmulator) -> None:
    async with Gateway(load_config({}, environ={})) as gateway:
        answer = await aimage_generation(prompt="kites", model=GEMINI_IMAGE, n=3,
                                         response_format="b64_json", gateway=gateway,
                                         **gemini(google))  # fmt: skip
    assert [size_of(d.b64_json or "") for d in answer.data] == [(1024, 1024)] * 3
    calls = model_calls(google)
    assert len(calls) == 3
    for call in calls:
        assert call.path == "/v1beta/models/gemini-2.5-flash-image:generateContent"
        assert call.headers["x-goog-api-key"] == google.api_key
    assert google.key_in_url == []
    assert answer.usage is not None and answer.usage.output_tokens == 3 * 1290


GEMINI_ROWS: dict[str, tuple[Any, dict[str, Any]]] = {
    "n": (1, {}),
    "size": ("832x1248", {"imageConfig": {"aspectRatio": "2:3"}}),
    "image_size": ("1K", {"imageConfig": {"imageSize": "1K"}}),
    "seed": (5, {"seed": 5}),
    "output_format": ("jpeg", {"imageConfig": {"imageOutputOptions": {"mimeType": "image/jpeg"}}}),
    "output_compression": (70, {"imageConfig": {"imageOutputOptions": {
        "mimeType": "image/jpeg", "compressionQuality": 70}}}),
    "person_generation": ("ALLOW_ADULT", {"imageConfig": {"personGeneration": "ALLOW_ADULT"}}),
}  # fmt: skip


def test_every_gemini_row_is_tested() -> None:
    assert set(VERTEX_GEMINI_IMAGE_FIELDS) == {"prompt", *GEMINI_ROWS}
    assert set(GEMINI_IMAGE_FIELDS) == {"prompt", "n", "size", "image_size", "seed"}


@pytest.mark.parametrize("name", sorted(GEMINI_ROWS))
def test_gemini_row_body(google: GoogleEmulator, name: str) -> None:
    value, expected = GEMINI_ROWS[name]
    kwargs = {name: value}
    if name == "output_compression":
        kwargs["output_format"] = "jpeg"
    answer = image_generation(prompt="a kite", model=VERTEX_GEMINI, **kwargs, **vertex(google))
    assert answer.data
    config = {**expected, "responseModalities": ["IMAGE"]}
    contents = [{"role": "user", "parts": [{"text": "a kite"}]}]
    assert sent(google) == {"contents": contents, "generationConfig": config}


def test_gemini_refusals(google: GoogleEmulator) -> None:
    with pytest.raises(prismgate.ContentPolicyViolationError, match="IMAGE_SAFETY") as caught:
        image_generation(prompt="FILTER_ME", model=GEMINI_IMAGE, **gemini(google))
    assert caught.value.status_code == 400
    with pytest.raises(prismgate.ContentPolicyViolationError, match="PROHIBITED_CONTENT"):
        image_generation(prompt="BLOCK_PROMPT", model=VERTEX_GEMINI, **vertex(google))
    with pytest.raises(prismgate.APIError, match="without an image"):
        image_generation(prompt="TEXT_ONLY", model=GEMINI_IMAGE, **gemini(google))
    # Output options are Vertex's: the Gemini API's catalog entry does not list them.
    with pytest.raises(prismgate.BadRequestError, match="output_format"):
        image_generation(prompt="kite", model=GEMINI_IMAGE, output_format="jpeg", **gemini(google))


def test_an_uncatalogued_gemini_image_model(google: GoogleEmulator) -> None:
    answer = image_generation(prompt="a kite", model="vertex_ai/gemini-3-pro-image-preview",
                              size="1024x1024", image_size="2K", **vertex(google))  # fmt: skip
    assert [size_of(d.b64_json or "") for d in answer.data] == [(2048, 2048)]
    assert answer.usage is not None and answer.usage.output_tokens == 1120


def test_families_are_wired() -> None:
    assert VERTEX_AI.image_generation is not None and GEMINI.image_generation is not None
    vertex_models = {m for f in VERTEX_AI.image_generation.families for m in f.models}
    assert {IMAGEN, IMAGEN_4, VERTEX_GEMINI} <= vertex_models
    gemini_models = [m for f in GEMINI.image_generation.families for m in f.models]
    assert gemini_models == [GEMINI_IMAGE]
    for provider in (VERTEX_AI, GEMINI):
        for family in provider.image_generation.families:  # type: ignore[union-attr]
            for name, rule in family.fields.items():
                assert rule.convert is None or rule.note, (family.name, name)


async def test_partial_answers_are_never_cached(google: GoogleEmulator, tmp_path: Path) -> None:
    # The cache is on; an answer the safety filter cut short must not be served again.
    config = load_config(
        {
            "model_list": [model("imagen", IMAGEN, **vertex(google))],
            "litellm_settings": {"cache": True},
            "general_settings": {"image_store": {"path": str(tmp_path)}},
        },
        environ={},
    )
    async with Gateway(config) as gateway:
        for _ in range(2):
            cut = await aimage_generation(
                prompt="FILTER_SOME ships", model="imagen", n=3, gateway=gateway
            )
            assert len(cut.data) == 2
            assert cut._hidden_params["cache_status"] == "MISS"
        whole = [await aimage_generation(prompt="ships", model="imagen", gateway=gateway)
                 for _ in range(2)]  # fmt: skip
    assert [w._hidden_params["cache_status"] for w in whole] == ["MISS", "HIT"]
    assert len(model_calls(google)) == 3
