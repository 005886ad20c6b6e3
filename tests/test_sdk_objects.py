"""SDK answers and errors read like the openai client's objects (and LiteLLM's).

The comparison tests give the openai client and prismgate's SDK the same bytes from a
loopback server that answers as OpenAI does, and compare what each returns field by field.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import msgspec
import openai
import pytest

import prismgate
from prismgate import acompletion, aimage_generation, errors
from prismgate.types import ErrorBody, ImageObject, ImageResponse, ImageUsage
from prismgate.types.chat import ChatChoice, ChatCompletion, ResponseMessage
from tests.serving import RunningProxy, model

# A real 16x16 PNG, as OpenAI's b64_json carries one.
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQAQMAAAAlPW0iAAAABlBMVEX/jAAePKCGKBv9AAAAJklEQVR42mNg"
    "gAHmA0wsCkwcAkwCHEwMDFD04QfTjw9Mfx7AVQEAdUIG1racT0IAAAAASUVORK5CYII="
)

# Answers as OpenAI sends them (field order and nulls included).
DALL_E_3_ANSWER = {
    "created": 1713833628,
    "data": [
        {
            "revised_prompt": "A cute baby sea otter floating on its back in calm water",
            "url": "https://images.example/img-1.png?st=2024-04-23&sig=abc",
        }
    ],
}
GPT_IMAGE_ANSWER = {
    "created": 1713833628,
    "background": "opaque",
    "data": [{"b64_json": PNG_B64}],
    "output_format": "png",
    "quality": "low",
    "size": "1024x1024",
    "usage": {
        "input_tokens": 50,
        "input_tokens_details": {"image_tokens": 0, "text_tokens": 50},
        "output_tokens": 272,
        "output_tokens_details": {"image_tokens": 272, "text_tokens": 0},
        "total_tokens": 322,
    },
}
CHAT_ANSWER = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "An orange square with a blue circle in it.",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 19,
        "completion_tokens": 10,
        "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_fc9f1d7035",
}
SIZE_REFUSED = {
    "error": {
        "message": "Invalid value for 'size': '512x512'.",
        "type": "invalid_request_error",
        "param": "size",
        "code": "invalid_value",
    }
}


class Upstream:
    """A loopback server answering each path with fixed bytes, as OpenAI would."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, bytes]] = {}
        answers = self.answers

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                status, body = answers[self.path.removeprefix("/v1")]
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, path: str, body: dict[str, Any], status: int = 200) -> None:
        self.answers[path] = (status, json.dumps(body).encode())

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


def openai_client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test-0001", base_url=base_url, max_retries=0)


def assert_same_fields(ours: Any, theirs: Any, path: str = "") -> None:
    """`ours` holds every OpenAI field of `theirs` with the same value. A field the
    openai client knows but the answer did not carry (None in its dump) may be absent
    from ours; ours may add `_hidden_params` and nothing else."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), path
        extra = {k for k in set(ours) - set(theirs) if ours[k] is not None}
        assert extra <= {"_hidden_params"}, (path, extra)
        for key, value in theirs.items():
            if key in ours:
                assert_same_fields(ours[key], value, f"{path}.{key}")
            else:
                assert _empty(value), (f"{path}.{key}", value)
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), path
        for index, (mine, their) in enumerate(zip(ours, theirs, strict=True)):
            assert_same_fields(mine, their, f"{path}[{index}]")
    else:
        assert ours == theirs, (path, ours, theirs)


def _empty(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_empty(v) for v in value.values())
    return value is None


# -- the same wire answer, read by the openai client and by prismgate --------------------


@pytest.mark.parametrize(
    ("model_name", "answer"),
    [("dall-e-3", DALL_E_3_ANSWER), ("gpt-image-1", GPT_IMAGE_ANSWER)],
)
async def test_images_match_the_openai_client_field_by_field(
    upstream: Upstream, model_name: str, answer: dict[str, Any]
) -> None:
    upstream.answer("/images/generations", answer)
    theirs = openai_client(upstream.base_url).images.generate(
        model=model_name, prompt="A cute baby sea otter"
    )
    ours = await aimage_generation(
        prompt="A cute baby sea otter",
        model=f"openai/{model_name}",
        api_base=upstream.base_url,
        api_key="sk-test-0001",
    )
    assert_same_fields(ours.model_dump(), theirs.model_dump())
    assert_same_fields(json.loads(ours.model_dump_json()), json.loads(theirs.model_dump_json()))
    assert_same_fields(ours.to_dict(), theirs.to_dict())
    assert ours.to_dict() == answer == theirs.to_dict()  # the wire form, as it came
    # The same reads work on both.
    assert ours.created == theirs.created
    assert ours.data[0].url == theirs.data[0].url
    assert ours.data[0].b64_json == theirs.data[0].b64_json
    assert ours.data[0].revised_prompt == theirs.data[0].revised_prompt
    assert ours.size == theirs.size
    if theirs.usage is not None:
        assert ours.usage is not None
        assert ours.usage.total_tokens == theirs.usage.total_tokens
    # And prismgate's additions: item access and how the call was served.
    assert ours["data"][0]["url"] == theirs.data[0].url
    assert ours["_hidden_params"]["provider"] == "openai"


async def test_chat_completion_matches_the_openai_client_field_by_field(
    upstream: Upstream,
) -> None:
    upstream.answer("/chat/completions", CHAT_ANSWER)
    messages: list[Any] = [{"role": "user", "content": "What is in this image?"}]
    theirs = openai_client(upstream.base_url).chat.completions.create(
        model="gpt-4o", messages=messages
    )
    ours = await acompletion(
        model="openai/gpt-4o",
        messages=messages,
        api_base=upstream.base_url,
        api_key="sk-test-0001",
    )
    assert isinstance(ours, ChatCompletion)
    assert_same_fields(ours.model_dump(), theirs.model_dump())
    assert_same_fields(ours.to_dict(), theirs.to_dict())
    assert_same_fields(json.loads(ours.to_json()), json.loads(theirs.to_json()))
    assert ours.choices[0].message.content == theirs.choices[0].message.content
    assert ours.choices[0].message.annotations == theirs.choices[0].message.annotations == []
    assert ours.service_tier == theirs.service_tier == "default"
    assert ours.usage is not None and theirs.usage is not None
    assert ours.usage.total_tokens == theirs.usage.total_tokens
    assert (
        ours["choices"][0]["message"]["content"] == CHAT_ANSWER["choices"][0]["message"]["content"]
    )


async def test_upstream_errors_read_like_the_openai_clients(upstream: Upstream) -> None:
    upstream.answer("/images/generations", SIZE_REFUSED, status=400)
    with pytest.raises(openai.BadRequestError) as theirs:
        openai_client(upstream.base_url).images.generate(model="dall-e-2", prompt="otter")
    with pytest.raises(prismgate.BadRequestError) as ours:
        await aimage_generation(
            prompt="otter", model="openai/dall-e-2", api_base=upstream.base_url, api_key="sk-t"
        )
    mine, their = ours.value, theirs.value
    assert mine.status_code == their.status_code == 400
    assert (mine.type, mine.code, mine.param) == (their.type, their.code, their.param)
    assert isinstance(mine.body, dict) and isinstance(their.body, dict)
    assert set(mine.body) == set(their.body)
    # prismgate's message names whose refusal it is, and keeps the provider's words.
    assert mine.body["message"] == f"openai returned 400: {their.body['message']}"
    assert mine.response is not None
    assert mine.response.status_code == their.response.status_code
    assert mine.response.json() == {"error": mine.body}


def test_gateway_errors_match_the_proxy_answer_read_by_openai(
    serve: Any,
) -> None:
    raw = {"model_list": [model("dall-e-3", "mock/dall-e-3")]}
    proxy: RunningProxy = serve(raw)
    with pytest.raises(openai.BadRequestError) as theirs:
        openai_client(proxy.base_url + "/v1").images.generate(
            model="dall-e-3", prompt="otter", size="512x512"
        )

    async def sdk() -> None:
        async with prismgate.Gateway(prismgate.load_config(raw, environ={})) as gateway:
            await aimage_generation(
                prompt="otter", model="dall-e-3", size="512x512", gateway=gateway
            )

    with pytest.raises(prismgate.BadRequestError) as ours:
        asyncio.run(sdk())
    mine, their = ours.value, theirs.value
    assert mine.body == their.body  # the same dict, key for key
    assert (mine.status_code, mine.type, mine.code, mine.param) == (
        their.status_code,
        their.type,
        their.code,
        their.param,
    )
    assert their.message == f"Error code: 400 - {mine.message}"
    assert mine.response is not None
    assert mine.response.status_code == their.response.status_code
    assert mine.response.json() == their.response.json()
    assert mine.response.headers["content-type"] == their.response.headers["content-type"]
    assert isinstance(mine.request, httpx.Request)


# -- answers: access, dumps, equality, repr ------------------------------------------------


def image_answer() -> ImageResponse:
    return ImageResponse(
        created=1713833628,
        data=[ImageObject(b64_json=PNG_B64 * 5000, revised_prompt="an otter")],
        usage=ImageUsage(input_tokens=5, output_tokens=7, total_tokens=12),
        size="1024x1024",
    )


def test_attribute_and_item_access() -> None:
    answer = image_answer()
    assert answer["data"][0]["revised_prompt"] == answer.data[0].revised_prompt == "an otter"
    assert answer["usage"]["total_tokens"] == 12
    assert answer.get("quality") is None and answer.get("nope", 3) == 3
    assert "data" in answer and "nope" not in answer
    with pytest.raises(KeyError):
        answer["nope"]
    answer["size"] = "1792x1024"
    assert answer.size == "1792x1024"
    with pytest.raises(KeyError):
        answer["nope"] = 1
    assert dict(answer)["created"] == 1713833628  # pydantic's (field, value) iteration
    assert bool(ImageResponse(created=0))


def test_hidden_params_are_readable_but_never_dumped() -> None:
    answer = image_answer()
    assert "_hidden_params" not in answer and answer["_hidden_params"] is None
    answer._hidden_params = prismgate.CallMeta(provider="mock", model="m", model_group="g")
    assert "_hidden_params" in answer
    assert answer["_hidden_params"]["provider"] == "mock"
    assert answer.get("_hidden_params").response_cost is None
    for dumped in (answer.model_dump(), answer.to_dict(), answer.json()):
        assert "_hidden_params" not in dumped


def test_dumps() -> None:
    answer = image_answer()
    full = answer.model_dump()
    assert full["data"][0] == {
        "b64_json": PNG_B64 * 5000,
        "url": None,
        "revised_prompt": "an otter",
    }
    assert full["quality"] is None and full["usage"]["input_tokens_details"] is None
    assert answer.json() == full  # LiteLLM's json() is a dict
    assert answer.model_dump(exclude_none=True)["data"][0].keys() == {"b64_json", "revised_prompt"}
    assert answer.model_dump(include={"created"}) == {"created": 1713833628}
    assert "data" not in answer.model_dump(exclude={"data"})
    assert json.loads(answer.model_dump_json()) == full
    assert answer.model_dump_json(indent=2).startswith('{\n  "created"')
    # The wire form: what the proxy sends.
    assert answer.to_dict() == msgspec.to_builtins(answer)
    assert answer.to_dict(exclude_unset=False) == full
    assert json.loads(answer.to_json()) == answer.to_dict()
    assert answer.model_dump(exclude_unset=True) == answer.to_dict()
    for dumped in (full, answer.to_dict(), answer.json()):
        json.dumps(dumped)
    with pytest.raises(ValueError, match="mode"):
        answer.model_dump(mode="xml")  # type: ignore[arg-type]


def test_chat_dump_has_every_openai_field() -> None:
    answer = ChatCompletion(
        id="c1",
        created=1,
        model="m",
        choices=[ChatChoice(index=0, message=ResponseMessage(content="hi"))],
    )
    dumped = answer.model_dump()
    assert dumped["object"] == "chat.completion"
    assert dumped["choices"][0]["message"] == {
        "role": "assistant",
        "content": "hi",
        "tool_calls": None,
        "refusal": None,
        "annotations": None,
    }
    assert answer["choices"][0]["message"]["content"] == "hi"
    assert msgspec.json.decode(msgspec.json.encode(answer), type=ChatCompletion) == answer


def test_equality() -> None:
    assert image_answer() == image_answer()
    other = image_answer()
    other.data[0].revised_prompt = "a seal"
    assert image_answer() != other
    # How it was served is not part of the answer.
    served = image_answer()
    served._hidden_params = prismgate.CallMeta(provider="mock", model="m", model_group="g")
    assert served == image_answer()


def test_repr_is_short_and_readable() -> None:
    answer = image_answer()
    text = repr(answer)
    assert len(text) < 400, text
    assert text.startswith("ImageResponse(created=1713833628, data=[ImageObject(b64_json='iVBOR")
    assert f"({len(PNG_B64) * 5000:,} chars)" in text
    assert "revised_prompt='an otter'" in text and "quality" not in text  # None is left out
    assert str(answer) == text
    short = ImageObject(url="https://images.example/1.png")
    assert repr(short) == "ImageObject(url='https://images.example/1.png')"


def test_rich_shows_the_same_short_values() -> None:
    from rich.pretty import pretty_repr

    assert len(pretty_repr(image_answer())) < 600


# -- errors: openai's attributes -------------------------------------------------------------


def test_error_attributes_as_openai_has_them() -> None:
    error = errors.RateLimitError("slow down", param="n", provider="openai", retry_after=2.5)
    assert error.status_code == 429
    assert error.body == {
        "message": "slow down",
        "type": "rate_limit_error",
        "param": "n",
        "code": "rate_limit_exceeded",
    }
    assert json.loads(json.dumps(error.body)) == error.body
    assert (error.message, error.type, error.code, error.param) == (
        "slow down",
        "rate_limit_error",
        "rate_limit_exceeded",
        "n",
    )
    response = error.response
    assert isinstance(response, httpx.Response)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": error.body}
    assert isinstance(error.request, httpx.Request) and response.request.method == "POST"


def test_the_wire_body_wraps_the_body() -> None:
    error = errors.BadRequestError("bad", param="size", code="invalid_value")
    wire = error.wire_body()
    assert isinstance(wire, ErrorBody)
    assert msgspec.to_builtins(wire) == {"error": error.body}
    assert error.body == {
        "message": "bad",
        "type": "invalid_request_error",
        "param": "size",
        "code": "invalid_value",
    }


def test_limit_errors_name_the_limit_in_both_forms() -> None:
    error = errors.LimitReachedError("too many images", limit_type="images")
    assert error.body["type"] == "images" and error.wire_body().error.type == "images"
    assert error.body["param"] is None


def test_not_retryable_errors_say_so_in_their_response() -> None:
    error = errors.BudgetExceededError("over budget")
    assert error.response is not None
    assert error.response.headers["x-should-retry"] == "false"
    assert error.response.status_code == 429


def test_upstream_5xx_keeps_its_status_in_the_response() -> None:
    error = errors.from_upstream(502, "bad gateway", provider="openai")
    assert error.status_code == 502
    assert error.response is not None and error.response.status_code == 502
