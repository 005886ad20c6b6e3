"""Chat completions on the OpenAI-style emulator: validation, answer body and SSE stream.

:func:`validate` checks a ``POST …/chat/completions`` body the way each flavor does
(PROVIDERS.md §1.5, §6.2) and returns what the answer needs; :func:`respond` sends the
answer, whole or streamed. The reply text is :func:`tests.emulators.vision.reply_text`,
so a test can read from the answer which images arrived and how.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from .openai_rules import ApiError, JsonObject, missing
from .server import Fault, break_stream, send, start_stream
from .vision import SeenImage, chunks, count_tokens, decode_base64, finish, reply_text, sniff

__all__ = ["ChatRequest", "respond", "stream_error_body", "validate"]

# Top-level fields OpenAI's chat endpoint knows; others are refused by openai and azure.
_FIELDS = frozenset(
    {
        "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
        "temperature", "top_p", "n", "stop", "presence_penalty", "frequency_penalty",
        "logit_bias", "logprobs", "top_logprobs", "user", "seed", "response_format", "tools",
        "tool_choice", "parallel_tool_calls", "modalities", "audio", "reasoning_effort",
        "metadata", "store", "service_tier", "prediction", "web_search_options", "verbosity",
        "functions", "function_call", "prompt_cache_key", "safety_identifier",
    }
)  # fmt: skip
_ROLES = ("system", "developer", "user", "assistant", "tool")
_USER_PARTS = ("text", "image_url", "input_audio", "file")
_DETAILS = ("auto", "low", "high")
_ACCEPTED = {"image/png", "image/jpeg", "image/gif", "image/webp"}
_XAI_ACCEPTED = {"image/png", "image/jpeg"}
_DATA_URL = re.compile(r"data:(?P<type>[^;,]*);base64,(?P<data>.*)", re.DOTALL)
# Models that predate vision refuse image parts, as gpt-3.5-turbo does.
_TEXT_ONLY = re.compile(r"gpt-3\.5")


@dataclass(slots=True)
class ChatRequest:
    """What an accepted chat body asks for."""

    model: str
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    stop: list[str] | None = None
    said: str = ""
    prompt_tokens: int = 0
    images: list[SeenImage] = field(default_factory=list)


def parse_body(raw: bytes) -> JsonObject:
    """The JSON object sent, or OpenAI's 400 for anything else."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid body: expected a JSON object.", code="invalid_type")
    return body


def _invalid(param: str, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def validate(body: JsonObject, flavor: str, *, model: str | None = None) -> ChatRequest:
    """Raise the first :class:`ApiError` ``flavor`` would give; ``model``: Azure's deployment."""
    strict = flavor in ("openai", "azure")
    if strict:
        for name in body:
            if name not in _FIELDS:
                message = f"Unrecognized request argument supplied: {name}"
                raise ApiError(400, message, param=name, code="unknown_parameter")
    if model is None:
        model = body.get("model")
        if model is None:
            raise missing("model")
        if not isinstance(model, str):
            raise _invalid("model", "Invalid type for 'model': expected a string.", "invalid_type")
    messages = body.get("messages")
    if messages is None:
        raise missing("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages", "Invalid 'messages': expected a non-empty array.")
    stream = body.get("stream") is True
    options = body.get("stream_options")
    if options is not None and not stream:
        raise _invalid(
            "stream_options", "The 'stream_options' parameter is only allowed when 'stream' is "
            "enabled.", "invalid_value",
        )  # fmt: skip
    stop = body.get("stop")
    chat = ChatRequest(
        model=model,
        stream=stream,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
        stop=[stop] if isinstance(stop, str) else stop,
    )
    for index, message in enumerate(messages):
        _check_message(f"messages[{index}]", message, chat, flavor)
    if chat.images and _TEXT_ONLY.search(model):
        raise _invalid(
            "messages", "Invalid content type. image_url is only supported by certain models."
        )
    return chat


def _check_message(path: str, message: object, chat: ChatRequest, flavor: str) -> None:
    if not isinstance(message, dict):
        raise _invalid(path, f"Invalid type for '{path}': expected an object.", "invalid_type")
    role = message.get("role")
    if role is None:
        raise missing(f"{path}.role")
    if role not in _ROLES:
        supported = ", ".join(f"'{name}'" for name in _ROLES)
        raise _invalid(
            f"{path}.role", f"Invalid value: '{role}'. Supported values are: {supported}."
        )
    content = message.get("content")
    texts: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for index, part in enumerate(content):
            texts += _check_part(f"{path}.content[{index}]", part, role, chat, flavor)
    elif content is not None or role != "assistant":
        raise _invalid(f"{path}.content", f"Invalid type for '{path}.content'.", "invalid_type")
    chat.prompt_tokens += sum(count_tokens(text) for text in texts)
    if role == "user" and texts:
        chat.said = texts[-1]


def _check_part(path: str, part: object, role: str, chat: ChatRequest, flavor: str) -> list[str]:
    if not isinstance(part, dict):
        raise _invalid(path, f"Invalid type for '{path}': expected an object.", "invalid_type")
    kind = part.get("type")
    allowed = _USER_PARTS if role == "user" else ("text", "refusal")
    if kind == "image_url" and role != "user":
        raise _invalid(
            path, f"Invalid '{path}'. Image URLs are only allowed for messages with role "
            f"'user', but this message with role '{role}' contains an image URL.",
        )  # fmt: skip
    if kind not in allowed:
        raise _invalid(f"{path}.type", f"Invalid value: '{kind}'. Supported values are: "
                       + ", ".join(f"'{name}'" for name in allowed) + ".")  # fmt: skip
    if kind == "image_url":
        _check_image(f"{path}.image_url", part.get("image_url"), chat, flavor)
        return []
    text = part.get("text")
    return [text] if isinstance(text, str) else []


def _check_image(path: str, image: object, chat: ChatRequest, flavor: str) -> None:
    if not isinstance(image, dict):
        raise _invalid(path, f"Invalid type for '{path}': expected an object.", "invalid_type")
    if flavor in ("openai", "azure"):
        for key in image:
            if key not in ("url", "detail"):
                raise _invalid(f"{path}.{key}", f"Unknown parameter: '{path}.{key}'.",
                               "unknown_parameter")  # fmt: skip
    detail = image.get("detail", "auto")
    if detail not in _DETAILS:
        raise _invalid(f"{path}.detail", f"Invalid value: '{detail}'. Supported values are: "
                       "'auto', 'low', and 'high'.")  # fmt: skip
    url = image.get("url")
    if url is None:
        raise missing(f"{path}.url")
    if not isinstance(url, str):
        raise _invalid(f"{path}.url", f"Invalid type for '{path}.url'.", "invalid_type")
    chat.prompt_tokens += 85 if detail == "low" else 255
    if url.startswith(("https://", "http://")):
        chat.images.append(SeenImage("url", uri=url))  # recorded, never fetched
        return
    match = _DATA_URL.fullmatch(url)
    if match is None:
        raise _invalid(f"{path}.url", "Invalid image URL: expected an http(s) URL or a base64 "
                       "data URL.", "invalid_image_url")  # fmt: skip
    data = decode_base64(match["data"])
    real = sniff(data) if data is not None else None
    accepted = _XAI_ACCEPTED if flavor == "xai" else _ACCEPTED
    if data is None or real not in accepted:
        raise _invalid(path, "Invalid image.", "invalid_image_format")
    if flavor == "openai" and match["type"] != real:
        raise _invalid(path, "Invalid image.", "invalid_image_format")
    chat.images.append(SeenImage.from_bytes(real, data))


# ---------------------------------------------------------------------------- answering


def _completion(chat: ChatRequest) -> JsonObject:
    reply = finish(reply_text(chat.images, chat.said), max_tokens=chat.max_tokens,
                   stop_sequences=chat.stop)  # fmt: skip
    finish_reason = "length" if reply.stopped_by == "max_tokens" else "stop"
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": chat.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": chat.prompt_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": chat.prompt_tokens + reply.output_tokens,
        },
    }


def _chunks(answer: JsonObject, include_usage: bool) -> list[JsonObject]:
    """Role first, the text in a few deltas, the finish reason, then (if asked) usage."""
    choice = answer["choices"][0]
    head = {key: answer[key] for key in ("id", "created", "model")}
    head["object"] = "chat.completion.chunk"
    deltas: list[tuple[JsonObject, str | None]] = [({"role": "assistant", "content": ""}, None)]
    deltas += [({"content": piece}, None) for piece in chunks(choice["message"]["content"])]
    deltas.append(({}, choice["finish_reason"]))
    events = []
    for delta, reason in deltas:
        event = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}
        if include_usage:
            event["usage"] = None  # as OpenAI does: null on every chunk but the last
        events.append(event)
    if include_usage:
        events.append({**head, "choices": [], "usage": answer["usage"]})
    return events


def stream_error_body(message: str | None) -> JsonObject:
    """The error event OpenAI sends when a stream fails after it began."""
    text = message or "The server had an error while processing your request."
    return {"error": {"message": text, "type": "server_error", "param": None, "code": None}}


async def respond(
    request: web.Request, chat: ChatRequest, fault: Fault | None
) -> web.StreamResponse:
    """The answer; ``truncate`` and ``stream_error`` faults act after the first text delta."""
    answer = _completion(chat)
    if not chat.stream:
        return web.json_response(answer)
    response = await start_stream(request, "text/event-stream", {"Cache-Control": "no-cache"})
    for index, event in enumerate(_chunks(answer, chat.include_usage)):
        await send(response, f"data: {json.dumps(event)}\n\n".encode())
        if index == 1 and fault is not None and fault.kind == "truncate":
            return break_stream(request, response)
        if index == 1 and fault is not None and fault.kind == "stream_error":
            error = json.dumps(stream_error_body(fault.message))
            await send(response, f"data: {error}\n\n".encode())
            await response.write_eof()
            return response
    await send(response, b"data: [DONE]\n\n")
    await response.write_eof()
    return response
