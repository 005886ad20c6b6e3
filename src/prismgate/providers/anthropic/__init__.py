"""Anthropic's Messages API: `system` at the top level, images as base64 or URL sources,
`max_tokens` required, and its own event stream translated into OpenAI chunks."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import msgspec

from prismgate.errors import (
    BadRequestError,
    PrismgateError,
    UnsupportedParamsError,
    from_upstream,
    unreadable_answer,
)
from prismgate.media.images import ImageLimits, parse_data_url
from prismgate.observability.redaction import Redactor
from prismgate.providers.base import (
    ChatCall,
    Credentials,
    CredentialSpec,
    Provider,
    ProviderSettings,
)
from prismgate.providers.sse import read_events, sse_data
from prismgate.transport import Transport, UpstreamRequest, UpstreamResponse, retry_after_seconds
from prismgate.types.chat import (
    ChatChoice,
    ChatChunk,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    ChatUsage,
    ChunkChoice,
    ChunkDelta,
    ImagePart,
    ResponseMessage,
    TextPart,
)

__all__ = ["ANTHROPIC"]

API_VERSION = "2023-06-01"
# When neither the caller nor the catalog says, the answer may be this long.
DEFAULT_MAX_TOKENS = 4096
_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
    "model_context_window_exceeded": "length",
}
# OpenAI fields with no Anthropic meaning: refused (or dropped) rather than ignored.
_UNSUPPORTED = ("presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "seed")


def _headers(credentials: Credentials, _settings: ProviderSettings) -> dict[str, str]:
    return {
        "x-api-key": credentials.api_key or "",
        "anthropic-version": API_VERSION,
        "content-type": "application/json",
    }


def _content_blocks(message: ChatMessage) -> list[dict[str, Any]] | str:
    if not isinstance(message.content, list):
        return message.content or ""
    blocks: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(_image_block(part))
        else:
            raise BadRequestError(
                "Anthropic models take text and images in messages, not audio or files",
                param="messages",
            )
    return blocks


def _image_block(part: ImagePart) -> dict[str, Any]:
    url = part.image.url
    inline = parse_data_url(url)
    if inline is not None:  # the gateway has set its true type and fitted its size
        media_type, data = inline
        return {"type": "image", "source": {"type": "base64", "media_type": media_type,
                                            "data": data}}  # fmt: skip
    if url.startswith("https://"):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise BadRequestError(
        "Anthropic takes images as https URLs or data URLs; send one of those",
        param="image_url",
        code="invalid_image_url",
    )


def _tool_message(message: ChatMessage) -> dict[str, Any]:
    content = message.content if isinstance(message.content, str) else ""
    return {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": message.tool_call_id or "", "content": content}
        ],
    }


def _assistant_message(message: ChatMessage) -> dict[str, Any]:
    blocks = _content_blocks(message)
    if not message.tool_calls:
        return {"role": "assistant", "content": blocks}
    content = [{"type": "text", "text": blocks}] if isinstance(blocks, str) and blocks else []
    if isinstance(blocks, list):
        content = blocks
    for tool_call in message.tool_calls:
        function = tool_call.get("function", {})
        content.append({
            "type": "tool_use",
            "id": tool_call.get("id", ""),
            "name": function.get("name", ""),
            "input": msgspec.json.decode(function.get("arguments") or "{}"),
        })  # fmt: skip
    return {"role": "assistant", "content": content}


def messages_body(request: ChatCompletionRequest, model: str, max_tokens: int) -> dict[str, Any]:
    """The Messages API body for an OpenAI chat request."""
    if request.n not in (None, 1):
        raise UnsupportedParamsError("Anthropic models make one choice per call (n=1)", param="n")
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role in ("system", "developer"):
            blocks = _content_blocks(message)
            system.append(blocks if isinstance(blocks, str) else " ".join(
                b["text"] for b in blocks if b["type"] == "text"))  # fmt: skip
        elif message.role == "tool":
            messages.append(_tool_message(message))
        elif message.role == "assistant":
            messages.append(_assistant_message(message))
        else:
            messages.append({"role": "user", "content": _content_blocks(message)})
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": request.max_completion_tokens or request.max_tokens or max_tokens,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop is not None:
        body["stop_sequences"] = [request.stop] if isinstance(request.stop, str) else request.stop
    if request.user is not None:
        body["metadata"] = {"user_id": request.user}
    if request.tools:
        body["tools"] = [
            {"name": t["function"]["name"], "description": t["function"].get("description", ""),
             "input_schema": t["function"].get("parameters", {"type": "object"})}
            for t in request.tools
        ]  # fmt: skip
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice(request.tool_choice)
    return body


def _tool_choice(choice: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(choice, dict):
        return {"type": "tool", "name": choice.get("function", {}).get("name", "")}
    return {"type": {"required": "any"}.get(choice, choice)}


class _Block(msgspec.Struct):
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None


class _Usage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0


class _Message(msgspec.Struct):
    id: str
    model: str
    content: list[_Block]
    stop_reason: str | None = None
    usage: _Usage = msgspec.field(default_factory=_Usage)


class _ErrorDetail(msgspec.Struct):
    type: str = "api_error"
    message: str = ""


class _Error(msgspec.Struct):
    error: _ErrorDetail = msgspec.field(default_factory=_ErrorDetail)


def anthropic_error(response: UpstreamResponse, redact: Redactor) -> PrismgateError:
    """Anthropic's `{"type": "error", "error": {type, message}}`, into the tree."""
    try:
        detail = msgspec.json.decode(response.body, type=_Error).error
    except msgspec.DecodeError:
        detail = _ErrorDetail(message=response.body[:300].decode("utf-8", "replace"))
    return from_upstream(
        response.status,
        redact(detail.message or detail.type),
        provider="anthropic",
        code=detail.type,
        retry_after=retry_after_seconds(response.headers),
    )


def _usage(usage: _Usage) -> ChatUsage:
    return ChatUsage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.input_tokens + usage.output_tokens,
    )


def _completion(message: _Message) -> ChatCompletion:
    text = "".join(block.text or "" for block in message.content if block.type == "text")
    tool_calls = [
        {"id": block.id, "type": "function",
         "function": {"name": block.name, "arguments": msgspec.json.encode(block.input).decode()}}
        for block in message.content if block.type == "tool_use"
    ]  # fmt: skip
    return ChatCompletion(
        id=message.id,
        created=int(time.time()),
        model=message.model,
        choices=[
            ChatChoice(
                index=0,
                message=ResponseMessage(content=text or None, tool_calls=tool_calls or None),
                finish_reason=_STOP_REASONS.get(message.stop_reason or "", "stop"),
            )
        ],
        usage=_usage(message.usage),
    )


@dataclass(frozen=True, slots=True)
class AnthropicChat:
    """Chat over the Messages API."""

    def _request(self, call: ChatCall, *, stream: bool) -> UpstreamRequest:
        info = call.deployment.info
        default = (info.max_output_tokens if info else None) or DEFAULT_MAX_TOKENS
        body = messages_body(call.request, call.deployment.model, default)
        body.update(call.extra)
        if stream:
            body["stream"] = True
        return UpstreamRequest(
            method="POST",
            url=call.credentials.api_base + "/v1/messages",
            provider="anthropic",
            headers=_headers(call.credentials, call.settings),
            body=msgspec.json.encode(body),
            timeout=call.timeout,
            connect_timeout=call.connect_timeout,
        )

    async def complete(self, call: ChatCall, http: Transport) -> ChatCompletion:
        """One whole answer."""
        response = await http.send(self._request(call, stream=False))
        if response.status >= 400:
            raise anthropic_error(response, call.redact)
        try:
            message = msgspec.json.decode(response.body, type=_Message)
        except msgspec.DecodeError as exc:
            raise unreadable_answer(
                "anthropic", response.status, f"not an Anthropic message ({exc})"
            ) from exc
        return _completion(message)

    async def stream(self, call: ChatCall, http: Transport) -> AsyncGenerator[bytes, None]:
        """Anthropic's events as OpenAI chunks; an `error` event raises mid-stream."""
        async with http.stream(self._request(call, stream=True)) as upstream:
            if upstream.status >= 400:
                failed = UpstreamResponse(upstream.status, upstream.headers, await upstream.read())
                raise anthropic_error(failed, call.redact)
            translator = _StreamTranslator(created=int(time.time()))
            async for event in read_events(upstream.chunks()):
                for chunk in translator.feed(event.event, event.data, call.redact):
                    yield sse_data(msgspec.json.encode(chunk))
            yield b"data: [DONE]\n\n"


@dataclass(slots=True)
class _StreamTranslator:
    created: int
    id: str = ""
    model: str = ""
    input_tokens: int = 0

    def feed(self, event: str, data: bytes, redact: Redactor) -> list[ChatChunk]:
        try:
            payload: dict[str, Any] = msgspec.json.decode(data, type=dict) if data else {}
        except msgspec.DecodeError as exc:
            raise unreadable_answer("anthropic", 200, f"an event was not JSON ({exc})") from exc
        if event == "message_start":
            message = payload.get("message", {})
            self.id, self.model = message.get("id", ""), message.get("model", "")
            self.input_tokens = message.get("usage", {}).get("input_tokens", 0)
            return [self._chunk(ChunkDelta(role="assistant", content=""))]
        if event == "content_block_delta" and payload.get("delta", {}).get("type") == "text_delta":
            return [self._chunk(ChunkDelta(content=payload["delta"]["text"]))]
        if event == "message_delta":
            output = payload.get("usage", {}).get("output_tokens", 0)
            reason = _STOP_REASONS.get(payload.get("delta", {}).get("stop_reason") or "", "stop")
            usage = _usage(_Usage(input_tokens=self.input_tokens, output_tokens=output))
            return [self._chunk(ChunkDelta(), finish_reason=reason, usage=usage)]
        if event == "error":
            detail = payload.get("error", {})
            raise from_upstream(
                529 if detail.get("type") == "overloaded_error" else 500,
                redact(str(detail.get("message", "the stream failed"))),
                provider="anthropic",
                code=detail.get("type"),
            )
        return []  # ping, content_block_start/stop, message_stop

    def _chunk(
        self, delta: ChunkDelta, *, finish_reason: str | None = None, usage: ChatUsage | None = None
    ) -> ChatChunk:
        choice = ChunkChoice(delta=delta, finish_reason=finish_reason)
        return ChatChunk(id=self.id, created=self.created, model=self.model, choices=[choice],
                         usage=usage)  # fmt: skip


ANTHROPIC = Provider(
    name="anthropic",
    translate_error=anthropic_error,
    credentials=CredentialSpec(
        api_key_env=("ANTHROPIC_API_KEY",),
        api_base_env=("ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"),
        default_api_base="https://api.anthropic.com",
    ),
    chat=AnthropicChat(),
    chat_unsupported=frozenset(_UNSUPPORTED),
    # 5 MB an image, at most 8000 px a side, and only these four types.
    image_limits=ImageLimits(
        media_types=frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"}),
        max_bytes=5 * 1024 * 1024,
        max_side=8000,
    ),
)
