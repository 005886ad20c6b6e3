"""Bedrock's Converse API through the SDK and the gateway, against the Bedrock emulator
(which verifies every SigV4 signature with botocore on the raw, percent-encoded path)."""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

import prismgate
from prismgate import Gateway, completion, load_config
from prismgate.observability.redaction import Redactor
from prismgate.providers.bedrock.converse import StreamTranslator
from prismgate.types.chat import ChatUsage
from tests.emulators import OpenAIEmulator
from tests.emulators.bedrock import BedrockEmulator

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
REGION = "eu-west-1"
API_KEY = "ABSKemulatorBedrockApiKey0001"
AWS_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
    "AWS_DEFAULT_REGION", "AWS_REGION_NAME", "AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_BEDROCK_RUNTIME_ENDPOINT",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _no_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's real AWS credentials."""
    for name in AWS_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _server() -> Iterator[BedrockEmulator]:
    with BedrockEmulator(region=REGION, api_key=API_KEY) as emulator:
        yield emulator


@pytest.fixture
def bedrock(_server: BedrockEmulator) -> BedrockEmulator:
    _server.reset()
    return _server


def image(width: int, height: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


def image_part(url: str) -> dict[str, object]:
    return {"type": "image_url", "image_url": {"url": url}}


def aws_keys(emulator: BedrockEmulator, **overrides: str) -> dict[str, str]:
    return {
        "aws_access_key_id": emulator.credentials.access_key_id,
        "aws_secret_access_key": emulator.credentials.secret_access_key,
        "aws_region_name": REGION,
        **overrides,
    }


def ask(
    emulator: BedrockEmulator, *parts: dict[str, object], model: str = CLAUDE, **kwargs: Any
) -> Any:
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, *parts]},
    ]
    keys = {} if "api_key" in kwargs else aws_keys(emulator)
    return completion(model=f"bedrock/{model}", messages=messages, api_base=emulator.base_url,
                      **{**keys, **kwargs})  # fmt: skip


def test_text_and_a_jpeg_whose_prefix_lies(bedrock: BedrockEmulator) -> None:
    jpeg = base64.b64encode(image(40, 30, "JPEG")).decode()
    answer = ask(bedrock, image_part(f"data:image/png;base64,{jpeg}"), max_tokens=100,
                 temperature=0.5, top_p=0.9, stop="STOP", top_k=5)  # fmt: skip
    assert isinstance(answer, prismgate.ChatCompletion)
    assert answer.choices[0].message.content == (
        "I see 1 image(s): 40x30 image/jpeg. You said: What is this?"
    )
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.prompt_tokens > 0
    sent = bedrock.requests[-1]
    assert sent.raw_path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    assert sent.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIA")
    assert f"/{REGION}/bedrock/aws4_request" in sent.headers["authorization"]
    assert sent.json == {
        "messages": [{"role": "user", "content": [
            {"text": "What is this?"},
            {"image": {"format": "jpeg", "source": {"bytes": jpeg}}},
        ]}],
        "system": [{"text": "Answer briefly."}],
        "inferenceConfig": {"maxTokens": 100, "temperature": 0.5, "topP": 0.9,
                            "stopSequences": ["STOP"]},
        "additionalModelRequestFields": {"top_k": 5},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("model", "raw"),
    [
        ("us.anthropic.claude-3-5-sonnet-20240620-v1:0",
         "us.anthropic.claude-3-5-sonnet-20240620-v1%3A0"),
        ("arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.amazon.nova-lite-v1:0",
         "arn%3Aaws%3Abedrock%3Aeu-west-1%3A123456789012%3Ainference-profile%2F"
         "eu.amazon.nova-lite-v1%3A0"),
    ],
)  # fmt: skip
def test_inference_profiles_and_arns_are_signed_on_the_encoded_path(
    bedrock: BedrockEmulator, model: str, raw: str
) -> None:
    answer = ask(bedrock, model=model)
    assert "You said: What is this?" in (answer.choices[0].message.content or "")
    assert bedrock.requests[-1].raw_path == f"/model/{raw}/converse"


async def test_keys_from_a_config_entry_and_from_the_environment(bedrock: BedrockEmulator) -> None:
    params = {"model": f"bedrock/{CLAUDE}", "api_base": bedrock.base_url, **aws_keys(bedrock)}
    config = {"model_list": [{"model_name": "claude", "litellm_params": params}]}
    messages = [{"role": "user", "content": "hello"}]
    async with Gateway(load_config(config, environ={})) as served:
        answer = await prismgate.acompletion(model="claude", messages=messages, gateway=served)
    assert answer.choices[0].message.content == "I see 0 image(s). You said: hello"
    environ = {
        "AWS_ACCESS_KEY_ID": bedrock.credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": bedrock.credentials.secret_access_key,
        "AWS_REGION": REGION,
        "AWS_BEDROCK_RUNTIME_ENDPOINT": bedrock.base_url,
    }
    async with Gateway(load_config({}, environ=environ)) as served:
        answer = await prismgate.acompletion(
            model=f"bedrock/{CLAUDE}", messages=messages, gateway=served
        )
    assert answer.choices[0].message.content == "I see 0 image(s). You said: hello"
    assert len(bedrock.requests) == 2


def test_a_wrong_secret_is_refused_by_aws(bedrock: BedrockEmulator) -> None:
    keys = aws_keys(bedrock, aws_secret_access_key="not/the/right/secret/at/all/000000000000")
    with pytest.raises(prismgate.PermissionDeniedError) as caught:
        completion(model=f"bedrock/{CLAUDE}", messages=[{"role": "user", "content": "hi"}],
                   api_base=bedrock.base_url, **keys)  # fmt: skip
    assert caught.value.upstream_status == 403
    assert caught.value.code == "InvalidSignatureException"
    assert "The request signature we calculated does not match" in caught.value.message
    assert "not/the/right/secret" not in caught.value.message


def test_a_bedrock_api_key_is_sent_as_a_bearer_token(bedrock: BedrockEmulator) -> None:
    answer = ask(bedrock, api_key=API_KEY)
    assert answer.choices[0].message.content == "I see 0 image(s). You said: What is this?"
    headers = bedrock.requests[-1].headers
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert "x-amz-date" not in headers
    with pytest.raises(prismgate.PermissionDeniedError, match="security token"):
        ask(bedrock, api_key="ABSKwrongKey")


def test_more_than_twenty_images_are_refused_before_any_call(bedrock: BedrockEmulator) -> None:
    png = base64.b64encode(image(4, 4, "PNG")).decode()
    with pytest.raises(prismgate.BadRequestError, match="at most 20 images per message"):
        ask(bedrock, *[image_part(f"data:image/png;base64,{png}")] * 21)
    assert bedrock.requests == []


def test_an_oversize_image_is_downscaled_under_the_limit(bedrock: BedrockEmulator) -> None:
    noise = Image.frombytes("RGB", (1200, 1200), os.urandom(1200 * 1200 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    assert buffer.tell() > 3_932_160  # noise does not compress
    answer = ask(bedrock, image_part("data:image/png;base64," + base64.b64encode(
        buffer.getvalue()).decode()))  # fmt: skip
    assert "1 image(s): 900x900 image/png" in (answer.choices[0].message.content or "")
    block = bedrock.requests[-1].json["messages"][0]["content"][1]  # type: ignore[index]
    assert block["image"]["format"] == "png"
    assert len(base64.b64decode(block["image"]["source"]["bytes"])) <= 3_932_160


async def test_an_image_url_is_fetched_by_the_gateway_and_sent_as_bytes(
    bedrock: BedrockEmulator, compatible_emulator: OpenAIEmulator
) -> None:
    hosted = prismgate.image_generation(
        prompt="an otter", model="openai/sdxl", api_base=compatible_emulator.base_url + "/v1",
        size="48x32", response_format="url",
    )  # fmt: skip
    url = hosted.data[0].url
    assert url is not None and url.startswith("http://127.0.0.1:")
    params = {"model": f"bedrock/{CLAUDE}", "api_base": bedrock.base_url, **aws_keys(bedrock)}
    config = {
        "model_list": [{"model_name": "claude", "litellm_params": params}],
        "general_settings": {"media": {"allowed_hosts": [url.split("/")[2]]}},
    }
    parts = [{"type": "text", "text": "What is this?"}, image_part(url)]
    async with Gateway(load_config(config, environ={})) as served:
        answer = await prismgate.acompletion(
            model="claude", messages=[{"role": "user", "content": parts}], gateway=served
        )
    assert answer.choices[0].message.content == (
        "I see 1 image(s): 48x32 image/png. You said: What is this?"
    )
    block = bedrock.requests[-1].json["messages"][0]["content"][1]  # type: ignore[index]
    assert block["image"]["format"] == "png"
    with Image.open(io.BytesIO(base64.b64decode(block["image"]["source"]["bytes"]))) as sent:
        assert sent.size == (48, 32)


def test_streaming_is_translated(bedrock: BedrockEmulator) -> None:
    chunks = list(ask(bedrock, stream=True))
    assert bedrock.requests[-1].raw_path.endswith("%3A0/converse-stream")
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "I see 0 image(s). You said: What is this?"
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert sum(c.choices[0].finish_reason is not None for c in chunks) == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_an_exception_mid_stream_becomes_an_error(bedrock: BedrockEmulator) -> None:
    bedrock.fail_next("stream_error", message="The model fell over mid-answer.")
    stream = ask(bedrock, stream=True)
    first = next(stream)
    assert first.choices[0].delta.role == "assistant"
    with pytest.raises(prismgate.APIError, match="The model fell over mid-answer"):
        list(stream)
    bedrock.fail_next("truncate")  # the connection drops after the first text event
    with pytest.raises(prismgate.APIError, match="broke before the answer was complete"):
        list(ask(bedrock, stream=True))


def test_streamed_tool_calls_become_tool_call_deltas() -> None:
    translator = StreamTranslator(id="chatcmpl-1", created=0, model=CLAUDE)
    events: list[tuple[str, dict[str, Any]]] = [
        ("messageStart", {"role": "assistant"}),
        ("contentBlockStart", {"contentBlockIndex": 1, "start": {
            "toolUse": {"toolUseId": "t1", "name": "weather"}}}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {
            "toolUse": {"input": '{"city": '}}}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Oslo"}'}}}),
        ("messageStop", {"stopReason": "tool_use"}),
        ("metadata", {"usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}}),
    ]  # fmt: skip
    chunks = []
    for name, payload in events:
        headers = {":message-type": "event", ":event-type": name}
        chunks += translator.feed(headers, json.dumps(payload).encode(), Redactor())
    assert list(translator.finish()) == []  # the metadata event closed the answer
    deltas = [c.choices[0].delta.tool_calls for c in chunks[1:4]]
    assert deltas == [
        [{"index": 0, "id": "t1", "type": "function",
          "function": {"name": "weather", "arguments": ""}}],
        [{"index": 0, "function": {"arguments": '{"city": '}}],
        [{"index": 0, "function": {"arguments": '"Oslo"}'}}],
    ]  # fmt: skip
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage == ChatUsage(prompt_tokens=3, completion_tokens=4, total_tokens=7)


def test_throttling_keeps_its_retry_after(bedrock: BedrockEmulator) -> None:
    bedrock.fail_next("status", status=429, retry_after=7)
    with pytest.raises(prismgate.RateLimitError) as caught:
        ask(bedrock)
    assert caught.value.retry_after == 7
    assert caught.value.upstream_status == 429
    assert caught.value.code == "ThrottlingException"  # the coral suffix split off
    assert "Too many requests" in caught.value.message


def test_tools_and_tool_results_are_mapped(bedrock: BedrockEmulator) -> None:
    weather = {"type": "object", "properties": {"city": {"type": "string"}}}
    tools = [{"type": "function", "function": {"name": "weather", "description": "Weather",
                                               "parameters": weather}}]  # fmt: skip
    messages = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t1", "type": "function",
         "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "Snow."},
        {"role": "user", "content": "Thanks"},
    ]  # fmt: skip
    completion(model=f"bedrock/{CLAUDE}", messages=messages, tools=tools, tool_choice="required",
               api_base=bedrock.base_url, **aws_keys(bedrock))  # fmt: skip
    body = bedrock.requests[-1].json
    assert body == {
        "messages": [
            {"role": "user", "content": [{"text": "Weather in Oslo?"}]},
            {"role": "assistant", "content": [
                {"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Oslo"}}}]},
            {"role": "user", "content": [  # the tool result and the next turn, merged
                {"toolResult": {"toolUseId": "t1", "content": [{"text": "Snow."}]}},
                {"text": "Thanks"},
            ]},
        ],
        "toolConfig": {"tools": [{"toolSpec": {"name": "weather", "description": "Weather",
                                               "inputSchema": {"json": weather}}}],
                       "toolChoice": {"any": {}}},
    }  # fmt: skip


def test_what_bedrock_cannot_do_is_refused_before_any_call(bedrock: BedrockEmulator) -> None:
    with pytest.raises(prismgate.UnsupportedParamsError, match="presence_penalty"):
        ask(bedrock, presence_penalty=0.5)
    with pytest.raises(prismgate.UnsupportedParamsError, match="n=1"):
        ask(bedrock, n=2)
    with pytest.raises(prismgate.BadRequestError, match="aws_region_name"):
        ask(bedrock, aws_region_name="")
    with pytest.raises(prismgate.AuthenticationError, match="no AWS credentials"):
        completion(model=f"bedrock/{CLAUDE}", messages=[{"role": "user", "content": "hi"}],
                   api_base=bedrock.base_url, aws_region_name=REGION,
                   aws_profile_name="prismgate-no-such-profile")  # fmt: skip
    assert bedrock.requests == []
