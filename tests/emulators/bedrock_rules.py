"""Wire rules of Bedrock runtime: model ids, the Converse body, answers and stream events.

Validation messages follow the service's two layers: Smithy's ("1 validation error
detected: Value at 'messages.1.member.content.2.member.image.format' failed to satisfy
constraint: ..."; paths 1-based) and the model's ("The model returned the following
errors: ..."). Nothing in this module does I/O.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from .anthropic_rules import image_tokens
from .aws import AwsError, validation
from .vision import (
    Reply,
    SeenImage,
    UnreadableImage,
    chunks,
    count_tokens,
    decode_base64,
    finish,
    matches,
    reply_text,
)

JsonObject = dict[str, Any]

BEDROCK_MODELS: tuple[str, ...] = (
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "anthropic.claude-3-5-sonnet-20241022-v2:0",
    "anthropic.claude-3-haiku-20240307-v1:0",
    "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "anthropic.claude-haiku-4-5-20251001-v1:0",
    "amazon.nova-lite-v1:0",
    "amazon.nova-pro-v1:0",
    "meta.llama3-2-11b-instruct-v1:0",
    "mistral.pixtral-large-2502-v1:0",
)
FORMATS = ("gif", "jpeg", "png", "webp")
MAX_IMAGE_BYTES = 3_932_160  # 3.75 MB
MAX_SIDE = 8000
MAX_IMAGES_PER_MESSAGE = 20

_PROFILE = re.compile(r"(?:us|eu|apac|global|jp|au|ca|us-gov)\.(?P<base>[a-z0-9-]+\..+)")
_ARN = re.compile(
    r"arn:aws(?:-[a-z]+)*:bedrock:[a-z0-9-]*:\d*:(?:foundation-model|inference-profile|"
    r"application-inference-profile|provisioned-model)/(?P<id>.+)"
)
_LOOKS_LIKE_ID = re.compile(r"[a-z0-9-]+\.[A-Za-z0-9._:-]+")
_UNION = (
    "text", "image", "document", "video", "audio", "toolUse", "toolResult", "guardContent",
    "cachePoint", "reasoningContent", "citationsContent", "searchResult",
)  # fmt: skip
_TOP_LEVEL = {
    "messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
    "additionalModelRequestFields", "additionalModelResponseFieldPaths", "promptVariables",
    "requestMetadata", "performanceConfig", "serviceTier", "outputConfig",
}  # fmt: skip
_STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("ValidationException", "Malformed input request, please reformat your input."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified "
          "model ID."),
    404: ("ResourceNotFoundException", "Could not resolve the foundation model from the "
          "provided model identifier."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request. Try your "
          "request again."),
    424: ("ModelErrorException", "The system encountered an unexpected error during "
          "processing. Try your request again."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The system encountered an unexpected error during "
          "processing. Try your request again."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}  # fmt: skip
_STOP_REASONS = {"end": "end_turn", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence"}


def injected_error(status: int, message: str | None = None) -> AwsError:
    """The error Bedrock sends with ``status`` when it fails on its own accord."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    default = ("InternalServerException" if status >= 500 else "ValidationException", phrase)
    error_type, text = _STATUS_ERRORS.get(status, default)
    return AwsError(status, error_type, message or text)


def stream_exception(status: int | None, message: str | None) -> tuple[str, JsonObject]:
    """``:exception-type`` and payload of a mid-stream error (default: model stream error)."""
    if status is None or status == 424:
        text = message or "The model encountered an error while streaming the response."
        return "modelStreamErrorException", {
            "message": text,
            "originalStatusCode": 500,
            "originalMessage": text,
        }
    error = injected_error(status, message)
    name = error.error_type[0].lower() + error.error_type[1:]
    return name, {"message": error.message}


def resolve_model(model_id: str, known: Iterable[str]) -> str:
    """The base model id behind ``model_id`` (an id, inference profile or ARN)."""
    base = model_id
    if match := _ARN.fullmatch(base):
        base = match["id"]
    if match := _PROFILE.fullmatch(base):
        base = match["base"]
    if base in known:
        return base
    if _LOOKS_LIKE_ID.fullmatch(base) and len(model_id) <= 2048:
        raise AwsError(404, "ResourceNotFoundException", _STATUS_ERRORS[404][1])
    raise validation("The provided model identifier is invalid.")


def parse_body(raw: bytes) -> JsonObject:
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        raise AwsError(400, "SerializationException", "Unexpected content in the body") from None
    if not isinstance(body, dict):
        raise AwsError(
            400, "SerializationException", "Start of structure or map found where not expected."
        )
    return body


# ---------------------------------------------------------------------------- validation


def _smithy(path: str, constraint: str, value: object = ...) -> AwsError:
    shown = "null " if value is None else "" if value is ... else f"'{value}' "
    return validation(
        f"1 validation error detected: Value {shown}at '{path}' failed to satisfy constraint: "
        f"Member must {constraint}"
    )


@dataclass(slots=True)
class Conversation:
    images: list[SeenImage] = field(default_factory=list)
    said: str = ""
    text_tokens: int = 0
    image_tokens: int = 0
    max_tokens: int | None = None
    stop_sequences: list[str] = field(default_factory=list)

    @property
    def input_tokens(self) -> int:
        return self.text_tokens + self.image_tokens


def validate_converse(body: JsonObject, *, claude: bool) -> Conversation:
    """Raise the first :class:`AwsError` Bedrock would give for a Converse ``body``."""
    for key in body:
        if key not in _TOP_LEVEL:
            raise AwsError(400, "SerializationException", f"Unknown member '{key}' in the body")
    conv = Conversation()
    messages = body.get("messages")
    if messages is None:
        raise _smithy("messages", "not be null", None)
    if not isinstance(messages, list):
        raise AwsError(400, "SerializationException", "messages must be a list")
    for index, message in enumerate(messages):
        _check_message(index, message, conv, claude=claude)
    if not messages or messages[0].get("role") != "user":
        raise validation(
            "A conversation must start with a user message. Try again with a conversation "
            "that starts with a user message."
        )
    roles = [message["role"] for message in messages]
    if any(first == second for first, second in itertools.pairwise(roles)):
        raise validation(
            "A conversation must alternate between user and assistant roles. Make sure the "
            "conversation alternates between user and assistant roles and try again."
        )
    _check_system(body.get("system"), conv)
    _check_inference(body.get("inferenceConfig"), conv)
    return conv


def _union_key(path: str, block: object, members: tuple[str, ...]) -> str:
    if not isinstance(block, dict) or len(block) != 1:
        raise validation(
            f"The {path} object must have exactly one of these members set: {', '.join(members)}."
        )
    (key,) = block
    if key not in members:
        raise AwsError(400, "SerializationException", f"Unknown member '{key}' at {path}")
    return str(key)


def _check_message(index: int, message: object, conv: Conversation, *, claude: bool) -> None:
    path = f"messages.{index + 1}.member"
    if not isinstance(message, dict):
        raise AwsError(400, "SerializationException", f"{path} must be an object")
    role = message.get("role")
    if role is None:
        raise _smithy(f"{path}.role", "not be null", None)
    if role not in ("user", "assistant"):
        raise _smithy(f"{path}.role", "satisfy enum value set: [user, assistant]", role)
    content = message.get("content")
    if content is None:
        raise _smithy(f"{path}.content", "not be null", None)
    if not isinstance(content, list):
        raise AwsError(400, "SerializationException", f"{path}.content must be a list")
    texts: list[str] = []
    images = 0
    for position, block in enumerate(content):
        block_path = f"{path}.content.{position + 1}.member"
        key = _union_key(f"ContentBlock at messages.{index}.content.{position}", block, _UNION)
        value = block[key]
        if key == "text":
            if not isinstance(value, str):
                raise AwsError(400, "SerializationException", f"{block_path}.text must be text")
            if not value.strip():
                raise validation(
                    f"The text field in the ContentBlock object at messages.{index}.content."
                    f"{position} is blank. Add text to the text field, and try again."
                )
            texts.append(value)
        elif key == "image":
            images += 1
            model_path = f"messages.{index}.content.{position}.image.source.base64"
            _check_image(block_path, model_path, value, conv, claude=claude)
    if images > MAX_IMAGES_PER_MESSAGE:
        raise validation(
            f"Too many images in messages.{index}: {images} > "
            f"{MAX_IMAGES_PER_MESSAGE} images per message."
        )
    conv.text_tokens += sum(count_tokens(text) for text in texts)
    if role == "user":
        conv.said = " ".join(texts)


def _model_error(text: str) -> AwsError:
    return validation(f"The model returned the following errors: {text}")


def _check_image(
    path: str, model_path: str, image: object, conv: Conversation, *, claude: bool
) -> None:
    if not isinstance(image, dict):
        raise AwsError(400, "SerializationException", f"{path}.image must be an object")
    fmt = image.get("format")
    if fmt is None:
        raise _smithy(f"{path}.image.format", "not be null", None)
    if fmt not in FORMATS:
        raise _smithy(f"{path}.image.format", f"satisfy enum value set: [{', '.join(FORMATS)}]")
    source = image.get("source")
    if source is None:
        raise _smithy(f"{path}.image.source", "not be null", None)
    kind = _union_key(f"ImageSource at {path}.image.source", source, ("bytes", "s3Location"))
    if kind == "s3Location":
        uri = source["s3Location"].get("uri") if isinstance(source["s3Location"], dict) else None
        if not isinstance(uri, str) or not re.fullmatch(r"s3://.{1,1019}", uri):
            raise _smithy(
                f"{path}.image.source.s3Location.uri", "satisfy regular expression pattern: s3://.*"
            )
        conv.images.append(SeenImage(f"image/{fmt}", uri=uri))
        conv.image_tokens += image_tokens(1092, 1092)
        return
    text = source["bytes"]
    data = decode_base64(text) if isinstance(text, str) else None
    if data is None:
        raise AwsError(
            400,
            "SerializationException",
            f"{path}.image.source.bytes: Invalid Base64-encoded bytes",
        )
    if not data:
        raise _smithy(f"{path}.image.source.bytes", "have length greater than or equal to 1")
    if len(data) > MAX_IMAGE_BYTES:
        raise validation(
            f"The image at {model_path.removesuffix('.source.base64')} is too "
            f"large: {len(data)} bytes > {MAX_IMAGE_BYTES} bytes (3.75 MB)."
        )
    media_type = f"image/{fmt}"
    if not matches(media_type, data):
        if claude:
            raise _model_error(
                f"{model_path}.data: Image does not match the provided media type {media_type}"
            )
        raise _model_error("The provided image does not match the specified image format.")
    try:
        seen = SeenImage.from_bytes(media_type, data)
    except UnreadableImage:
        raise _model_error("Could not process image") from None
    assert seen.width is not None and seen.height is not None
    if max(seen.width, seen.height) > MAX_SIDE:
        raise _model_error(
            f"{model_path}.data: At least one of the image dimensions exceed max allowed "
            f"size: {MAX_SIDE} pixels"
        )
    conv.images.append(seen)
    conv.image_tokens += image_tokens(seen.width, seen.height)


def _check_system(system: object, conv: Conversation) -> None:
    if system is None:
        return
    if not isinstance(system, list):
        raise AwsError(400, "SerializationException", "system must be a list")
    for index, block in enumerate(system):
        where = f"SystemContentBlock at system.{index}"
        key = _union_key(where, block, ("text", "guardContent", "cachePoint"))
        if key == "text":
            text = block["text"]
            if not isinstance(text, str) or not text.strip():
                raise validation(
                    f"The text field in the {where} is blank. Add text to the "
                    "text field, and try again."
                )
            conv.text_tokens += count_tokens(text)


def _number(path: str, value: object, low: float, high: float | None) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise AwsError(400, "SerializationException", f"{path} must be a number")
    if value < low:
        raise _smithy(path, f"have value greater than or equal to {low:g}", value)
    if high is not None and value > high:
        raise _smithy(path, f"have value less than or equal to {high:g}", value)


def _check_inference(config: object, conv: Conversation) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        raise AwsError(400, "SerializationException", "inferenceConfig must be an object")
    for key, value in config.items():
        path = f"inferenceConfig.{key}"
        if key == "maxTokens":
            if isinstance(value, float):
                raise AwsError(400, "SerializationException", f"{path} must be an integer")
            _number(path, value, 1, None)
            conv.max_tokens = int(value)
        elif key in ("temperature", "topP"):
            _number(path, value, 0, 1)
        elif key == "stopSequences":
            if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
                raise AwsError(400, "SerializationException", f"{path} must be a list of text")
            if any(not stop for stop in value):
                raise _smithy(path, "have length greater than or equal to 1")
            conv.stop_sequences = list(value)
        else:
            raise AwsError(
                400, "SerializationException", f"Unknown member '{key}' at inferenceConfig"
            )


# ---------------------------------------------------------------------------- answers


def answer(conv: Conversation) -> Reply:
    text = reply_text(conv.images, conv.said)
    return finish(text, max_tokens=conv.max_tokens, stop_sequences=conv.stop_sequences)


def usage(conv: Conversation, reply: Reply) -> JsonObject:
    return {
        "inputTokens": conv.input_tokens,
        "outputTokens": reply.output_tokens,
        "totalTokens": conv.input_tokens + reply.output_tokens,
    }


def converse_body(conv: Conversation, reply: Reply, latency_ms: int) -> JsonObject:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": reply.text}]}},
        "stopReason": _STOP_REASONS[reply.stopped_by],
        "usage": usage(conv, reply),
        "metrics": {"latencyMs": latency_ms},
    }


_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def converse_stream_events(
    conv: Conversation, reply: Reply, latency_ms: int
) -> list[tuple[str, JsonObject]]:
    """(event type, payload) of a ConverseStream answer. Bedrock pads events with ``p``."""
    events: list[tuple[str, JsonObject]] = [("messageStart", {"role": "assistant"})]
    for piece in chunks(reply.text):
        events.append(("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}))
    events += [
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": _STOP_REASONS[reply.stopped_by]}),
        ("metadata", {"usage": usage(conv, reply), "metrics": {"latencyMs": latency_ms}}),
    ]
    return [
        (name, {**payload, "p": _PADDING[: 5 + 7 * index % 40]})
        for index, (name, payload) in enumerate(events)
    ]
