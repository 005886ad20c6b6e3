"""Wire rules of the Anthropic Messages API: body validation, image checks, error bodies.

Used by the Anthropic emulator (``anthropic.py``) and by the Bedrock emulator for
Claude bodies sent to ``/invoke`` (``platform="bedrock"``). Messages follow the
real API's wording ("messages.0.content.1.image.source.base64.data: Image does not
match the provided media type image/png"). Nothing in this module does I/O.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

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
Platform = Literal["anthropic", "bedrock"]

MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
MAX_IMAGE_BASE64 = 5 * 1024 * 1024  # measured on the base64 text, as the API does
MAX_SIDE = 8000
MANY_IMAGES = 20  # above this many images, each side is limited to MANY_IMAGES_SIDE
MANY_IMAGES_SIDE = 2000
MAX_IMAGES = 100
MAX_REQUEST_BYTES = 32 * 1024 * 1024
BEDROCK_VERSION = "bedrock-2023-05-31"

_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_STATUS_MESSAGES = {
    401: "invalid x-api-key",
    402: "Your credit balance is too low to access the Anthropic API.",
    403: "Your API key does not have permission to use the specified resource.",
    404: "Not found",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of request tokens has exceeded your per-minute rate limit "
    "(https://docs.anthropic.com/en/api/rate-limits); see the response headers for current "
    "usage. Please reduce the prompt length or the maximum tokens requested, or try again later.",
    500: "Internal server error",
    504: "Request timeout",
    529: "Overloaded",
}
_TOP_LEVEL = {
    "model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature",
    "top_p", "top_k", "tools", "tool_choice", "thinking", "metadata", "service_tier",
    "cache_control", "output_config", "container", "mcp_servers", "context_management",
}  # fmt: skip
_BLOCK_KEYS = {
    "text": {"type", "text", "cache_control", "citations"},
    "image": {"type", "source", "cache_control", "transformations"},
    "tool_use": {"type", "id", "name", "input", "cache_control"},
    "tool_result": {"type", "tool_use_id", "content", "is_error", "cache_control"},
}


class AnthropicError(Exception):
    """An error answer: status plus ``{"type":"error","error":{type, message}}``."""

    def __init__(self, status: int, message: str, type_: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_ or _ERROR_TYPES.get(status, "api_error" if status >= 500 else "")
        if not self.type:
            self.type = "invalid_request_error"

    def body(self, request_id: str) -> JsonObject:
        error = {"type": self.type, "message": self.message}
        return {"type": "error", "error": error, "request_id": request_id}


def invalid(message: str) -> AnthropicError:
    return AnthropicError(400, message, "invalid_request_error")


def injected_error(status: int, message: str | None = None) -> AnthropicError:
    """The error Anthropic sends with ``status`` when it fails on its own accord."""
    if message is None:
        try:
            default = HTTPStatus(status).phrase
        except ValueError:
            default = "Error"
        message = _STATUS_MESSAGES.get(status, default)
    return AnthropicError(status, message)


def check_version(value: str | None) -> None:
    if value is None:
        raise invalid("anthropic-version: header is required")
    if not _VERSION.fullmatch(value.strip()):
        raise invalid(f"anthropic-version: invalid version '{value}'")


def parse_body(raw: bytes) -> JsonObject:
    if len(raw) > MAX_REQUEST_BYTES:
        raise AnthropicError(413, _STATUS_MESSAGES[413], "request_too_large")
    try:
        body = json.loads(raw)
    except ValueError:
        raise invalid("There was an error parsing the body of your request.") from None
    if not isinstance(body, dict):
        raise invalid("Input should be an object")
    return body


# ---------------------------------------------------------------------------- validation


@dataclass(slots=True)
class Conversation:
    """What a valid body asked for, as far as the emulator's reply needs."""

    images: list[SeenImage] = field(default_factory=list)
    image_paths: list[str] = field(default_factory=list)  # where each image sits in the body
    said: str = ""  # the text of the last user message
    text_tokens: int = 0
    image_tokens: int = 0
    max_tokens: int = 0
    stop_sequences: list[str] = field(default_factory=list)
    stream: bool = False

    @property
    def input_tokens(self) -> int:
        return self.text_tokens + self.image_tokens


def image_tokens(width: int, height: int) -> int:
    """Anthropic's estimate (w*h/750), after its downscale to <=1568 px and ~1.15 MP."""
    scale = min(1.0, 1568 / max(width, height), math.sqrt(1_150_000 / (width * height)))
    return max(1, math.ceil(width * scale * height * scale / 750))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _type(path: str, value: object, kind: str) -> None:
    checks: dict[str, Callable[[object], bool]] = {
        "string": lambda v: isinstance(v, str),
        "integer": _is_int,
        "number": _is_number,
        "boolean": lambda v: isinstance(v, bool),
        "list": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    if not checks[kind](value):
        shown = "dictionary" if kind == "object" else kind
        raise invalid(f"{path}: Input should be a valid {shown}")


def _extra(path: str, obj: JsonObject, allowed: set[str]) -> None:
    for key in obj:
        if key not in allowed:
            prefix = f"{path}.{key}" if path else key
            raise invalid(f"{prefix}: Extra inputs are not permitted")


def validate(body: JsonObject, *, platform: Platform = "anthropic") -> Conversation:
    """Raise the first :class:`AnthropicError` the real API would give for ``body``."""
    allowed = set(_TOP_LEVEL)
    if platform == "bedrock":
        _check_bedrock_schema(body, (allowed - {"model"}) | {"anthropic_version", "anthropic_beta"})
    else:
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                raise invalid(f"{name}: Field required")
        _extra("", body, allowed)
    if platform == "anthropic":
        _type("model", body["model"], "string")
        if not body["model"]:
            raise invalid("model: String should have at least 1 character")
    _type("max_tokens", body["max_tokens"], "integer")
    if body["max_tokens"] < 1:
        raise invalid("max_tokens: Input should be greater than or equal to 1")
    conversation = Conversation(max_tokens=body["max_tokens"])
    _check_options(body, conversation)
    conversation.text_tokens += _system_tokens(body.get("system"))
    messages = body["messages"]
    _type("messages", messages, "list")
    if not messages:
        raise invalid("messages: at least one message is required")
    for index, message in enumerate(messages):
        _check_message(index, message, conversation, last=index == len(messages) - 1)
    count = len(conversation.images)
    if count > MAX_IMAGES:
        raise invalid(f"messages: Too many images: {count} > {MAX_IMAGES}")
    _check_dimensions(conversation)
    return conversation


def _check_bedrock_schema(body: JsonObject, allowed: set[str]) -> None:
    """Bedrock checks a Claude InvokeModel body against a JSON schema first."""

    def malformed(problem: str) -> AnthropicError:
        return invalid(
            f"Malformed input request: {problem}, please reformat your input and try again."
        )

    for name in ("anthropic_version", "max_tokens", "messages"):
        if name not in body:
            raise malformed(f"#: required key [{name}] not found")
    for key in body:
        if key not in allowed:
            raise malformed(f"#: extraneous key [{key}] is not permitted")
    if body["anthropic_version"] != BEDROCK_VERSION:
        raise malformed(
            f"#/anthropic_version: {body['anthropic_version']} is not a valid enum value"
        )


def _check_options(body: JsonObject, conversation: Conversation) -> None:
    for name, low, high in (("temperature", 0, 1), ("top_p", 0, 1)):
        if body.get(name) is not None:
            _type(name, body[name], "number")
            if not low <= body[name] <= high:
                raise invalid(f"{name}: range: {low}..{high}")
    if body.get("top_k") is not None:
        _type("top_k", body["top_k"], "integer")
    if body.get("stream") is not None:
        _type("stream", body["stream"], "boolean")
        conversation.stream = body["stream"]
    stops = body.get("stop_sequences")
    if stops is not None:
        _type("stop_sequences", stops, "list")
        for index, stop in enumerate(stops):
            _type(f"stop_sequences.{index}", stop, "string")
        conversation.stop_sequences = list(stops)
    if body.get("metadata") is not None:
        _type("metadata", body["metadata"], "object")
        _extra("metadata", body["metadata"], {"user_id"})


def _system_tokens(system: object) -> int:
    if system is None:
        return 0
    if isinstance(system, str):
        return count_tokens(system)
    _type("system", system, "list")
    assert isinstance(system, list)
    tokens = 0
    for index, block in enumerate(system):
        path = f"system.{index}"
        _type(path, block, "object")
        if block.get("type") != "text":
            raise invalid(f"{path}.type: Input should be 'text'")
        _extra(path, block, _BLOCK_KEYS["text"])
        _type(f"{path}.text", block.get("text"), "string")
        if not block["text"]:
            raise invalid("system: text content blocks must be non-empty")
        tokens += count_tokens(block["text"])
    return tokens


def _check_message(index: int, message: object, conv: Conversation, *, last: bool) -> None:
    path = f"messages.{index}"
    _type(path, message, "object")
    assert isinstance(message, dict)
    role = message.get("role")
    if role == "system":
        raise invalid(
            'Unexpected role "system". The Messages API accepts a top-level `system` '
            'parameter, not "system" as an input message role.'
        )
    if "role" not in message:
        raise invalid(f"{path}.role: Field required")
    if role not in ("user", "assistant"):
        raise invalid(f"{path}.role: Input should be 'user' or 'assistant'")
    if "content" not in message:
        raise invalid(f"{path}.content: Field required")
    _extra(path, message, {"role", "content"})
    content = message["content"]
    empty = (
        f"{path}: all messages must have non-empty content except for the optional final "
        "assistant message"
    )
    texts: list[str] = []
    if isinstance(content, str):
        if not content and not (last and role == "assistant"):
            raise invalid(empty)
        texts.append(content)
    else:
        _type(f"{path}.content", content, "list")
        if not content and not (last and role == "assistant"):
            raise invalid(empty)
        for position, block in enumerate(content):
            texts += _check_block(f"{path}.content.{position}", block, role, conv)
    conv.text_tokens += sum(count_tokens(text) for text in texts)
    if role == "user":
        conv.said = " ".join(text for text in texts if text)


def _check_block(path: str, block: object, role: str, conv: Conversation) -> list[str]:
    """Validate one content block; return its text (for the reply and token count)."""
    _type(path, block, "object")
    assert isinstance(block, dict)
    kind = block.get("type")
    if kind not in _BLOCK_KEYS:
        tags = ", ".join(f"'{tag}'" for tag in _BLOCK_KEYS)
        raise invalid(
            f"{path}: Input tag '{kind}' found using 'type' does not match any of the "
            f"expected tags: {tags}"
        )
    _extra(f"{path}.{kind}", block, _BLOCK_KEYS[kind])
    if kind == "text":
        _type(f"{path}.text.text", block.get("text"), "string")
        if not block["text"]:
            raise invalid("messages: text content blocks must be non-empty")
        return [block["text"]]
    if kind == "image":
        _check_image(f"{path}.image", block, conv)
        return []
    if kind == "tool_use":
        if role != "assistant":
            raise invalid(f"{path}: tool_use blocks are only allowed in assistant messages")
        for name in ("id", "name"):
            _type(f"{path}.tool_use.{name}", block.get(name), "string")
        _type(f"{path}.tool_use.input", block.get("input"), "object")
        return []
    if role != "user":
        raise invalid(f"{path}: tool_result blocks are only allowed in user messages")
    _type(f"{path}.tool_result.tool_use_id", block.get("tool_use_id"), "string")
    inner = block.get("content")
    if inner is None or isinstance(inner, str):
        return [inner] if inner else []
    _type(f"{path}.tool_result.content", inner, "list")
    texts: list[str] = []
    for position, item in enumerate(inner):
        item_path = f"{path}.tool_result.content.{position}"
        _type(item_path, item, "object")
        if item.get("type") == "text":
            _type(f"{item_path}.text.text", item.get("text"), "string")
            texts.append(item["text"])
        elif item.get("type") == "image":
            _check_image(f"{item_path}.image", item, conv)
        else:
            raise invalid(
                f"{item_path}: Input tag '{item.get('type')}' found using 'type' "
                "does not match any of the expected tags: 'text', 'image'"
            )
    return texts


def _check_image(path: str, block: JsonObject, conv: Conversation) -> None:
    source = block.get("source")
    if source is None:
        raise invalid(f"{path}.source: Field required")
    _type(f"{path}.source", source, "object")
    kind = source.get("type")
    if kind == "url":
        _extra(f"{path}.source.url", source, {"type", "url"})
        url = source.get("url")
        _type(f"{path}.source.url.url", url, "string")
        if not url.startswith("https://"):
            raise invalid(f"{path}.source.url.url: Only HTTPS URLs are supported")
        conv.images.append(SeenImage("url", uri=url))
        conv.image_paths.append(path)
        conv.image_tokens += image_tokens(1092, 1092)  # unknown size: a typical image
        return
    if kind == "file":
        _type(f"{path}.source.file.file_id", source.get("file_id"), "string")
        conv.images.append(SeenImage("file", uri=source["file_id"]))
        conv.image_paths.append(path)
        conv.image_tokens += image_tokens(1092, 1092)
        return
    if kind != "base64":
        raise invalid(
            f"{path}.source: Input tag '{kind}' found using 'type' does not match any of the "
            "expected tags: 'base64', 'url', 'file'"
        )
    prefix = f"{path}.source.base64"
    _extra(prefix, source, {"type", "media_type", "data"})
    media_type = source.get("media_type")
    if media_type not in MEDIA_TYPES:
        raise invalid(
            f"{prefix}.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' "
            "or 'image/webp'"
        )
    text = source.get("data")
    _type(f"{prefix}.data", text, "string")
    if len(text) > MAX_IMAGE_BASE64:
        raise invalid(
            f"{prefix}: image exceeds 5 MB maximum: {len(text)} bytes > {MAX_IMAGE_BASE64} bytes"
        )
    data = decode_base64(text)
    if data is None:
        raise invalid(f"{prefix}.data: The image data is not valid base64")
    if not matches(media_type, data):
        raise invalid(f"{prefix}.data: Image does not match the provided media type {media_type}")
    try:
        image = SeenImage.from_bytes(media_type, data)
    except UnreadableImage:
        raise invalid(f"{prefix}.data: Could not process image") from None
    conv.images.append(image)
    conv.image_paths.append(path)
    assert image.width is not None and image.height is not None
    conv.image_tokens += image_tokens(image.width, image.height)


def _check_dimensions(conv: Conversation) -> None:
    """The per-side limit depends on how many images the whole request holds."""
    many = len(conv.images) > MANY_IMAGES
    limit = MANY_IMAGES_SIDE if many else MAX_SIDE
    for image, path in zip(conv.images, conv.image_paths, strict=True):
        if image.width is not None and max(image.width, image.height or 0) > limit:
            qualifier = " for many-image requests" if many else ""
            raise invalid(
                f"{path}.source.base64.data: At least one of the image dimensions exceed max "
                f"allowed size{qualifier}: {limit} pixels"
            )


# ---------------------------------------------------------------------------- answers

_STOP_REASONS = {"end": "end_turn", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence"}


def answer(conv: Conversation) -> Reply:
    text = reply_text(conv.images, conv.said)
    return finish(text, max_tokens=conv.max_tokens, stop_sequences=conv.stop_sequences)


def message_body(message_id: str, model: str, conv: Conversation, reply: Reply) -> JsonObject:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": _STOP_REASONS[reply.stopped_by],
        "stop_sequence": reply.stop_sequence,
        "usage": {
            "input_tokens": conv.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": reply.output_tokens,
            "service_tier": "standard",
        },
    }


def stream_events(message: JsonObject) -> list[tuple[str, JsonObject]]:
    """The SSE events of a streamed ``message``: (event name, data), data carrying ``type``."""
    usage = message["usage"]
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    events: list[tuple[str, JsonObject]] = [
        ("message_start", {"message": start}),
        ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ("ping", {}),
    ]
    for piece in chunks(message["content"][0]["text"]):
        delta = {"type": "text_delta", "text": piece}
        events.append(("content_block_delta", {"index": 0, "delta": delta}))
    events += [
        ("content_block_stop", {"index": 0}),
        (
            "message_delta",
            {
                "delta": {
                    "stop_reason": message["stop_reason"],
                    "stop_sequence": message["stop_sequence"],
                },
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        ),
        ("message_stop", {}),
    ]
    return [(name, {"type": name, **data}) for name, data in events]
