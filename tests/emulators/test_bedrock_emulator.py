"""Tests of the Bedrock runtime emulator: botocore signs and parses, the server verifies."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import botocore.auth
import botocore.session
import httpx
import pytest
import yarl
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError

from .aws import event_frame, exception_frame, frame
from .bedrock import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, BedrockEmulator
from .images import make_image

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
NOVA = "amazon.nova-lite-v1:0"
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)


@pytest.fixture(scope="module")
def server() -> Iterator[BedrockEmulator]:
    with BedrockEmulator(api_key="ABSKemulatorBedrockApiKey0001") as emulator:
        yield emulator


@pytest.fixture
def emu(server: BedrockEmulator) -> BedrockEmulator:
    server.reset()
    return server


@pytest.fixture(scope="module")
def client(server: BedrockEmulator) -> Any:
    return botocore.session.get_session().create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=server.base_url,
        aws_access_key_id=DEFAULT_ACCESS_KEY_ID,
        aws_secret_access_key=DEFAULT_SECRET_ACCESS_KEY,
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def image(data: bytes, fmt: str = "png") -> dict[str, Any]:
    return {"image": {"format": fmt, "source": {"bytes": base64.b64encode(data).decode()}}}


def converse_body(*content: Any, **extra: Any) -> dict[str, Any]:
    blocks = list(content) or [{"text": "hello"}]
    return {"messages": [{"role": "user", "content": blocks}], **extra}


def signed_post(
    http: httpx.Client,
    emu: BedrockEmulator,
    payload: Any,
    *,
    model: str = "anthropic.claude-3-5-sonnet-20240620-v1%3A0",
    operation: str = "converse",
    secret: str = DEFAULT_SECRET_ACCESS_KEY,
    key_id: str = DEFAULT_ACCESS_KEY_ID,
    token: str | None = None,
    region: str = "us-east-1",
    service: str = "bedrock",
    send_path: str | None = None,
    send_body: bytes | None = None,
) -> httpx.Response:
    """Sign with botocore's SigV4Auth, then send with httpx (optionally tampered with)."""
    url = f"{emu.base_url}/model/{model}/{operation}"
    data = json.dumps(payload).encode()
    request = AWSRequest("POST", url, data=data, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(key_id, secret, token), service, region).add_auth(request)
    headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
    target = url if send_path is None else emu.base_url + send_path
    return http.post(target, content=data if send_body is None else send_body, headers=headers)


def aws_error(response: httpx.Response, status: int, error_type: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["x-amzn-errortype"].split(":")[0] == error_type
    assert set(response.json()) >= {"message"}
    message: str = response.json()["message"]
    return message


def decode_frames(raw: bytes) -> list[tuple[dict[str, Any], Any]]:
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    return [(dict(message.headers), json.loads(message.payload)) for message in buffer]


# ---------------------------------------------------------------------------- botocore client


def test_converse_with_botocore(client: Any, emu: BedrockEmulator) -> None:
    png, jpeg = make_image(64, 64, "png"), make_image(10, 10, "jpeg")
    answer = client.converse(
        modelId=CLAUDE,
        messages=[
            {
                "role": "user",
                "content": [
                    {"image": {"format": "png", "source": {"bytes": png}}},
                    {"image": {"format": "jpeg", "source": {"bytes": jpeg}}},
                    {"text": "What is in these?"},
                ],
            }
        ],
        system=[{"text": "Be brief."}],
        inferenceConfig={"maxTokens": 100, "temperature": 0.2},
    )
    assert answer["output"]["message"] == {
        "role": "assistant",
        "content": [
            {
                "text": "I see 2 image(s): 64x64 image/png; 10x10 image/jpeg. "
                "You said: What is in these?"
            }
        ],
    }
    assert answer["stopReason"] == "end_turn"
    assert answer["usage"] == {"inputTokens": 4 + 2 + 7, "outputTokens": 14, "totalTokens": 27}
    assert answer["metrics"]["latencyMs"] >= 1
    (received,) = emu.requests
    assert received.raw_path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    assert received.path == f"/model/{CLAUDE}/converse"
    assert received.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
    assert "/us-east-1/bedrock/aws4_request" in received.headers["authorization"]
    assert [seen.size for seen in emu.images] == [len(png), len(jpeg)]


def test_converse_stream_with_botocore(client: Any, emu: BedrockEmulator) -> None:
    messages = [{"role": "user", "content": [{"text": "stream please"}]}]
    whole = client.converse(modelId=CLAUDE, messages=messages)
    events = list(client.converse_stream(modelId=CLAUDE, messages=messages)["stream"])
    kinds = [next(iter(event)) for event in events]
    assert kinds[0] == "messageStart" and kinds[-3:] == [
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    text = "".join(
        e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e
    )
    assert text == whole["output"]["message"]["content"][0]["text"]
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    assert events[-1]["metadata"]["usage"] == whole["usage"]


def test_botocore_parses_errors_and_stream_exceptions(client: Any, emu: BedrockEmulator) -> None:
    messages = [{"role": "user", "content": [{"text": "x"}]}]
    with pytest.raises(ClientError) as raised:
        client.converse(
            modelId=CLAUDE, messages=[{"role": "assistant", "content": [{"text": "x"}]}]
        )
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert "must start with a user message" in raised.value.response["Error"]["Message"]
    emu.fail_next("status", status=429)
    with pytest.raises(client.exceptions.ThrottlingException):
        client.converse(modelId=CLAUDE, messages=messages)
    emu.fail_next("stream_error")
    stream = client.converse_stream(modelId=CLAUDE, messages=messages)["stream"]
    with pytest.raises(EventStreamError) as stream_error:
        list(stream)
    assert stream_error.value.response["Error"]["Code"] == "modelStreamErrorException"
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.converse(modelId="anthropic.claude-9-v1:0", messages=messages)


def test_invoke_model_with_botocore(client: Any, emu: BedrockEmulator) -> None:
    png = make_image(40, 30, "png")
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 100,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": base64.b64encode(png).decode(),
                        },
                    },
                    {"type": "text", "text": "hi there"},
                ],
            }
        ],
    }
    response = client.invoke_model(modelId=f"us.{CLAUDE}", body=json.dumps(body))
    message = json.loads(response["body"].read())
    assert message["type"] == "message" and message["id"].startswith("msg_bdrk_")
    assert message["content"][0]["text"] == "I see 1 image(s): 40x30 image/png. You said: hi there"
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-bedrock-output-token-count"] == str(message["usage"]["output_tokens"])
    stream = client.invoke_model_with_response_stream(modelId=CLAUDE, body=json.dumps(body))
    chunks = [json.loads(event["chunk"]["bytes"]) for event in stream["body"]]
    assert [chunk["type"] for chunk in chunks][:2] == ["message_start", "content_block_start"]
    text = "".join(c["delta"]["text"] for c in chunks if c["type"] == "content_block_delta")
    assert text == message["content"][0]["text"]
    assert chunks[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] > 0


def test_invoke_claude_validation(client: Any, emu: BedrockEmulator) -> None:
    base = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
    }
    cases = [
        (
            {**base, "model": CLAUDE},
            "Malformed input request: #: extraneous key [model] is not permitted",
        ),
        (
            {k: v for k, v in base.items() if k != "anthropic_version"},
            "Malformed input request: #: required key [anthropic_version] not found",
        ),
        (
            {
                **base,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": base64.b64encode(make_image(4, 4, "jpeg")).decode(),
                                },
                            }
                        ],
                    }
                ],
            },
            "messages.0.content.0.image.source.base64.data: Image does not match the provided "
            "media "
            "type image/png",
        ),
    ]
    for body, message in cases:
        with pytest.raises(client.exceptions.ValidationException) as raised:
            client.invoke_model(modelId=CLAUDE, body=json.dumps(body))
        assert raised.value.response["Error"]["Message"].startswith(message)


def test_invoke_nova(client: Any, emu: BedrockEmulator) -> None:
    body = {
        "schemaVersion": "messages-v1",
        "messages": [
            {
                "role": "user",
                "content": [image(make_image(16, 16, "webp"), "webp"), {"text": "what"}],
            }
        ],
        "inferenceConfig": {"max_new_tokens": 4, "top_p": 0.9},
    }
    answer = json.loads(client.invoke_model(modelId=NOVA, body=json.dumps(body))["body"].read())
    assert answer["output"]["message"]["content"][0]["text"] == "I see 1 image(s):"
    assert answer["stopReason"] == "max_tokens"
    assert answer["usage"]["outputTokens"] == 4


# ---------------------------------------------------------------------------- SigV4


def test_signed_by_hand_and_sent_with_httpx(http: httpx.Client, emu: BedrockEmulator) -> None:
    response = signed_post(http, emu, converse_body())
    assert response.status_code == 200, response.text
    assert response.headers["x-amzn-requestid"]
    literal = signed_post(http, emu, converse_body(), model=CLAUDE)  # ":" sent unencoded
    assert literal.status_code == 200, literal.text


def test_tampered_body_is_rejected(http: httpx.Client, emu: BedrockEmulator) -> None:
    tampered = json.dumps(converse_body({"text": "something else"})).encode()
    response = signed_post(http, emu, converse_body(), send_body=tampered)
    assert aws_error(response, 403, "InvalidSignatureException") == SIGNATURE_MISMATCH
    assert response.headers["x-amzn-errortype"] == "InvalidSignatureException"


def test_path_must_be_sent_as_signed(http: httpx.Client, emu: BedrockEmulator) -> None:
    # Signed for a literal ":" but sent percent-encoded: the canonical paths differ.
    response = signed_post(
        http,
        emu,
        converse_body(),
        model=CLAUDE,
        send_path="/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
    )
    assert aws_error(response, 403, "InvalidSignatureException") == SIGNATURE_MISMATCH


async def test_aiohttp_must_send_the_path_encoded(emu: BedrockEmulator) -> None:
    """yarl decodes "%3A" unless told the URL is encoded; AWS then sees another path."""
    url = f"{emu.base_url}/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    data = json.dumps(converse_body()).encode()
    request = AWSRequest("POST", url, data=data, headers={"Content-Type": "application/json"})
    credentials = Credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY)
    SigV4Auth(credentials, "bedrock", "us-east-1").add_auth(request)
    headers = dict(request.headers.items())
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=data, headers=headers) as decoded:
            assert decoded.status == 403
        async with session.post(yarl.URL(url, encoded=True), data=data, headers=headers) as kept:
            assert kept.status == 200
    assert [r.raw_path.split("/")[2] for r in emu.requests] == [
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "anthropic.claude-3-5-sonnet-20240620-v1%3A0",
    ]


@pytest.mark.parametrize(
    ("kwargs", "error_type", "message"),
    [
        ({"secret": "wrong-secret"}, "InvalidSignatureException", SIGNATURE_MISMATCH),
        (
            {"key_id": "AKIAUNKNOWN000000000"},
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        (
            {"token": "a-session-token"},
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        (
            {"region": "eu-west-1"},
            "InvalidSignatureException",
            "Credential should be scoped to a valid region, not 'eu-west-1'. ",
        ),
        (
            {"service": "bedrock-runtime"},
            "InvalidSignatureException",
            "Credential should be scoped to correct service: 'bedrock'. ",
        ),
    ],
)
def test_signature_errors(
    http: httpx.Client, emu: BedrockEmulator, kwargs: dict[str, Any], error_type: str, message: str
) -> None:
    response = signed_post(http, emu, converse_body(), **kwargs)
    assert aws_error(response, 403, error_type) == message


def test_session_tokens(http: httpx.Client) -> None:
    with BedrockEmulator("AKIATEMP", "temp-secret", "the-token", region="eu-central-1") as emu:
        good = signed_post(
            http,
            emu,
            converse_body(),
            key_id="AKIATEMP",
            secret="temp-secret",
            token="the-token",
            region="eu-central-1",
        )
        assert good.status_code == 200, good.text
        assert emu.requests[0].headers["x-amz-security-token"] == "the-token"
        missing = signed_post(
            http,
            emu,
            converse_body(),
            key_id="AKIATEMP",
            secret="temp-secret",
            region="eu-central-1",
        )
        aws_error(missing, 403, "UnrecognizedClientException")


def test_expired_signature(
    http: httpx.Client, emu: BedrockEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=20)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: old)
    response = signed_post(http, emu, converse_body())
    assert aws_error(response, 403, "InvalidSignatureException").startswith("Signature expired: ")


def test_missing_or_bearer_auth(http: httpx.Client, emu: BedrockEmulator) -> None:
    url = f"{emu.base_url}/model/{CLAUDE}/converse"
    anonymous = http.post(url, json=converse_body())
    assert aws_error(anonymous, 403, "MissingAuthenticationTokenException")
    bearer = http.post(
        url, json=converse_body(), headers={"Authorization": f"Bearer {emu.api_key}"}
    )
    assert bearer.status_code == 200, bearer.text
    wrong = http.post(url, json=converse_body(), headers={"Authorization": "Bearer ABSKnope"})
    aws_error(wrong, 403, "UnrecognizedClientException")
    broken = http.post(url, json=converse_body(), headers={"Authorization": "AWS4-HMAC-SHA256 x=y"})
    assert "requires 'Signature'" in aws_error(broken, 403, "IncompleteSignatureException")


# ---------------------------------------------------------------------------- Converse rules

PNG = make_image(8, 8, "png")


@pytest.mark.parametrize(
    ("payload", "error_type", "message"),
    [
        (
            {},
            "ValidationException",
            "1 validation error detected: Value null at 'messages' failed "
            "to satisfy constraint: Member must not be null",
        ),
        (
            converse_body(maxTokens=5),
            "SerializationException",
            "Unknown member 'maxTokens' in the body",
        ),
        (
            {"messages": []},
            "ValidationException",
            "A conversation must start with a user message. Try again with a conversation that "
            "starts with a user message.",
        ),
        (
            {"messages": [{"role": "system", "content": [{"text": "x"}]}]},
            "ValidationException",
            "1 validation error detected: Value 'system' at 'messages.1.member.role' failed to "
            "satisfy constraint: Member must satisfy enum value set: [user, assistant]",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"text": "a"}]},
                    {"role": "user", "content": [{"text": "b"}]},
                ]
            },
            "ValidationException",
            "A conversation must alternate between user and assistant roles. Make sure the "
            "conversation alternates between user and assistant roles and try again.",
        ),
        (
            converse_body({"text": "  "}),
            "ValidationException",
            "The text field in the "
            "ContentBlock object at messages.0.content.0 is blank. Add text to the text field, and "
            "try again.",
        ),
        (
            converse_body({"text": "a", "image": {}}),
            "ValidationException",
            "The ContentBlock at "
            "messages.0.content.0 object must have exactly one of these members set: text, image, "
            "document, video, audio, toolUse, toolResult, guardContent, cachePoint, "
            "reasoningContent, citationsContent, searchResult.",
        ),
        (
            converse_body({"text": "a"}, image(PNG, "jpg")),
            "ValidationException",
            "1 validation error detected: Value at "
            "'messages.1.member.content.2.member.image.format' failed to satisfy constraint: "
            "Member must satisfy enum value set: [gif, jpeg, png, webp]",
        ),
        (
            converse_body({"text": "a"}, image(PNG, "jpeg")),
            "ValidationException",
            "The model returned the following errors: "
            "messages.0.content.1.image.source.base64.data: "
            "Image does not match the provided media type image/jpeg",
        ),
        (
            converse_body(image(make_image(8001, 8, "png"))),
            "ValidationException",
            "The model returned the following errors: "
            "messages.0.content.0.image.source.base64.data: "
            "At least one of the image dimensions exceed max allowed size: 8000 pixels",
        ),
        (
            converse_body(*[image(PNG)] * 21),
            "ValidationException",
            "Too many images in messages.0: 21 > 20 images per message.",
        ),
        (
            converse_body(inferenceConfig={"max_tokens": 5}),
            "SerializationException",
            "Unknown member 'max_tokens' at inferenceConfig",
        ),
        (
            converse_body(inferenceConfig={"maxTokens": 0}),
            "ValidationException",
            "1 validation error detected: Value '0' at 'inferenceConfig.maxTokens' failed to "
            "satisfy "
            "constraint: Member must have value greater than or equal to 1",
        ),
        (
            converse_body(inferenceConfig={"temperature": 1.5}),
            "ValidationException",
            "1 validation error detected: Value '1.5' at 'inferenceConfig.temperature' failed to "
            "satisfy constraint: Member must have value less than or equal to 1",
        ),
        (
            converse_body(system=[{"text": ""}]),
            "ValidationException",
            "The text field in the "
            "SystemContentBlock at system.0 is blank. Add text to the text field, and try again.",
        ),
    ],
)
def test_converse_validation(
    http: httpx.Client, emu: BedrockEmulator, payload: Any, error_type: str, message: str
) -> None:
    response = signed_post(http, emu, payload)
    assert aws_error(response, 400, error_type) == message
    assert response.headers["x-amzn-errortype"].endswith(
        ":http://internal.amazon.com/coral/com.amazon.bedrock/"
    )
    assert emu.images == []


def test_image_rules_depend_on_the_model(http: httpx.Client, emu: BedrockEmulator) -> None:
    mismatch = converse_body(image(PNG, "gif"))
    llama = signed_post(http, emu, mismatch, model="meta.llama3-2-11b-instruct-v1%3A0")
    assert aws_error(llama, 400, "ValidationException") == (
        "The model returned the following errors: The provided image does not match the "
        "specified image format."
    )
    big = PNG[:8] + bytes(3_932_161 - 8)
    too_big = signed_post(http, emu, converse_body(image(big)))
    assert "3932161 bytes > 3932160 bytes" in aws_error(too_big, 400, "ValidationException")
    s3 = {"image": {"format": "png", "source": {"s3Location": {"uri": "s3://bucket/cat.png"}}}}
    answer = signed_post(http, emu, converse_body(s3), model="amazon.nova-pro-v1%3A0")
    assert answer.json()["output"]["message"]["content"][0]["text"] == (
        "I see 1 image(s): image/png at s3://bucket/cat.png."
    )


def test_max_tokens_and_stop_sequences(http: httpx.Client, emu: BedrockEmulator) -> None:
    cut = signed_post(http, emu, converse_body(inferenceConfig={"maxTokens": 2})).json()
    assert cut["stopReason"] == "max_tokens" and cut["usage"]["outputTokens"] == 2
    assert cut["output"]["message"]["content"] == [{"text": "I see"}]
    stop = signed_post(http, emu, converse_body(inferenceConfig={"stopSequences": ["You"]})).json()
    assert stop["stopReason"] == "stop_sequence"


@pytest.mark.parametrize(
    ("model", "status", "error_type"),
    [
        ("us.anthropic.claude-3-haiku-20240307-v1%3A0", 200, None),
        (
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Famazon.nova-lite-v1%3A0",
            200,
            None,
        ),
        ("anthropic.claude-unknown-v1%3A0", 404, "ResourceNotFoundException"),
        ("claude-sonnet-4-5", 400, "ValidationException"),
    ],
)
def test_model_ids(
    http: httpx.Client, emu: BedrockEmulator, model: str, status: int, error_type: str | None
) -> None:
    response = signed_post(http, emu, converse_body(), model=model)
    if error_type is None:
        assert response.status_code == status, response.text
    else:
        aws_error(response, status, error_type)


def test_unknown_operation(http: httpx.Client, emu: BedrockEmulator) -> None:
    response = signed_post(http, emu, converse_body(), operation="chat")
    aws_error(response, 404, "UnknownOperationException")


# ---------------------------------------------------------------------------- event stream


def test_frames_decode_with_botocore() -> None:
    raw = event_frame("contentBlockDelta", {"delta": {"text": "hé"}, "contentBlockIndex": 0})
    raw += exception_frame("throttlingException", {"message": "slow"})
    raw += frame({":message-type": "event", ":event-type": "empty"}, b"")
    buffer = EventStreamBuffer()
    buffer.add_data(raw[:10])
    assert list(buffer) == []  # an incomplete frame waits for more bytes
    buffer.add_data(raw[10:])
    first, second, third = list(buffer)
    assert first.headers == {
        ":event-type": "contentBlockDelta",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert json.loads(first.payload) == {"delta": {"text": "hé"}, "contentBlockIndex": 0}
    assert second.headers[":exception-type"] == "throttlingException"
    assert second.to_response_dict()["status_code"] == 400
    assert third.payload == b""
    corrupt = bytearray(event_frame("x", {}))
    corrupt[-6] ^= 0xFF
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(corrupt))
    with pytest.raises(ChecksumMismatch):
        list(buffer)


def test_converse_stream_frames(http: httpx.Client, emu: BedrockEmulator) -> None:
    response = signed_post(http, emu, converse_body(image(PNG)), operation="converse-stream")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
    frames = decode_frames(response.content)
    assert [h[":event-type"] for h, _ in frames] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert all(h[":message-type"] == "event" for h, _ in frames)
    assert frames[0][1]["role"] == "assistant"
    assert "p" in frames[1][1]  # Bedrock pads every event
    text = "".join(p["delta"]["text"] for h, p in frames if h[":event-type"] == "contentBlockDelta")
    assert text == "I see 1 image(s): 8x8 image/png."
    assert frames[-1][1]["usage"]["totalTokens"] > 0


def test_stream_faults(http: httpx.Client, emu: BedrockEmulator) -> None:
    emu.fail_next("stream_error", status=429, message="slow down")
    frames = decode_frames(
        signed_post(http, emu, converse_body(), operation="converse-stream").content
    )
    assert [h[":message-type"] for h, _ in frames] == ["event", "event", "exception"]
    assert frames[-1][0][":exception-type"] == "throttlingException"
    assert frames[-1][1] == {"message": "slow down"}
    emu.fail_next("stream_error")
    frames = decode_frames(
        signed_post(http, emu, converse_body(), operation="converse-stream").content
    )
    assert frames[-1][0][":exception-type"] == "modelStreamErrorException"
    assert frames[-1][1]["originalStatusCode"] == 500
    emu.fail_next("stream_error")
    aws_error(signed_post(http, emu, converse_body()), 424, "ModelErrorException")
    emu.fail_next("truncate")
    with pytest.raises(httpx.RemoteProtocolError):
        signed_post(http, emu, converse_body(), operation="converse-stream")


# ---------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "ValidationException"),
        (403, "AccessDeniedException"),
        (408, "ModelTimeoutException"),
        (429, "ThrottlingException"),
        (500, "InternalServerException"),
        (503, "ServiceUnavailableException"),
    ],
)
def test_status_faults(
    http: httpx.Client, emu: BedrockEmulator, status: int, error_type: str
) -> None:
    emu.fail_next("status", status=status, retry_after=1)
    response = signed_post(http, emu, {"garbage": True})
    aws_error(response, status, error_type)
    assert response.headers["retry-after"] == "1"
    assert emu.requests[0].json == {"garbage": True}
    assert signed_post(http, emu, converse_body()).status_code == 200


def test_delay_reset_truncate_and_reset(http: httpx.Client, emu: BedrockEmulator) -> None:
    emu.fail_next("delay", delay=0.2)
    emu.fail_next("reset")
    emu.fail_next("truncate")
    assert signed_post(http, emu, converse_body()).status_code == 200
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        signed_post(http, emu, converse_body())
    with pytest.raises(httpx.RemoteProtocolError):
        signed_post(http, emu, converse_body())
    assert len(emu.requests) == 3
    emu.fail_next("status", status=500)
    emu.reset()
    assert emu.requests == [] and emu.images == []
    assert signed_post(http, emu, converse_body()).status_code == 200


# ---------------------------------------------------------------------------- image models


def invoke_image(client: Any, model: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.invoke_model(modelId=model, body=json.dumps(body))
    result: dict[str, Any] = json.loads(answer["body"].read())
    return result


def refused(client: Any, model: str, body: dict[str, Any]) -> str:
    with pytest.raises(ClientError) as caught:
        invoke_image(client, model, body)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    message: str = caught.value.response["Error"]["Message"]
    return message


def size_of_b64(text: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(text))) as picture:
        return picture.size


def b64_png(width: int, height: int, colour: tuple[int, int, int] = (255, 255, 255)) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_sdxl_body_rules(client: Any, emu: BedrockEmulator) -> None:
    model = "stability.stable-diffusion-xl-v1"
    message = refused(client, model, {"prompt": "an otter"})
    assert message.startswith("Malformed input request: ")
    assert "#: required key [text_prompts] not found" in message
    assert "#: extraneous key [prompt] is not permitted" in message
    assert "1000x1000) are not valid" in refused(
        client, model, {"text_prompts": [{"text": "x"}], "width": 1000, "height": 1000}
    )
    assert "#/cfg_scale: 40 is not less or equal to 35" in refused(
        client, model, {"text_prompts": [{"text": "x"}], "cfg_scale": 40}
    )
    answer = invoke_image(client, model, {"text_prompts": [{"text": "x"}, {"text": "y",
                          "weight": -1}], "width": 1344, "height": 768, "seed": 5})  # fmt: skip
    assert answer["result"] == "success"
    (artifact,) = answer["artifacts"]
    assert artifact["finishReason"] == "SUCCESS" and artifact["seed"] == 5
    assert size_of_b64(artifact["base64"]) == (1344, 768)
    # v0 (SDXL 0.8) takes multiples of 64 rather than the v1 list [U].
    v0 = invoke_image(client, "stability.stable-diffusion-xl-v0",
                      {"text_prompts": [{"text": "x"}], "width": 512, "height": 512})  # fmt: skip
    assert size_of_b64(v0["artifacts"][0]["base64"]) == (512, 512)


def test_sdxl_safety_triggers(client: Any, emu: BedrockEmulator) -> None:
    model = "stability.stable-diffusion-xl-v1"
    filtered = invoke_image(client, model, {"text_prompts": [{"text": "FILTER_ME"}]})
    assert filtered["artifacts"][0]["finishReason"] == "CONTENT_FILTERED"
    some = [
        invoke_image(client, model, {"text_prompts": [{"text": "FILTER_SOME"}]})["artifacts"][0]
        for _ in range(3)
    ]
    assert [a["finishReason"] for a in some] == ["CONTENT_FILTERED", "SUCCESS", "CONTENT_FILTERED"]


def test_sd3_body_rules(client: Any, emu: BedrockEmulator) -> None:
    model = "stability.sd3-5-large-v1:0"
    message = refused(client, model, {"text_prompts": [{"text": "x"}]})
    assert "#: required key [prompt] not found" in message
    assert "#: extraneous key [text_prompts] is not permitted" in message
    assert "#/aspect_ratio: 4:3 is not a valid enum value" in refused(
        client, model, {"prompt": "x", "aspect_ratio": "4:3"}
    )
    image = b64_png(640, 480)
    assert "#: extraneous key [aspect_ratio] is not permitted" in refused(
        client, model, {"prompt": "x", "mode": "image-to-image", "image": image,
                        "strength": 0.5, "aspect_ratio": "1:1"}
    )  # fmt: skip
    assert "#: required key [strength] not found" in refused(
        client, model, {"prompt": "x", "mode": "image-to-image", "image": image}
    )
    assert "#: extraneous key [mode] is not permitted" in refused(
        client, "stability.stable-image-core-v1:1", {"prompt": "x", "mode": "text-to-image"}
    )
    edited = invoke_image(client, model, {"prompt": "x", "mode": "image-to-image",
                                          "image": image, "strength": 0.5})  # fmt: skip
    assert size_of_b64(edited["images"][0]) == (640, 480)
    wide = invoke_image(client, model, {"prompt": "x", "aspect_ratio": "21:9",
                                        "output_format": "jpeg"})  # fmt: skip
    assert wide["finish_reasons"] == [None] and size_of_b64(wide["images"][0]) == (1536, 640)
    assert base64.b64decode(wide["images"][0]).startswith(b"\xff\xd8")
    assert invoke_image(client, model, {"prompt": "FILTER_ME"}) == {
        "finish_reasons": ["Filter reason: prompt"]
    }


def test_titan_and_nova_body_rules(client: Any, emu: BedrockEmulator) -> None:
    titan, nova = "amazon.titan-image-generator-v2:0", "amazon.nova-canvas-v1:0"
    text = {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "an otter"}}
    assert "#: required key [textToImageParams] not found" in refused(
        client, titan, {"taskType": "TEXT_IMAGE", "inPaintingParams": {"image": "x"}}
    )
    assert "#/textToImageParams/text: expected maxLength: 512" in refused(
        client, titan, {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "x" * 600}}
    )
    assert "not a supported image size" in refused(
        client, titan, {**text, "imageGenerationConfig": {"width": 1280, "height": 720}}
    )
    for width, height, complaint in [(2048, 2048, "less than 4,194,304"),
                                     (1000, 1000, "divisible by 16"),
                                     (4096, 320, "between 1:4 and 4:1")]:  # fmt: skip
        config = {"width": width, "height": height}
        assert complaint in refused(client, nova, {**text, "imageGenerationConfig": config})
    answer = invoke_image(client, titan, {**text, "imageGenerationConfig": {
        "numberOfImages": 3, "width": 1173, "height": 640}})  # fmt: skip
    assert [size_of_b64(image) for image in answer["images"]] == [(1173, 640)] * 3
    blocked = refused(client, nova, {"taskType": "TEXT_IMAGE",
                                     "textToImageParams": {"text": "FILTER_ME"}})  # fmt: skip
    assert "blocked by our content filters" in blocked
    some = invoke_image(client, nova, {"taskType": "TEXT_IMAGE", "textToImageParams": {
        "text": "FILTER_SOME"}, "imageGenerationConfig": {"numberOfImages": 3}})  # fmt: skip
    assert len(some["images"]) == 2 and "content filters" in some["error"]


def test_inpainting_and_variation_rules(client: Any, emu: BedrockEmulator) -> None:
    nova = "amazon.nova-canvas-v1:0"
    image, mask = b64_png(512, 512, (200, 0, 0)), b64_png(512, 512, (0, 0, 0))
    params = {"image": image, "text": "a hat", "maskImage": mask}
    answer = invoke_image(client, nova, {"taskType": "INPAINTING", "inPaintingParams": params})
    assert size_of_b64(answer["images"][0]) == (512, 512)
    grey = {**params, "maskImage": b64_png(512, 512, (128, 128, 128))}
    assert "only pure black and pure white" in refused(
        client, nova, {"taskType": "INPAINTING", "inPaintingParams": grey}
    )
    small = {**params, "maskImage": b64_png(256, 256, (0, 0, 0))}
    assert "same dimensions" in refused(
        client, nova, {"taskType": "INPAINTING", "inPaintingParams": small}
    )
    both = {**params, "maskPrompt": "the cat"}
    assert "Exactly one of maskPrompt or maskImage" in refused(
        client, nova, {"taskType": "INPAINTING", "inPaintingParams": both}
    )
    varied = invoke_image(client, "amazon.titan-image-generator-v1", {
        "taskType": "IMAGE_VARIATION",
        "imageVariationParams": {"images": [image], "similarityStrength": 0.7},
        "imageGenerationConfig": {"numberOfImages": 2, "width": 512, "height": 512},
    })  # fmt: skip
    assert [size_of_b64(i) for i in varied["images"]] == [(512, 512)] * 2
    assert "#/imageVariationParams/similarityStrength: 0.1 is not greater or equal" in refused(
        client, nova, {"taskType": "IMAGE_VARIATION",
                       "imageVariationParams": {"images": [image], "similarityStrength": 0.1}}
    )  # fmt: skip


def test_image_models_do_not_stream(http: httpx.Client, emu: BedrockEmulator) -> None:
    body = {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "x"}}
    response = signed_post(http, emu, body, model="amazon.nova-canvas-v1%3A0",
                           operation="invoke-with-response-stream")  # fmt: skip
    assert "does not support response streaming" in aws_error(response, 400, "ValidationException")
