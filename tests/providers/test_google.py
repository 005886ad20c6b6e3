"""Vertex AI and the Gemini API through the SDK and the proxy, against the Google emulator."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from PIL import Image

import prismgate
from prismgate import Gateway, acompletion, completion
from prismgate.config import load_config
from prismgate.providers.google.auth import vertex_host
from tests.emulators.google import GoogleEmulator
from tests.emulators.server import Fault
from tests.proxy.conftest import RunningProxy, model

VERTEX = "vertex_ai/gemini-1.5-pro"
GEMINI = "gemini/gemini-2.0-flash"
LOCATION = "europe-west4"


class ScriptedGoogle(GoogleEmulator):
    """The emulator, plus Google's safety answers (which it never gives on its own): a
    prompt saying "forbidden" is blocked outright, one saying "filtered" is cut off."""

    async def _route(
        self, request: web.Request, raw: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        if b"forbidden" in raw:
            feedback = {"blockReason": "PROHIBITED_CONTENT", "blockReasonMessage": "no"}
            return web.json_response({"promptFeedback": feedback, "modelVersion": "gemini-x"})
        if b"filtered" in raw:
            candidate = {"finishReason": "SAFETY", "index": 0}
            return web.json_response({"candidates": [candidate], "responseId": "r-1"})
        return await super()._route(request, raw, fault)


GOOGLE_ENV = (
    "VERTEXAI_PROJECT", "GOOGLE_CLOUD_PROJECT", "VERTEXAI_LOCATION", "GOOGLE_CLOUD_LOCATION",
    "GEMINI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_BASE", "GOOGLE_APPLICATION_CREDENTIALS",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _no_google_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own Google project, keys or ADC."""
    for name in GOOGLE_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _server() -> Iterator[ScriptedGoogle]:
    with ScriptedGoogle() as emulator:
        yield emulator


@pytest.fixture
def google(_server: ScriptedGoogle) -> ScriptedGoogle:
    _server.reset()
    return _server


def jpeg_b64(width: int = 40, height: int = 30) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, format="JPEG")
    return base64.b64encode(buffer.getvalue()).decode()


def image_part(url: str, **extra: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


def messages(*parts: dict[str, Any], text: str = "What is this?") -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": text}, *parts]},
    ]


def vertex_kwargs(emu: GoogleEmulator) -> dict[str, Any]:
    return {
        "vertex_ai_project": emu.project,
        "vertex_ai_location": LOCATION,
        "vertex_credentials": json.dumps(emu.service_account_info()),
        "api_base": emu.base_url,
    }


def ask_vertex(emu: GoogleEmulator, *parts: dict[str, Any], **kwargs: Any) -> Any:
    return completion(model=VERTEX, messages=messages(*parts), **{**vertex_kwargs(emu), **kwargs})


def ask_gemini(emu: GoogleEmulator, *parts: dict[str, Any], **kwargs: Any) -> Any:
    return completion(model=GEMINI, messages=messages(*parts), api_key=emu.api_key,
                      api_base=emu.base_url, **kwargs)  # fmt: skip


def hermetic_gateway() -> Gateway:
    return Gateway(load_config({}, environ={}))


def test_seed_vision_example_sends_gs_urls_as_file_data(google: ScriptedGoogle) -> None:
    answer = ask_vertex(google, image_part("gs://bucket/cat.jpg", format="image/jpeg"))
    assert isinstance(answer, prismgate.ChatCompletion)
    assert answer.choices[0].message.content == (
        "I see 1 image(s): image/jpeg at gs://bucket/cat.jpg. You said: What is this?"
    )
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.prompt_tokens > 0
    sent = google.requests[-1]
    assert sent.path == (
        f"/v1/projects/{google.project}/locations/{LOCATION}/publishers/google/models/"
        "gemini-1.5-pro:generateContent"
    )
    assert sent.headers["authorization"].startswith("Bearer ya29.emulator-")
    # Project, location and credentials shape the URL and the header, never the body.
    assert sent.json == {
        "contents": [{"role": "user", "parts": [
            {"text": "What is this?"},
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://bucket/cat.jpg"}},
        ]}],
        "systemInstruction": {"parts": [{"text": "Answer briefly."}]},
    }  # fmt: skip
    assert google.tokens_issued == 1


def test_inline_images_arrive_with_their_true_type(google: ScriptedGoogle) -> None:
    jpeg = jpeg_b64()
    conversation: list[dict[str, Any]] = [
        {"role": "developer", "content": "Be exact."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi. Send the picture."},
        {"role": "user", "content": [
            {"type": "text", "text": "Here"},
            image_part(f"data:image/png;base64,{jpeg}", detail="high"),  # the prefix lies
        ]},
    ]  # fmt: skip
    answer = completion(
        model=VERTEX, messages=conversation, max_tokens=50, temperature=0.2, top_p=0.9,
        stop="END", n=1, **vertex_kwargs(google),
    )  # fmt: skip
    assert isinstance(answer, prismgate.ChatCompletion)
    assert answer.choices[0].message.content == "I see 1 image(s): 40x30 image/jpeg. You said: Here"
    assert google.requests[-1].json == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hello"}]},
            {"role": "model", "parts": [{"text": "Hi. Send the picture."}]},
            {"role": "user", "parts": [
                {"text": "Here"}, {"inlineData": {"mimeType": "image/jpeg", "data": jpeg}},
            ]},
        ],
        "systemInstruction": {"parts": [{"text": "Be exact."}]},
        "generationConfig": {
            "maxOutputTokens": 50, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"],
            "candidateCount": 1, "mediaResolution": "MEDIA_RESOLUTION_HIGH",
        },
    }  # fmt: skip


def test_provider_fields_join_the_body(google: ScriptedGoogle) -> None:
    safety = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}]
    ask_gemini(google, max_tokens=20, safetySettings=safety, generationConfig={"topK": 5})
    body = google.requests[-1].json
    assert body is not None and body["safetySettings"] == safety
    assert body["generationConfig"] == {"maxOutputTokens": 20, "topK": 5}  # merged, not replaced
    with pytest.raises(prismgate.BadRequestError, match="not api_key"):
        ask_vertex(google, api_key="AIza-meant-for-the-gemini-api")


async def test_tokens_are_cached_until_they_expire(google: ScriptedGoogle) -> None:
    async with hermetic_gateway() as gateway:
        for _ in range(2):
            await acompletion(model=VERTEX, messages=messages(), gateway=gateway,
                              **vertex_kwargs(google))  # fmt: skip
        assert google.tokens_issued == 1
        first = google.requests[-1].headers["authorization"]
        assert google.requests[-2].headers["authorization"] == first
        google.expire_tokens()  # Google now refuses the cached token: one new one is made
        answer = await acompletion(model=VERTEX, messages=messages(), gateway=gateway,
                                   **vertex_kwargs(google))  # fmt: skip
        assert isinstance(answer, prismgate.ChatCompletion)
        assert google.tokens_issued == 2
        assert google.requests[-1].headers["authorization"] != first
        google.expire_tokens()  # the same when the answer is streamed
        stream = await acompletion(model=VERTEX, messages=messages(), gateway=gateway,
                                   stream=True, **vertex_kwargs(google))  # fmt: skip
        assert [c async for c in stream][-1].choices[0].finish_reason == "stop"  # type: ignore[union-attr]
        assert google.tokens_issued == 3


@pytest.fixture
def short_lived() -> Iterator[GoogleEmulator]:
    with GoogleEmulator(token_lifetime=60) as emulator:  # inside google-auth's refresh margin
        yield emulator


async def test_tokens_about_to_expire_are_replaced(short_lived: GoogleEmulator) -> None:
    async with hermetic_gateway() as gateway:
        for _ in range(2):
            await acompletion(model=VERTEX, messages=messages(), gateway=gateway,
                              **vertex_kwargs(short_lived))  # fmt: skip
    assert short_lived.tokens_issued == 2


def test_settings_spellings_key_files_and_the_project(
    google: ScriptedGoogle, tmp_path: Path
) -> None:
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(google.service_account_info()))
    completion(model=VERTEX, messages=messages(), vertex_project=google.project,
               vertex_location="global", vertex_credentials=str(key_file),
               api_base=google.base_url)  # fmt: skip
    assert "/locations/global/" in google.requests[-1].path
    # No project anywhere but in the service account's key: that one is used.
    completion(model=VERTEX, messages=messages(), vertex_credentials=str(key_file),
               api_base=google.base_url)  # fmt: skip
    assert google.requests[-1].path.startswith(f"/v1/projects/{google.project}/locations/us-")
    keyless = {k: v for k, v in google.service_account_info().items() if k != "project_id"}
    with pytest.raises(prismgate.BadRequestError, match="needs a project"):
        completion(model=VERTEX, messages=messages(), vertex_credentials=json.dumps(keyless),
                   api_base=google.base_url)  # fmt: skip
    with pytest.raises(prismgate.BadRequestError, match="cannot read the file"):
        completion(model=VERTEX, messages=messages(), vertex_credentials=str(tmp_path / "no"),
                   api_base=google.base_url)  # fmt: skip
    with pytest.raises(prismgate.BadRequestError, match="not a valid Google Cloud location"):
        ask_vertex(google, vertex_ai_location="evil.example.com/x")


async def test_project_and_location_from_the_environment(google: ScriptedGoogle) -> None:
    environ = {"VERTEXAI_PROJECT": google.project, "VERTEXAI_LOCATION": "asia-northeast1"}
    async with Gateway(load_config({}, environ=environ)) as gateway:
        await acompletion(model=VERTEX, messages=messages(), api_base=google.base_url,
                          vertex_credentials=json.dumps(google.service_account_info()),
                          gateway=gateway)  # fmt: skip
    assert google.requests[-1].path.startswith(
        f"/v1/projects/{google.project}/locations/asia-northeast1/"
    )
    other = {"GOOGLE_CLOUD_PROJECT": "not-the-emulators"}  # the credentials' own is not used
    async with Gateway(load_config({}, environ=other)) as gateway:
        with pytest.raises(prismgate.PermissionDeniedError):
            await acompletion(model=VERTEX, messages=messages(), api_base=google.base_url,
                              vertex_credentials=json.dumps(google.service_account_info()),
                              gateway=gateway)  # fmt: skip
    assert google.requests[-1].path.startswith("/v1/projects/not-the-emulators/locations/us-")


def test_vertex_hosts() -> None:
    assert vertex_host("us-central1") == "https://us-central1-aiplatform.googleapis.com"
    assert vertex_host("global") == "https://aiplatform.googleapis.com"


def test_application_default_credentials(
    google: ScriptedGoogle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "adc.json"
    key_file.write_text(json.dumps(google.service_account_info()))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))  # read by google-auth
    answer = completion(model=VERTEX, messages=messages(), vertex_project=google.project,
                        api_base=google.base_url)  # fmt: skip
    assert isinstance(answer, prismgate.ChatCompletion)
    assert google.tokens_issued == 1


def test_refused_credentials_are_an_authentication_error(google: ScriptedGoogle) -> None:
    google.fail_next("status", status=400, target="token", message="Invalid JWT Signature.")
    with pytest.raises(prismgate.AuthenticationError, match="Invalid JWT Signature"):
        ask_vertex(google)
    assert google.requests[-1].path == "/token"


def test_gemini_api_key_travels_only_in_a_header(google: ScriptedGoogle) -> None:
    answer = ask_gemini(google, image_part(f"data:image/jpeg;base64,{jpeg_b64(8, 8)}"))
    assert answer.choices[0].message.content == (
        "I see 1 image(s): 8x8 image/jpeg. You said: What is this?"
    )
    sent = google.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == google.api_key
    assert "authorization" not in sent.headers
    assert google.key_in_url == []


async def test_gemini_key_from_the_environment(google: ScriptedGoogle) -> None:
    config = load_config({}, environ={"GEMINI_API_KEY": google.api_key})
    async with Gateway(config) as gateway:
        await acompletion(model=GEMINI, messages=messages(), api_base=google.base_url,
                          gateway=gateway)  # fmt: skip
    assert google.requests[-1].headers["x-goog-api-key"] == google.api_key
    assert google.key_in_url == []


def test_gs_urls_need_vertex_and_a_known_type(google: ScriptedGoogle) -> None:
    with pytest.raises(prismgate.BadRequestError, match="only with Vertex AI"):
        ask_gemini(google, image_part("gs://bucket/cat.jpg", format="image/jpeg"))
    with pytest.raises(prismgate.BadRequestError, match=r"set image_url\.format") as caught:
        ask_vertex(google, image_part("gs://bucket/objects/cat"))
    assert caught.value.status_code == 400 and caught.value.param == "image_url"
    assert google.requests == []


def test_format_names_the_type_of_a_gs_object(google: ScriptedGoogle) -> None:
    ask_vertex(google, image_part("gs://bucket/photo.png", format="image/jpeg"))
    part = google.requests[-1].json["contents"][0]["parts"][1]  # type: ignore[index]
    assert part == {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://bucket/photo.png"}}
    ask_vertex(google, image_part("gs://bucket/objects/cat", format="image/webp"))
    with pytest.raises(prismgate.BadRequestError, match="not one Gemini takes"):
        ask_vertex(google, image_part("gs://bucket/cat", format="image/gif"))


def test_streaming_is_translated(google: ScriptedGoogle) -> None:
    chunks = list(ask_vertex(google, image_part("gs://b/cat.webp"), stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "I see 1 image(s): image/webp at gs://b/cat.webp. You said: What is this?"
    assert len(chunks) > 3  # the emulator sends the answer in pieces
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert google.requests[-1].raw_path.endswith(":streamGenerateContent?alt=sse")


def test_gemini_stream_error_midway_raises(google: ScriptedGoogle) -> None:
    google.fail_next("stream_error", status=503, message="The model is overloaded.")
    stream = ask_gemini(google, stream=True)
    with pytest.raises(prismgate.APIError, match="overloaded"):
        list(stream)


def test_errors_keep_their_meaning(google: ScriptedGoogle) -> None:
    google.fail_next("status", status=429, retry_after=7)
    with pytest.raises(prismgate.RateLimitError) as caught:
        ask_vertex(google)
    assert caught.value.upstream_status == 429
    assert caught.value.code == "RESOURCE_EXHAUSTED"
    assert caught.value.retry_after == 7
    with pytest.raises(prismgate.BadRequestError, match="API key not valid") as bad:
        completion(model=GEMINI, messages=messages(), api_key="AIza-wrong-key-0000000000",
                   api_base=google.base_url)  # fmt: skip
    assert bad.value.code == "INVALID_ARGUMENT" and "AIza-wrong" not in bad.value.message
    with pytest.raises(prismgate.NotFoundError):
        completion(model="gemini/not-a-model", messages=messages(), api_key=google.api_key,
                   api_base=google.base_url)  # fmt: skip
    with pytest.raises(prismgate.UnsupportedParamsError, match="logit_bias"):
        ask_gemini(google, logit_bias={"1": 1.0})


def test_safety_blocks(google: ScriptedGoogle) -> None:
    with pytest.raises(prismgate.ContentPolicyViolationError, match="PROHIBITED_CONTENT") as caught:
        completion(model=GEMINI, messages=messages(text="something forbidden"),
                   api_key=google.api_key, api_base=google.base_url)  # fmt: skip
    assert caught.value.status_code == 400
    answer = completion(model=GEMINI, messages=messages(text="filtered"),
                        api_key=google.api_key, api_base=google.base_url)  # fmt: skip
    assert isinstance(answer, prismgate.ChatCompletion)
    assert answer.choices[0].finish_reason == "content_filter"
    assert answer.choices[0].message.content is None


def test_proxy_serves_vertex_from_config(google: ScriptedGoogle) -> None:
    config = {"model_list": [model(
        "gemini-pro-vision", VERTEX, vertex_project=google.project, vertex_location=LOCATION,
        vertex_credentials="os.environ/VERTEX_SA_JSON", api_base=google.base_url,
    )]}  # fmt: skip
    environ = {"VERTEX_SA_JSON": json.dumps(google.service_account_info())}
    proxy = RunningProxy(config, environ).start()
    try:
        client = openai.OpenAI(api_key="x", base_url=proxy.base_url + "/v1")
        asked = messages(image_part(f"data:image/jpeg;base64,{jpeg_b64(16, 16)}"))
        answer = client.chat.completions.create(model="gemini-pro-vision", messages=asked)  # type: ignore[arg-type]
        assert answer.choices[0].message.content == (
            "I see 1 image(s): 16x16 image/jpeg. You said: What is this?"
        )
        stream = client.chat.completions.create(
            model="gemini-pro-vision",
            messages=asked,  # type: ignore[arg-type]
            stream=True,
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)  # type: ignore[union-attr]
        assert text == answer.choices[0].message.content
    finally:
        proxy.stop()
    assert google.tokens_issued == 1  # one token for both calls
    for sent in google.requests[1:]:  # after the token grant: project and key stay out
        assert sent.path.startswith(f"/v1/projects/{google.project}/locations/{LOCATION}/")
        assert google.project not in sent.raw.decode()
        assert "private_key" not in sent.raw.decode()
