"""Tests of the OpenAI-style image emulator, through a real HTTP client against the real server."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from prismgate.catalog import builtin_catalog
from prismgate.errors import BadRequestError
from prismgate.providers.image_rules import check_image_request
from prismgate.types import ImageGenerationRequest

from .images import make_image
from .openai import DEFAULT_API_KEY, OpenAIEmulator

GENERATIONS = "/v1/images/generations"
OPENAI_ERROR_KEYS = {"message", "type", "param", "code"}
FLAVORS = ("openai", "azure", "xai", "compatible")


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, OpenAIEmulator]]:
    emulators = {flavor: OpenAIEmulator(flavor).start() for flavor in FLAVORS}  # type: ignore[arg-type]
    emulators["azure-custom"] = OpenAIEmulator(
        "azure", api_key="azure-key-9876", deployments={"prod-painter": "dall-e-3"}
    ).start()
    yield emulators
    for emulator in emulators.values():
        emulator.stop()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def _fresh(servers: dict[str, OpenAIEmulator], name: str) -> OpenAIEmulator:
    emulator = servers[name]
    emulator.reset()
    return emulator


@pytest.fixture
def openai_emu(servers: dict[str, OpenAIEmulator]) -> OpenAIEmulator:
    return _fresh(servers, "openai")


@pytest.fixture
def azure_emu(servers: dict[str, OpenAIEmulator]) -> OpenAIEmulator:
    return _fresh(servers, "azure")


@pytest.fixture
def xai_emu(servers: dict[str, OpenAIEmulator]) -> OpenAIEmulator:
    return _fresh(servers, "xai")


@pytest.fixture
def compatible_emu(servers: dict[str, OpenAIEmulator]) -> OpenAIEmulator:
    return _fresh(servers, "compatible")


# ---------------------------------------------------------------------------- helpers


def post(
    http: httpx.Client,
    emu: OpenAIEmulator,
    body: Any = None,
    *,
    path: str = GENERATIONS,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    if headers is None:
        headers = {"Authorization": f"Bearer {emu.api_key}"}
    if content is not None:
        return http.post(emu.base_url + path, content=content, headers=headers, **kwargs)
    return http.post(emu.base_url + path, json=body, headers=headers, **kwargs)


def azure_post(
    http: httpx.Client,
    emu: OpenAIEmulator,
    body: Any,
    *,
    deployment: str | None = "dall-e-3",
    api_version: str | None = "2024-10-21",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    path = (
        "/openai/v1/images/generations"
        if deployment is None
        else f"/openai/deployments/{deployment}/images/generations"
    )
    params = {} if api_version is None else {"api-version": api_version}
    return http.post(
        emu.base_url + path,
        json=body,
        params=params,
        headers={"api-key": emu.api_key} if headers is None else headers,
    )


def openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) >= OPENAI_ERROR_KEYS
    error: dict[str, Any] = body["error"]
    return error


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def alpha(image: Image.Image, xy: tuple[int, int]) -> int:
    pixel = image.convert("RGBA").getpixel(xy)
    assert isinstance(pixel, tuple)
    return int(pixel[3])


def fetch(http: httpx.Client, url: str) -> Image.Image:
    response = http.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG"
    return image


# ---------------------------------------------------------------------------- images


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
@pytest.mark.parametrize("size", [(1, 1), (256, 256), (1792, 1024), (720, 1280)])
def test_make_image_has_exact_size_and_format(fmt: str, size: tuple[int, int]) -> None:
    image = Image.open(io.BytesIO(make_image(*size, fmt=fmt, seed=3)))
    assert image.size == size
    assert image.format == fmt.upper()


def test_make_image_is_deterministic_and_seeded() -> None:
    assert make_image.__wrapped__(64, 64, "png", 5) == make_image.__wrapped__(64, 64, "png", 5)
    assert make_image(64, 64, "png", 5) != make_image(64, 64, "png", 6)


def test_make_image_transparent_background() -> None:
    for fmt in ("png", "webp"):
        image = Image.open(io.BytesIO(make_image(64, 64, fmt, 1, transparent=True)))
        assert alpha(image, (0, 0)) == 0
        assert alpha(image, (20, 20)) == 255


def test_make_image_is_fast() -> None:
    make_image.__wrapped__(32, 32, "png", 0)  # warm up Pillow's plugins
    started = time.perf_counter()
    make_image.__wrapped__(1024, 1024, "png", 12345)
    assert time.perf_counter() - started < 0.05


def test_make_image_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        make_image(0, 10)
    with pytest.raises(ValueError):
        make_image(10, 10, "gif")


# ---------------------------------------------------------------------------- lifecycle


def test_lifecycle_and_context_manager(http: httpx.Client) -> None:
    emu = OpenAIEmulator()
    with pytest.raises(RuntimeError):
        _ = emu.base_url
    with emu as running:
        assert running is emu
        assert emu.base_url.startswith("http://127.0.0.1:")
        assert not emu.base_url.endswith("/")
        assert emu.api_key == DEFAULT_API_KEY
        with pytest.raises(RuntimeError):
            emu.start()
        url = emu.base_url
        assert post(http, emu, {"model": "dall-e-2", "prompt": "x"}).status_code == 200
    with pytest.raises(RuntimeError):
        _ = emu.base_url
    with pytest.raises(httpx.ConnectError):
        http.post(url + GENERATIONS, json={})
    emu.stop()  # stopping twice is harmless


def test_unknown_flavor_and_bad_fault_arguments() -> None:
    with pytest.raises(ValueError):
        OpenAIEmulator("anthropic")  # type: ignore[arg-type]
    emu = OpenAIEmulator()
    for kind, kwargs in [
        ("explode", {}),
        ("status", {}),
        ("status", {"status": 42}),
        ("delay", {}),
        ("reset", {"times": 0}),
    ]:
        with pytest.raises(ValueError):
            emu.fail_next(kind, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- openai: validation

LONG = "word " * 6401  # 32,005 characters


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"model": "dall-e-2"}, 400, "prompt", "missing_required_parameter"),
        ({"prompt": "a cat"}, 400, "model", "missing_required_parameter"),
        ({"model": "dall-e-9", "prompt": "a cat"}, 404, None, "model_not_found"),
        ({"model": 3, "prompt": "a cat"}, 400, "model", "invalid_type"),
        ({"model": "dall-e-2", "prompt": "a", "foo": 1}, 400, "foo", "unknown_parameter"),
        ({"model": "dall-e-2", "prompt": "a", "style": "vivid"}, 400, "style", "unknown_parameter"),
        (
            {"model": "gpt-image-1", "prompt": "a", "response_format": "url"},
            400,
            "response_format",
            "unknown_parameter",
        ),
        (
            {"model": "gpt-image-1", "prompt": "a", "style": "vivid"},
            400,
            "style",
            "unknown_parameter",
        ),
        (
            {"model": "dall-e-3", "prompt": "a", "output_format": "png"},
            400,
            "output_format",
            "unknown_parameter",
        ),
        ({"model": "dall-e-3", "prompt": "a", "size": "512x512"}, 400, "size", "invalid_value"),
        ({"model": "dall-e-2", "prompt": "a", "size": "1792x1024"}, 400, "size", "invalid_value"),
        (
            {"model": "gpt-image-1", "prompt": "a", "size": "1792x1024"},
            400,
            "size",
            "invalid_value",
        ),
        ({"model": "dall-e-2", "prompt": "a", "quality": "hd"}, 400, "quality", "invalid_value"),
        ({"model": "dall-e-3", "prompt": "a", "quality": "high"}, 400, "quality", "invalid_value"),
        ({"model": "gpt-image-1", "prompt": "a", "quality": "hd"}, 400, "quality", "invalid_value"),
        ({"model": "dall-e-3", "prompt": "a", "style": "noir"}, 400, "style", "invalid_value"),
        ({"model": "dall-e-3", "prompt": "a", "n": 2}, 400, "n", "invalid_value"),
        ({"model": "dall-e-2", "prompt": "a", "n": 11}, 400, "n", "invalid_value"),
        ({"model": "gpt-image-1", "prompt": "a", "n": 0}, 400, "n", "invalid_value"),
        ({"model": "dall-e-2", "prompt": "a", "n": "2"}, 400, "n", "invalid_type"),
        ({"model": "dall-e-2", "prompt": "a", "n": True}, 400, "n", "invalid_type"),
        ({"model": "dall-e-2", "prompt": 7}, 400, "prompt", "invalid_type"),
        (
            {"model": "dall-e-2", "prompt": "a", "response_format": "jpg"},
            400,
            "response_format",
            "invalid_value",
        ),
        (
            {"model": "gpt-image-1", "prompt": "a", "output_format": "gif"},
            400,
            "output_format",
            "invalid_value",
        ),
        (
            {
                "model": "gpt-image-1",
                "prompt": "a",
                "background": "transparent",
                "output_format": "jpeg",
            },
            400,
            "background",
            "invalid_value",
        ),
        (
            {"model": "gpt-image-1", "prompt": "a", "output_compression": 50},
            400,
            "output_compression",
            "invalid_value",
        ),
        (
            {
                "model": "gpt-image-1",
                "prompt": "a",
                "output_format": "jpeg",
                "output_compression": 101,
            },
            400,
            "output_compression",
            "invalid_value",
        ),
        (
            {"model": "gpt-image-1", "prompt": "a", "moderation": "high"},
            400,
            "moderation",
            "invalid_value",
        ),
        ({"model": "gpt-image-1", "prompt": "a", "stream": "yes"}, 400, "stream", "invalid_type"),
        (
            {"model": "gpt-image-1", "prompt": "a", "partial_images": 4},
            400,
            "partial_images",
            "invalid_value",
        ),
        (
            {"model": "gpt-image-2", "prompt": "a", "size": "1000x1000"},
            400,
            "size",
            "invalid_value",
        ),
        ({"model": "gpt-image-2", "prompt": "a", "size": "3200x800"}, 400, "size", "invalid_value"),
        ({"model": "dall-e-2", "prompt": "x" * 1001}, 400, "prompt", "string_above_max_length"),
        ({"model": "dall-e-3", "prompt": "x" * 4001}, 400, "prompt", "string_above_max_length"),
        ({"model": "gpt-image-1.5", "prompt": LONG}, 400, "prompt", "string_above_max_length"),
    ],
)
def test_openai_validation_errors(
    http: httpx.Client,
    openai_emu: OpenAIEmulator,
    body: dict[str, Any],
    status: int,
    param: str | None,
    code: str,
) -> None:
    error = openai_error(post(http, openai_emu, body), status)
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert error["message"]


def test_openai_error_messages_read_like_openai(
    http: httpx.Client, openai_emu: OpenAIEmulator
) -> None:
    unknown = openai_error(
        post(http, openai_emu, {"model": "dall-e-2", "prompt": "a", "foo": 1}), 400
    )
    assert unknown["message"] == "Unknown parameter: 'foo'."
    model = openai_error(post(http, openai_emu, {"model": "dall-e-9", "prompt": "a"}), 404)
    assert (
        model["message"] == "The model `dall-e-9` does not exist or you do not have access to it."
    )
    size = openai_error(
        post(http, openai_emu, {"model": "dall-e-3", "prompt": "a", "size": "1x1"}), 400
    )
    assert "'1024x1024', '1792x1024', and '1024x1792'" in size["message"]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b'"a prompt"', b""],
    ids=["broken", "array", "string", "empty"],
)
def test_openai_rejects_bodies_that_are_not_json_objects(
    http: httpx.Client, openai_emu: OpenAIEmulator, content: bytes
) -> None:
    headers = {"Authorization": f"Bearer {openai_emu.api_key}", "Content-Type": "application/json"}
    openai_error(post(http, openai_emu, content=content, headers=headers), 400)
    assert openai_emu.requests[-1].raw == content
    assert openai_emu.requests[-1].json is None


def test_prompt_at_the_length_limit_is_accepted(
    http: httpx.Client, openai_emu: OpenAIEmulator
) -> None:
    response = post(
        http, openai_emu, {"model": "dall-e-2", "prompt": "x" * 1000, "size": "256x256"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("model", "code"),
    [
        ("dall-e-2", "content_policy_violation"),
        ("dall-e-3", "content_policy_violation"),
        ("gpt-image-1", "moderation_blocked"),
        ("gpt-image-1-mini", "moderation_blocked"),
    ],
)
def test_openai_content_policy(
    http: httpx.Client, openai_emu: OpenAIEmulator, model: str, code: str
) -> None:
    response = post(http, openai_emu, {"model": model, "prompt": "Something FORBIDDEN here"})
    error = openai_error(response, 400)
    assert error["code"] == code
    assert error["message"] == "Your request was rejected as a result of our safety system."
    # Only the word counts, not a longer word containing it.
    ok = post(
        http, openai_emu, {"model": model, "prompt": "unforbiddenly nice", "size": "1024x1024"}
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("headers", "shown"),
    [
        ({}, None),
        ({"Authorization": "Bearer sk-wrong-key-abcd"}, "*************abcd"),
        ({"Authorization": f"Basic {DEFAULT_API_KEY}"}, "*********************0001"),
    ],
    ids=["missing", "wrong", "not-bearer"],
)
def test_openai_auth(
    http: httpx.Client, openai_emu: OpenAIEmulator, headers: dict[str, str], shown: str | None
) -> None:
    response = post(http, openai_emu, {"model": "dall-e-2", "prompt": "a"}, headers=headers)
    error = openai_error(response, 401)
    assert error["code"] == "invalid_api_key"
    assert "sk-wrong" not in response.text and "test-key" not in response.text
    if shown is not None:
        assert error["message"] == f"Incorrect API key provided: {shown}."


def test_unknown_route_is_404(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    error = openai_error(post(http, openai_emu, {}, path="/v1/images/nope"), 404)
    assert "/v1/images/nope" in error["message"]
    assert http.get(openai_emu.base_url + "/files/" + "0" * 32 + ".png").status_code == 404


# ---------------------------------------------------------------------------- openai: answers


def test_dall_e_2_urls_serve_real_images(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    response = post(
        http, openai_emu, {"model": "dall-e-2", "prompt": "a red fox", "n": 3, "size": "256x256"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"]
    body = response.json()
    assert set(body) == {"created", "data"}
    assert abs(body["created"] - time.time()) < 60
    assert len(body["data"]) == 3
    images = []
    for item in body["data"]:
        assert set(item) == {"url"}
        assert item["url"].startswith(openai_emu.base_url + "/files/")
        image = fetch(http, item["url"])
        assert image.size == (256, 256)
        images.append(image.convert("RGB").tobytes())
    assert len(set(images)) == 3  # every item is a different picture


def test_dall_e_3_b64_with_revised_prompt(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    body = {
        "model": "dall-e-3",
        "prompt": "a lighthouse",
        "size": "1792x1024",
        "quality": "hd",
        "style": "natural",
        "response_format": "b64_json",
        "user": "u-1",
    }
    data = post(http, openai_emu, body).json()["data"]
    assert len(data) == 1
    assert set(data[0]) == {"b64_json", "revised_prompt"}
    assert data[0]["revised_prompt"] == "A detailed rendering of: a lighthouse"
    image = decode(data[0]["b64_json"])
    assert (image.format, image.size) == ("PNG", (1792, 1024))


def test_dall_e_default_size_and_null_fields(
    http: httpx.Client, openai_emu: OpenAIEmulator
) -> None:
    body = {
        "model": "dall-e-2",
        "prompt": "a",
        "size": None,
        "n": None,
        "response_format": "b64_json",
    }
    data = post(http, openai_emu, body).json()["data"]
    assert len(data) == 1
    assert decode(data[0]["b64_json"]).size == (1024, 1024)


def test_gpt_image_defaults(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    body = post(http, openai_emu, {"model": "gpt-image-1", "prompt": "a small blue house"}).json()
    assert set(body) == {
        "created",
        "data",
        "background",
        "output_format",
        "quality",
        "size",
        "usage",
    }
    assert (body["background"], body["output_format"]) == ("opaque", "png")
    assert (body["quality"], body["size"]) == ("medium", "1024x1024")
    assert body["usage"] == {
        "input_tokens": 4,
        "output_tokens": 1056,
        "total_tokens": 1060,
        "input_tokens_details": {"text_tokens": 4, "image_tokens": 0},
        "output_tokens_details": {"image_tokens": 1056, "text_tokens": 0},
    }
    assert [set(item) for item in body["data"]] == [{"b64_json"}]
    image = decode(body["data"][0]["b64_json"])
    assert (image.format, image.size) == ("PNG", (1024, 1024))


@pytest.mark.parametrize(
    ("fmt", "pil_format", "quality", "tokens"),
    [("jpeg", "JPEG", "high", 6240), ("webp", "WEBP", "low", 408), ("png", "PNG", "auto", 1584)],
)
def test_gpt_image_formats_sizes_and_usage(
    http: httpx.Client,
    openai_emu: OpenAIEmulator,
    fmt: str,
    pil_format: str,
    quality: str,
    tokens: int,
) -> None:
    request: dict[str, Any] = {
        "model": "gpt-image-1-mini",
        "prompt": "two words",
        "n": 2,
        "size": "1536x1024",
        "quality": quality,
        "output_format": fmt,
        "background": "opaque",
        "moderation": "low",
    }
    if fmt != "png":
        request["output_compression"] = 60
    body = post(http, openai_emu, request).json()
    assert body["size"] == "1536x1024"
    assert body["output_format"] == fmt
    assert body["quality"] == ("medium" if quality == "auto" else quality)
    assert body["usage"]["output_tokens"] == 2 * tokens
    assert body["usage"]["input_tokens_details"]["text_tokens"] == 2
    assert len(body["data"]) == 2
    for item in body["data"]:
        image = decode(item["b64_json"])
        assert (image.format, image.size) == (pil_format, (1536, 1024))


def test_gpt_image_transparent_background(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    request = {"model": "gpt-image-1.5", "prompt": "a sticker", "background": "transparent"}
    body = post(http, openai_emu, request).json()
    assert body["background"] == "transparent"
    assert alpha(decode(body["data"][0]["b64_json"]), (0, 0)) == 0


def test_gpt_image_2_accepts_free_sizes(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    body = post(
        http, openai_emu, {"model": "gpt-image-2", "prompt": "a", "size": "1280x720"}
    ).json()
    assert body["size"] == "1280x720"
    assert decode(body["data"][0]["b64_json"]).size == (1280, 720)


@pytest.mark.parametrize(
    "size",
    ["512x512", "640x1024", "1024x640", "2880x2880", "3840x2160", "3840x2176", "3840x1280",
     "3840x1264", "1000x1008", "4096x1024", "1024x1024", "auto"],
)  # fmt: skip
def test_gpt_image_2_sizes_are_judged_as_the_gateway_judges_them(
    http: httpx.Client, openai_emu: OpenAIEmulator, size: str
) -> None:
    # The gateway refuses before calling exactly what the provider would refuse.
    capabilities = builtin_catalog().lookup("openai/gpt-image-2")
    assert capabilities is not None
    request = ImageGenerationRequest(prompt="a", model="gpt-image-2", size=size)
    try:
        check_image_request(request, capabilities.image, model="gpt-image-2", drop_params=False)
        gateway_accepts = True
    except BadRequestError:
        gateway_accepts = False
    answer = post(http, openai_emu, {"model": "gpt-image-2", "prompt": "a", "size": size})
    assert (answer.status_code == 200) == gateway_accepts, (size, answer.text)


def test_gpt_image_streaming(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    request = {
        "model": "gpt-image-1",
        "prompt": "a",
        "stream": True,
        "partial_images": 2,
        "size": "1024x1536",
    }
    response = post(http, openai_emu, request)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block for block in response.text.split("\n\n") if block]
    kinds = [block.splitlines()[0] for block in events]
    assert kinds == [
        "event: image_generation.partial_image",
        "event: image_generation.partial_image",
        "event: image_generation.completed",
    ]
    payloads = [json.loads(block.splitlines()[1].removeprefix("data: ")) for block in events]
    assert [p.get("partial_image_index") for p in payloads] == [0, 1, None]
    assert payloads[-1]["type"] == "image_generation.completed"
    assert payloads[-1]["usage"]["output_tokens"] == 1584
    assert decode(payloads[-1]["b64_json"]).size == (1024, 1536)


def test_requests_are_recorded(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    headers = {"Authorization": f"Bearer {openai_emu.api_key}", "OpenAI-Project": "proj_1"}
    body = {"model": "dall-e-2", "prompt": "a", "size": "256x256"}
    http.post(openai_emu.base_url + GENERATIONS + "?trace=1", json=body, headers=headers)
    [received] = openai_emu.requests
    assert (received.method, received.path, received.query) == ("POST", GENERATIONS, {"trace": "1"})
    assert received.headers["openai-project"] == "proj_1"
    assert received.headers["authorization"] == f"Bearer {openai_emu.api_key}"
    assert received.json == body
    assert json.loads(received.raw) == body


# ---------------------------------------------------------------------------- azure


def test_azure_classic_dall_e_3(http: httpx.Client, azure_emu: OpenAIEmulator) -> None:
    body = {"prompt": "a lake", "size": "1024x1792", "model": "whatever-the-sdk-sent"}
    response = azure_post(http, azure_emu, body)
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"]
    [item] = response.json()["data"]
    assert item["revised_prompt"] == "A detailed rendering of: a lake"
    assert set(item["content_filter_results"]) == {"hate", "self_harm", "sexual", "violence"}
    assert item["content_filter_results"]["violence"] == {"filtered": False, "severity": "safe"}
    prompt_filters = item["prompt_filter_results"]
    assert {"profanity", "jailbreak", "custom_blocklists"} <= set(prompt_filters)
    assert fetch(http, item["url"]).size == (1024, 1792)
    assert azure_emu.requests[0].query == {"api-version": "2024-10-21"}


def test_azure_accepts_bearer_auth(http: httpx.Client, azure_emu: OpenAIEmulator) -> None:
    headers = {"Authorization": f"Bearer {azure_emu.api_key}"}
    response = azure_post(http, azure_emu, {"prompt": "a"}, headers=headers)
    assert response.status_code == 200


def test_azure_gpt_image_deployment(http: httpx.Client, azure_emu: OpenAIEmulator) -> None:
    response = azure_post(
        http, azure_emu, {"prompt": "a", "quality": "low"}, deployment="gpt-image-1"
    )
    body = response.json()
    assert body["quality"] == "low"
    assert set(body["data"][0]) == {"b64_json"}  # no content-filter annotations
    rejected = azure_post(
        http, azure_emu, {"prompt": "a", "response_format": "url"}, deployment="gpt-image-1"
    )
    assert openai_error(rejected, 400)["param"] == "response_format"


def test_azure_v1_route(http: httpx.Client, azure_emu: OpenAIEmulator) -> None:
    ok = azure_post(
        http,
        azure_emu,
        {"model": "dall-e-2", "prompt": "a", "size": "256x256"},
        deployment=None,
        api_version=None,
    )
    assert ok.status_code == 200
    assert fetch(http, ok.json()["data"][0]["url"]).size == (256, 256)
    missing = azure_post(http, azure_emu, {"prompt": "a"}, deployment=None, api_version=None)
    assert openai_error(missing, 400)["param"] == "model"
    unknown = azure_post(http, azure_emu, {"model": "nope", "prompt": "a"}, deployment=None)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "DeploymentNotFound"


def test_azure_custom_deployments_and_key(
    http: httpx.Client, servers: dict[str, OpenAIEmulator]
) -> None:
    emu = _fresh(servers, "azure-custom")
    assert emu.api_key == "azure-key-9876"
    ok = azure_post(http, emu, {"prompt": "a", "style": "vivid"}, deployment="prod-painter")
    assert "content_filter_results" in ok.json()["data"][0]  # mapped to dall-e-3
    gone = azure_post(http, emu, {"prompt": "a"}, deployment="dall-e-3")
    assert gone.status_code == 404
    error = gone.json()["error"]
    assert error["code"] == "DeploymentNotFound"
    assert error["message"].startswith("The API deployment for this resource does not exist.")


def test_azure_errors(http: httpx.Client, azure_emu: OpenAIEmulator) -> None:
    no_version = azure_post(http, azure_emu, {"prompt": "a"}, api_version=None)
    assert no_version.status_code == 404
    assert no_version.json() == {"error": {"code": "404", "message": "Resource not found"}}

    wrong_key = azure_post(http, azure_emu, {"prompt": "a"}, headers={"api-key": "nope"})
    assert wrong_key.status_code == 401
    assert wrong_key.json()["error"]["code"] == "401"
    assert wrong_key.json()["error"]["message"].startswith(
        "Access denied due to invalid subscription key"
    )

    bad_size = azure_post(http, azure_emu, {"prompt": "a", "size": "256x256"})
    assert openai_error(bad_size, 400)["code"] == "invalid_value"

    wrong_route = http.post(
        azure_emu.base_url + GENERATIONS, json={}, headers={"api-key": azure_emu.api_key}
    )
    assert wrong_route.json() == {"error": {"code": "404", "message": "Resource not found"}}


@pytest.mark.parametrize("deployment", ["dall-e-3", "gpt-image-1"])
def test_azure_content_filter(
    http: httpx.Client, azure_emu: OpenAIEmulator, deployment: str
) -> None:
    response = azure_post(http, azure_emu, {"prompt": "a forbidden thing"}, deployment=deployment)
    error = openai_error(response, 400)
    assert error["code"] == "content_policy_violation"
    inner = error["inner_error"]
    assert inner["code"] == "ResponsibleAIPolicyViolation"
    assert inner["content_filter_results"]["violence"]["filtered"] is True


# ---------------------------------------------------------------------------- xai


def test_xai_default_url_with_revised_prompt(http: httpx.Client, xai_emu: OpenAIEmulator) -> None:
    body = post(http, xai_emu, {"model": "grok-2-image", "prompt": "a comet", "n": 2}).json()
    assert len(body["data"]) == 2
    for item in body["data"]:
        assert set(item) == {"url", "revised_prompt"}
        assert fetch(http, item["url"]).size == (1024, 1024)


@pytest.mark.parametrize(
    ("extra", "size"),
    [
        ({"aspect_ratio": "16:9"}, (1280, 720)),
        ({"aspect_ratio": "9:19.5", "quality": "high"}, (576, 1248)),
        ({"aspect_ratio": "auto", "resolution": "2k"}, (2048, 2048)),
    ],
)
def test_xai_aspect_ratio_sizes(
    http: httpx.Client, xai_emu: OpenAIEmulator, extra: dict[str, str], size: tuple[int, int]
) -> None:
    request = {"model": "grok-imagine-image", "prompt": "a", "response_format": "b64_json", **extra}
    [item] = post(http, xai_emu, request).json()["data"]
    assert item["revised_prompt"]
    assert decode(item["b64_json"]).size == size


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        (
            {"model": "grok-2-image", "prompt": "a", "size": "1024x1024"},
            400,
            "size",
            "unknown_parameter",
        ),
        (
            {"model": "grok-2-image", "prompt": "a", "style": "vivid"},
            400,
            "style",
            "unknown_parameter",
        ),
        (
            {"model": "grok-2-image", "prompt": "a", "aspect_ratio": "5:4"},
            400,
            "aspect_ratio",
            "invalid_value",
        ),
        (
            {"model": "grok-2-image", "prompt": "a", "resolution": "4k"},
            400,
            "resolution",
            "invalid_value",
        ),
        ({"model": "grok-2-image", "prompt": "a", "n": 11}, 400, "n", "invalid_value"),
        ({"model": "dall-e-3", "prompt": "a"}, 404, None, "model_not_found"),
        ({"prompt": "a"}, 400, "model", "missing_required_parameter"),
        ({"model": "grok-2-image"}, 400, "prompt", "missing_required_parameter"),
    ],
)
def test_xai_validation(
    http: httpx.Client,
    xai_emu: OpenAIEmulator,
    body: dict[str, Any],
    status: int,
    param: str | None,
    code: str,
) -> None:
    error = openai_error(post(http, xai_emu, body), status)
    assert (error["param"], error["code"]) == (param, code)
    if code == "unknown_parameter":
        assert error["message"] == f"Argument not supported: {param}"


# ---------------------------------------------------------------------------- compatible


def test_compatible_accepts_any_model_and_extra_fields(
    http: httpx.Client, compatible_emu: OpenAIEmulator
) -> None:
    request = {"model": "stable-diffusion-xl", "prompt": "a", "seed": 7, "negative_prompt": "blur"}
    [item] = post(http, compatible_emu, request).json()["data"]
    assert fetch(http, item["url"]).size == (512, 512)
    assert compatible_emu.requests[0].json == request


def test_compatible_b64_and_size(http: httpx.Client, compatible_emu: OpenAIEmulator) -> None:
    request = {"prompt": "a", "size": "300x200", "n": 2, "response_format": "b64_json"}
    data = post(http, compatible_emu, request).json()["data"]
    assert [decode(item["b64_json"]).size for item in data] == [(300, 200), (300, 200)]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "prompt"),
        ({"prompt": "a", "size": "big"}, "size"),
        ({"prompt": "a", "size": "0x512"}, "size"),
        ({"prompt": "a", "n": 0}, "n"),
        ({"prompt": "a", "n": "3"}, "n"),
    ],
)
def test_compatible_validation(
    http: httpx.Client, compatible_emu: OpenAIEmulator, body: dict[str, Any], param: str
) -> None:
    assert openai_error(post(http, compatible_emu, body), 400)["param"] == param


def test_compatible_accepts_any_key_or_none(
    http: httpx.Client, compatible_emu: OpenAIEmulator
) -> None:
    for headers in ({"Authorization": "Bearer x"}, {"Authorization": ""}):
        response = post(http, compatible_emu, {"prompt": "a"}, headers=headers)
        assert response.status_code == 200, response.text


def test_compatible_can_require_the_key(http: httpx.Client) -> None:
    with OpenAIEmulator("compatible", require_key=True) as emu:
        response = post(http, emu, {"prompt": "a"}, headers={"Authorization": "Bearer x"})
        assert openai_error(response, 401)["code"] == "invalid_api_key"


# ---------------------------------------------------------------------------- faults

DALL_E_2 = {"model": "dall-e-2", "prompt": "a", "size": "256x256"}


@pytest.mark.parametrize("flavor", ["openai", "xai", "compatible"])
def test_status_fault_uses_openai_error_body(
    http: httpx.Client, servers: dict[str, OpenAIEmulator], flavor: str
) -> None:
    emu = _fresh(servers, flavor)
    emu.fail_next("status", status=500)
    failed = post(http, emu, {"model": "grok-2-image", "prompt": "a"})
    error = openai_error(failed, 500)
    assert error["type"] == "server_error"
    assert failed.headers["x-request-id"]
    assert "retry-after" not in failed.headers
    ok = post(
        http, emu, {"model": "grok-2-image" if flavor == "xai" else "dall-e-2", "prompt": "a"}
    )
    assert ok.status_code == 200
    assert len(emu.requests) == 2


def test_status_fault_429_with_retry_after(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    openai_emu.fail_next("status", status=429, retry_after=2, times=2)
    for _ in range(2):
        response = post(http, openai_emu, DALL_E_2)
        assert openai_error(response, 429)["code"] == "rate_limit_exceeded"
        assert response.headers["retry-after"] == "2"
        assert response.headers["retry-after-ms"] == "2000"
    assert post(http, openai_emu, DALL_E_2).status_code == 200


def test_status_fault_on_azure_uses_azure_body(
    http: httpx.Client, azure_emu: OpenAIEmulator
) -> None:
    azure_emu.fail_next("status", status=429, retry_after=1)
    response = azure_post(http, azure_emu, {"prompt": "a"})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "429"
    assert set(response.json()["error"]) == {"code", "message"}
    assert response.headers["retry-after"] == "1"


def test_status_fault_applies_before_validation(
    http: httpx.Client, openai_emu: OpenAIEmulator
) -> None:
    openai_emu.fail_next("status", status=503)
    response = post(http, openai_emu, {"garbage": True}, headers={})
    assert response.status_code == 503
    assert openai_emu.requests[0].json == {"garbage": True}


def test_delay_fault(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    openai_emu.fail_next("delay", delay=0.3)
    started = time.perf_counter()
    assert post(http, openai_emu, DALL_E_2).status_code == 200
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    assert post(http, openai_emu, DALL_E_2).status_code == 200
    assert time.perf_counter() - started < 0.3


def test_delay_fault_trips_client_timeouts(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    openai_emu.fail_next("delay", delay=0.5)
    with pytest.raises(httpx.ReadTimeout):
        post(http, openai_emu, DALL_E_2, timeout=0.1)
    assert len(openai_emu.requests) == 1


def test_reset_fault(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    openai_emu.fail_next("reset")
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        post(http, openai_emu, DALL_E_2)
    assert openai_emu.requests[0].json == DALL_E_2
    assert post(http, openai_emu, DALL_E_2).status_code == 200


def test_truncate_fault(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    openai_emu.fail_next("truncate", times=2)
    for _ in range(2):
        with pytest.raises(httpx.RemoteProtocolError, match=r"incomplete|complete message body"):
            post(http, openai_emu, DALL_E_2)
    with httpx.stream(
        "POST",
        openai_emu.base_url + GENERATIONS,
        json=DALL_E_2,
        headers={"Authorization": f"Bearer {openai_emu.api_key}"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["x-request-id"]
        assert int(response.headers["content-length"]) > 0
    assert len(openai_emu.requests) == 3


def test_truncate_fault_streams_headers_then_breaks(
    http: httpx.Client, openai_emu: OpenAIEmulator
) -> None:
    openai_emu.fail_next("truncate")
    with httpx.stream(
        "POST",
        openai_emu.base_url + GENERATIONS,
        json=DALL_E_2,
        headers={"Authorization": f"Bearer {openai_emu.api_key}"},
    ) as response:
        assert response.status_code == 200
        announced = int(response.headers["content-length"])
        with pytest.raises(httpx.RemoteProtocolError):
            response.read()
    assert announced > 0


def test_faults_are_consumed_in_order(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    openai_emu.fail_next("status", status=502)
    openai_emu.fail_next("reset")
    openai_emu.fail_next("status", status=400)
    assert post(http, openai_emu, DALL_E_2).status_code == 502
    with pytest.raises(httpx.TransportError):
        post(http, openai_emu, DALL_E_2)
    assert post(http, openai_emu, DALL_E_2).status_code == 400
    assert post(http, openai_emu, DALL_E_2).status_code == 200
    assert len(openai_emu.requests) == 4


def test_reset_clears_requests_and_faults(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    post(http, openai_emu, DALL_E_2)
    openai_emu.fail_next("status", status=500, times=5)
    openai_emu.reset()
    assert openai_emu.requests == []
    assert post(http, openai_emu, DALL_E_2).status_code == 200


@pytest.mark.parametrize("flavor", ["openai", "xai", "compatible"])
def test_model_listing(http: httpx.Client, servers: dict[str, OpenAIEmulator], flavor: str) -> None:
    emu = _fresh(servers, flavor)
    headers = {"Authorization": f"Bearer {emu.api_key}"}
    listing = http.get(emu.base_url + "/v1/models", headers=headers)
    assert listing.status_code == 200
    assert listing.json()["object"] == "list" and listing.json()["data"]
    if flavor == "openai":
        assert http.get(emu.base_url + "/v1/models").status_code == 401


def test_azure_model_listing(http: httpx.Client, servers: dict[str, OpenAIEmulator]) -> None:
    emu = _fresh(servers, "azure")
    headers = {"api-key": emu.api_key}
    classic = http.get(emu.base_url + "/openai/models?api-version=2024-10-21", headers=headers)
    assert classic.status_code == 200
    assert {m["id"] for m in classic.json()["data"]} == set(emu.deployments.values())
    assert http.get(emu.base_url + "/openai/models", headers=headers).status_code == 404
    assert http.get(emu.base_url + "/openai/v1/models", headers=headers).status_code == 200


# ---------------------------------------------------------------------------- edits, variations

EDITS = "/v1/images/edits"
VARIATIONS = "/v1/images/variations"


def png_file(
    size: tuple[int, int] = (256, 256), *, transparent: bool = True, name: str = "image"
) -> tuple[str, tuple[str, bytes, str]]:
    data = make_image(*size, "png", 4, transparent=transparent)
    return name, ("in.png", data, "image/png")


def form_post(
    http: httpx.Client,
    emu: OpenAIEmulator,
    data: dict[str, str],
    files: list[tuple[str, tuple[str, bytes, str]]],
    *,
    path: str = EDITS,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    if headers is None:
        headers = {"Authorization": f"Bearer {emu.api_key}"}
    return http.post(
        emu.base_url + path, data=data, files=files, params=params or {}, headers=headers
    )


def test_dall_e_2_edit_answers_urls_of_the_size(
    http: httpx.Client, openai_emu: OpenAIEmulator
) -> None:
    data = {"model": "dall-e-2", "prompt": "a hat", "n": "2", "size": "512x512"}
    response = form_post(
        http, openai_emu, data, [png_file(transparent=False), png_file(name="mask")]
    )
    assert response.status_code == 200, response.text
    items = response.json()["data"]
    assert len(items) == 2 and all(set(item) == {"url"} for item in items)
    assert fetch(http, items[0]["url"]).size == (512, 512)
    parts = OpenAIEmulator.form(openai_emu.requests[0])  # [-1] is the GET of the url
    assert [(p.name, p.content_type) for p in parts if p.is_file] == [
        ("image", "image/png"), ("mask", "image/png"),
    ]  # fmt: skip


def test_gpt_image_edit_is_base64_with_usage(
    http: httpx.Client, openai_emu: OpenAIEmulator
) -> None:
    jpeg = ("b.jpg", make_image(300, 200, "jpeg", 1), "image/jpeg")
    data = {"model": "gpt-image-1", "prompt": "a hat", "quality": "low", "input_fidelity": "high"}
    response = form_post(http, openai_emu, data, [png_file(name="image[]"), ("image[]", jpeg)])
    assert response.status_code == 200, response.text
    body = response.json()
    # size auto follows the first input's shape (square here).
    assert decode(body["data"][0]["b64_json"]).size == (1024, 1024)
    assert body["usage"]["input_tokens_details"]["image_tokens"] == 2 * 388
    assert (body["quality"], body["output_format"]) == ("low", "png")


def test_edit_streams_image_edit_events(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    data = {"model": "gpt-image-1", "prompt": "a hat", "stream": "true", "partial_images": "1"}
    response = form_post(http, openai_emu, data, [png_file()])
    assert response.status_code == 200, response.text
    events = [line for line in response.text.splitlines() if line.startswith("event:")]
    assert events == ["event: image_edit.partial_image", "event: image_edit.completed"]


def test_variation(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    data = {"model": "dall-e-2", "n": "3", "size": "256x256", "response_format": "b64_json"}
    response = form_post(http, openai_emu, data, [png_file(transparent=False)], path=VARIATIONS)
    assert response.status_code == 200, response.text
    assert [decode(item["b64_json"]).size for item in response.json()["data"]] == [(256, 256)] * 3


def _jpeg(size: tuple[int, int] = (256, 256)) -> tuple[str, bytes, str]:
    return "x.jpg", make_image(*size, "jpeg", 1), "image/jpeg"


@pytest.mark.parametrize(
    ("path", "data", "files", "status", "param", "code", "message"),
    [
        (EDITS, {"model": "dall-e-2", "prompt": "x"}, [png_file(name="mask")], 400, "image",
         "missing_required_parameter", "Missing required parameter: 'image'."),
        (EDITS, {"model": "dall-e-2"}, [png_file()], 400, "prompt",
         "missing_required_parameter", "Missing required parameter: 'prompt'."),
        (EDITS, {"model": "dall-e-2", "prompt": "x"}, [("image", _jpeg())], 400, None, None,
         "Uploaded image must be a PNG and less than 4 MB."),
        (EDITS, {"model": "dall-e-2", "prompt": "x"}, [png_file((256, 128))], 400, "image",
         "invalid_image_dimensions", "Invalid input image - image must be square, got 256x128."),
        (EDITS, {"model": "dall-e-2", "prompt": "x"}, [png_file(transparent=False)], 400,
         "image", "invalid_image_format",
         "Invalid input image - format must be in ['RGBA', 'LA', 'L'], got P."),
        (EDITS, {"model": "dall-e-2", "prompt": "x"},
         [png_file(), png_file((128, 128), name="mask")], 400, "mask",
         "invalid_image_dimensions", "Invalid mask image - the mask must have the same "
         "dimensions as the image (256x256), got 128x128."),
        (EDITS, {"model": "dall-e-2", "prompt": "x"}, [png_file(name="image[]")] * 2, 400,
         "image", "array_above_max_length", "Invalid 'image': array too long. Expected an "
         "array with maximum length 1, but got an array with length 2 instead."),
        (EDITS, {"model": "gpt-image-1", "prompt": "x"}, [png_file(name="image[]")] * 17, 400,
         "image", "array_above_max_length", "Invalid 'image': array too long. Expected an "
         "array with maximum length 16, but got an array with length 17 instead."),
        (EDITS, {"model": "gpt-image-1", "prompt": "x"},
         [("image", ("a.bin", make_image(64, 64), "application/octet-stream"))], 400, "image",
         "unsupported_file_mimetype", "Invalid file 'image': unsupported mimetype "
         "('application/octet-stream'). Supported file formats are 'image/jpeg', 'image/png', "
         "and 'image/webp'."),
        (EDITS, {"model": "gpt-image-1-mini", "prompt": "x", "input_fidelity": "high"},
         [png_file()], 400, "input_fidelity", "unknown_parameter",
         "Unknown parameter: 'input_fidelity'."),
        (EDITS, {"model": "gpt-image-1", "prompt": "x", "n": "two"}, [png_file()], 400, "n",
         "invalid_type",
         "Invalid type for 'n': expected an integer, but got a string instead."),
        (EDITS, {"model": "dall-e-3", "prompt": "x"}, [png_file()], 400, "model",
         "invalid_value", "Invalid value: 'dall-e-3'. The model does not support image edits."),
        (EDITS, {"model": "dall-e-9", "prompt": "x"}, [png_file()], 404, None, "model_not_found",
         "The model `dall-e-9` does not exist or you do not have access to it."),
        (VARIATIONS, {"model": "gpt-image-1"}, [png_file()], 400, "model", "invalid_value",
         "Invalid value: 'gpt-image-1'. The model does not support image variations."),
        (VARIATIONS, {"model": "dall-e-2", "prompt": "x"}, [png_file()], 400, "prompt",
         "unknown_parameter", "Unknown parameter: 'prompt'."),
        (VARIATIONS, {"model": "dall-e-2"}, [png_file(), png_file(name="mask")], 400, "mask",
         "unknown_parameter", "Unknown parameter: 'mask'."),
    ],
)  # fmt: skip
def test_edit_and_variation_errors(
    http: httpx.Client,
    openai_emu: OpenAIEmulator,
    path: str,
    data: dict[str, str],
    files: list[tuple[str, tuple[str, bytes, str]]],
    status: int,
    param: str | None,
    code: str | None,
    message: str,
) -> None:
    error = openai_error(form_post(http, openai_emu, data, files, path=path), status)
    assert (error["param"], error["code"], error["message"]) == (param, code, message)


def test_edit_needs_multipart(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    response = post(http, openai_emu, {"model": "dall-e-2", "prompt": "x"}, path=EDITS)
    error = openai_error(response, 400)
    assert error["message"].startswith("Invalid Content-Type header (application/json)")


def test_edit_safety_and_auth(http: httpx.Client, openai_emu: OpenAIEmulator) -> None:
    data = {"model": "gpt-image-1", "prompt": "something forbidden"}
    assert openai_error(form_post(http, openai_emu, data, [png_file()]), 400)["code"] == (
        "moderation_blocked"
    )
    response = form_post(http, openai_emu, data, [png_file()], headers={})
    assert openai_error(response, 401)["code"] == "invalid_api_key"


def test_xai_has_no_edits(http: httpx.Client, xai_emu: OpenAIEmulator) -> None:
    data = {"model": "grok-2-image", "prompt": "x"}
    assert form_post(http, xai_emu, data, [png_file()]).status_code == 404


def test_azure_edit_routes(http: httpx.Client, azure_emu: OpenAIEmulator) -> None:
    key = {"api-key": azure_emu.api_key}
    classic = "/openai/deployments/gpt-image-1/images/edits"
    ok = form_post(http, azure_emu, {"prompt": "x"}, [png_file()], path=classic,
                   params={"api-version": "2025-04-01-preview"}, headers=key)  # fmt: skip
    assert ok.status_code == 200, ok.text
    assert decode(ok.json()["data"][0]["b64_json"]).size == (1024, 1024)
    v1 = form_post(http, azure_emu, {"model": "gpt-image-1", "prompt": "x"}, [png_file()],
                   path="/openai/v1/images/edits", headers=key)  # fmt: skip
    assert v1.status_code == 200, v1.text
    no_version = form_post(http, azure_emu, {"prompt": "x"}, [png_file()], path=classic,
                           headers=key)  # fmt: skip
    assert no_version.status_code == 404
    missing = form_post(http, azure_emu, {"prompt": "x"}, [png_file()],
                        path="/openai/deployments/nope/images/edits",
                        params={"api-version": "2025-04-01-preview"}, headers=key)  # fmt: skip
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"code": "DeploymentNotFound", "message": missing.json()["error"]["message"]}
    }
    variations = form_post(http, azure_emu, {"prompt": "x"}, [png_file()],
                           path="/openai/deployments/dall-e-2/images/variations",
                           params={"api-version": "2025-04-01-preview"}, headers=key)  # fmt: skip
    assert variations.status_code == 404


def test_compatible_edit_is_lenient(http: httpx.Client, compatible_emu: OpenAIEmulator) -> None:
    data = {"model": "anything", "prompt": "x", "size": "320x240", "strength": "0.7",
            "response_format": "b64_json"}  # fmt: skip
    response = form_post(http, compatible_emu, data, [("image", _jpeg((100, 60)))])
    assert response.status_code == 200, response.text
    assert decode(response.json()["data"][0]["b64_json"]).size == (320, 240)
