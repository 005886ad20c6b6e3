"""Chat completions on the OpenAI-style emulator, through httpx against the real server."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from .images import make_image
from .openai import OpenAIEmulator

CHAT = "/v1/chat/completions"
FLAVORS = ("openai", "azure", "xai", "compatible")


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, OpenAIEmulator]]:
    emulators = {flavor: OpenAIEmulator(flavor).start() for flavor in FLAVORS}  # type: ignore[arg-type]
    yield emulators
    for emulator in emulators.values():
        emulator.stop()


@pytest.fixture
def emus(servers: dict[str, OpenAIEmulator]) -> dict[str, OpenAIEmulator]:
    for emulator in servers.values():
        emulator.reset()
    return servers


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def data_url(fmt: str, declared: str | None = None, width: int = 12, height: int = 8) -> str:
    if fmt == "gif":  # make_image writes only what the image APIs return
        buffer = io.BytesIO()
        Image.new("P", (width, height)).save(buffer, format="GIF")
        raw = buffer.getvalue()
    else:
        raw = make_image(width, height, fmt, 1)
    data = base64.b64encode(raw).decode()
    return f"data:{declared or 'image/' + fmt};base64,{data}"


def body(*parts: dict[str, Any], model: str = "gpt-4o", **extra: Any) -> dict[str, Any]:
    content = [{"type": "text", "text": "what is this?"}, *parts]
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def image(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


def chat(http: httpx.Client, emu: OpenAIEmulator, payload: Any, **kwargs: Any) -> httpx.Response:
    if emu.flavor == "azure":
        return http.post(
            emu.base_url + "/openai/deployments/my-gpt/chat/completions",
            json=payload,
            params={"api-version": "2024-10-21"},
            headers={"api-key": emu.api_key},
            **kwargs,
        )
    headers = {"Authorization": f"Bearer {emu.api_key}"}
    return http.post(emu.base_url + CHAT, json=payload, headers=headers, **kwargs)


def error_of(answer: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    return error


@pytest.mark.parametrize("flavor", FLAVORS)
def test_answer_describes_the_images(
    http: httpx.Client, emus: dict[str, OpenAIEmulator], flavor: str
) -> None:
    emu = emus[flavor]
    payload = body(image(data_url("png"), detail="low"), image("https://example.com/a.jpg"))
    answer = chat(http, emu, payload)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["object"] == "chat.completion"
    assert result["id"].startswith("chatcmpl-")
    assert result["model"] == ("my-gpt" if flavor == "azure" else "gpt-4o")
    assert result["choices"][0]["finish_reason"] == "stop"
    assert result["choices"][0]["message"]["role"] == "assistant"
    assert result["choices"][0]["message"]["content"] == (
        "I see 2 image(s): 12x8 image/png; url at https://example.com/a.jpg. "
        "You said: what is this?"
    )
    usage = result["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] == 3 + 85 + 255
    assert [seen.uri for seen in emu.images] == [None, "https://example.com/a.jpg"]


def test_azure_routes_and_auth(http: httpx.Client, emus: dict[str, OpenAIEmulator]) -> None:
    azure = emus["azure"]
    v1 = http.post(
        azure.base_url + "/openai/v1/chat/completions",
        json=body(model="my-deployment"),
        headers={"Authorization": f"Bearer {azure.api_key}"},
    )
    assert v1.status_code == 200 and v1.json()["model"] == "my-deployment"
    classic = azure.base_url + "/openai/deployments/d/chat/completions"
    no_version = http.post(classic, json=body(), headers={"api-key": azure.api_key})
    assert no_version.status_code == 404
    wrong_key = http.post(
        classic, json=body(), params={"api-version": "v"}, headers={"api-key": "nope"}
    )
    assert wrong_key.status_code == 401 and wrong_key.json()["error"]["code"] == "401"
    no_model = http.post(
        azure.base_url + "/openai/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers={"api-key": azure.api_key},
    )
    assert error_of(no_model)["code"] == "missing_required_parameter"


def test_bearer_key_is_checked(http: httpx.Client, emus: dict[str, OpenAIEmulator]) -> None:
    emu = emus["openai"]
    answer = http.post(emu.base_url + CHAT, json=body(), headers={"Authorization": "Bearer x"})
    assert error_of(answer, 401)["code"] == "invalid_api_key"
    compatible = emus["compatible"]
    assert http.post(compatible.base_url + CHAT, json=body()).status_code == 200


@pytest.mark.parametrize("flavor", ["openai", "azure"])
def test_unknown_image_url_keys_are_refused(
    http: httpx.Client, emus: dict[str, OpenAIEmulator], flavor: str
) -> None:
    payload = body(image(data_url("png"), format="image/png"))
    error = error_of(chat(http, emus[flavor], payload))
    assert error["message"] == "Unknown parameter: 'messages[0].content[1].image_url.format'."
    assert error["code"] == "unknown_parameter"
    assert emus[flavor].images == []


def test_lenient_flavors_ignore_unknown_keys(
    http: httpx.Client, emus: dict[str, OpenAIEmulator]
) -> None:
    payload = body(image(data_url("png"), format="image/png"), top_k=3)
    assert chat(http, emus["compatible"], payload).status_code == 200
    assert chat(http, emus["xai"], body(image(data_url("png"), format="x"))).status_code == 200
    error = error_of(chat(http, emus["openai"], body(top_k=3)))
    assert error["param"] == "top_k" and "Unrecognized request argument" in error["message"]


@pytest.mark.parametrize(
    ("flavor", "url", "accepted"),
    [
        ("openai", data_url("jpeg", "image/png"), False),  # the prefix lies
        ("compatible", data_url("jpeg", "image/png"), True),
        ("openai", "data:image/png;base64,not base64!", False),
        ("openai", "data:image/bmp;base64," + base64.b64encode(b"BM" + bytes(40)).decode(), False),
        ("openai", data_url("webp"), True),
        ("openai", data_url("gif"), True),
        ("xai", data_url("webp"), False),
        ("xai", data_url("gif"), False),
        ("xai", data_url("jpeg"), True),
        ("openai", "gs://bucket/cat.png", False),
        ("openai", "http://example.com/cat.png", True),
    ],
)
def test_image_data_rules(
    http: httpx.Client, emus: dict[str, OpenAIEmulator], flavor: str, url: str, accepted: bool
) -> None:
    answer = chat(http, emus[flavor], body(image(url)))
    if accepted:
        assert answer.status_code == 200, answer.text
    else:
        assert error_of(answer)["code"] in ("invalid_image_format", "invalid_image_url")


@pytest.mark.parametrize(
    ("payload", "param", "code"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model", "missing_required_parameter"),
        ({"model": "gpt-4o"}, "messages", "missing_required_parameter"),
        ({"model": "gpt-4o", "messages": [{"role": "robot", "content": "hi"}]},
         "messages[0].role", "invalid_value"),
        ({"model": "gpt-4o", "messages": [{"role": "system", "content": [image("https://a.b/c")]}]},
         "messages[0].content[0]", "invalid_value"),
        (body(image("https://a.b/c", detail="ultra")),
         "messages[0].content[1].image_url.detail", "invalid_value"),
        (body({"type": "image_url", "image_url": {"detail": "low"}}),
         "messages[0].content[1].image_url.url", "missing_required_parameter"),
        (body(stream_options={"include_usage": True}), "stream_options", "invalid_value"),
        (body(image("https://a.b/c"), model="gpt-3.5-turbo"), "messages", "invalid_value"),
    ],
)  # fmt: skip
def test_body_rules(
    http: httpx.Client,
    emus: dict[str, OpenAIEmulator],
    payload: dict[str, Any],
    param: str,
    code: str,
) -> None:
    error = error_of(chat(http, emus["openai"], payload))
    assert (error["param"], error["code"]) == (param, code)


def events(answer: httpx.Response) -> list[Any]:
    lines = [line for line in answer.text.split("\n\n") if line]
    assert all(line.startswith("data: ") for line in lines), answer.text
    return [line.removeprefix("data: ") for line in lines]


@pytest.mark.parametrize("include_usage", [False, True])
def test_streaming(
    http: httpx.Client, emus: dict[str, OpenAIEmulator], include_usage: bool
) -> None:
    options: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    answer = chat(http, emus["openai"], body(image(data_url("png")), stream=True, **options))
    assert answer.headers["content-type"].startswith("text/event-stream")
    raw = events(answer)
    assert raw[-1] == "[DONE]"
    chunks = [json.loads(item) for item in raw[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    with_choices = [chunk for chunk in chunks if chunk["choices"]]
    assert len(with_choices) >= 4
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in with_choices)
    assert text == "I see 1 image(s): 12x8 image/png. You said: what is this?"
    assert with_choices[-1]["choices"][0]["finish_reason"] == "stop"
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 11
        assert all(chunk["usage"] is None for chunk in chunks[:-1])
    else:
        assert all("usage" not in chunk for chunk in chunks)


def test_stream_error_and_truncate_faults(
    http: httpx.Client, emus: dict[str, OpenAIEmulator]
) -> None:
    emu = emus["openai"]
    emu.fail_next("stream_error", message="boom")
    raw = events(chat(http, emu, body(stream=True)))
    assert json.loads(raw[-1])["error"]["message"] == "boom"
    assert "[DONE]" not in raw and len(raw) == 3
    emu.fail_next("stream_error")
    assert error_of(chat(http, emu, body()), 500)["type"] == "server_error"
    emu.fail_next("truncate")
    with pytest.raises(httpx.RemoteProtocolError):
        chat(http, emu, body(stream=True))
    emu.fail_next("status", status=429, retry_after=2)
    limited = chat(http, emu, body())
    assert error_of(limited, 429)["code"] == "rate_limit_exceeded"
    assert limited.headers["retry-after"] == "2"


def test_max_tokens_cuts_the_answer(http: httpx.Client, emus: dict[str, OpenAIEmulator]) -> None:
    answer = chat(http, emus["openai"], body(max_completion_tokens=2)).json()
    assert answer["choices"][0]["message"]["content"] == "I see"
    assert answer["choices"][0]["finish_reason"] == "length"
