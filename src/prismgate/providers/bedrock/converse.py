"""Bedrock's Converse wire shapes, with no I/O: an OpenAI chat request as a Converse body,
a Converse answer as a chat completion, and ConverseStream's events as OpenAI chunks."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from prismgate.errors import (
    APIError,
    BadRequestError,
    UnsupportedParamsError,
    from_upstream,
    unreadable_answer,
)
from prismgate.media.images import parse_data_url
from prismgate.observability.redaction import Redactor
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

__all__ = ["FORMATS", "MAX_IMAGES_PER_MESSAGE", "StreamTranslator", "completion", "converse_body"]

MAX_IMAGES_PER_MESSAGE = 20
# Media type → Converse image format.
FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    "model_context_window_exceeded": "length",
}
# OpenAI fields with no Converse meaning: refused rather than ignored.
CHAT_UNSUPPORTED = (
    "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "seed",
)  # fmt: skip
# Converse fields a caller may set as provider parameters; the rest are the model's own
# (`additionalModelRequestFields`: top_k, thinking, ...).
_CONVERSE_FIELDS = frozenset({
    "guardrailConfig", "performanceConfig", "requestMetadata", "promptVariables",
    "additionalModelResponseFieldPaths", "serviceTier",
})  # fmt: skip
# What a mid-stream exception would have been as an HTTP answer.
_STREAM_STATUS = {
    "throttlingException": 429, "validationException": 400, "modelTimeoutException": 408,
    "serviceUnavailableException": 503, "internalServerException": 500,
}  # fmt: skip


# ---------------------------------------------------------------------------- request body


def _texts(message: ChatMessage) -> list[str]:
    if not isinstance(message.content, list):
        return [message.content] if message.content else []
    if any(not isinstance(part, TextPart) for part in message.content):
        raise BadRequestError(
            f"Bedrock takes only text in {message.role} messages", param="messages"
        )
    return [part.text for part in message.content if isinstance(part, TextPart) and part.text]


def _image_block(part: ImagePart) -> dict[str, Any]:
    # The gateway has fetched every remote image and set each data URL's true type.
    inline = parse_data_url(part.image.url)
    fmt = FORMATS.get(inline[0]) if inline else None
    if inline is None or fmt is None:
        raise BadRequestError(
            "Bedrock takes images as bytes: send a data URL or an http(s) URL of a PNG, "
            "JPEG, GIF or WebP image",
            param="image_url",
            code="invalid_image_url",
        )
    return {"image": {"format": fmt, "source": {"bytes": inline[1]}}}


def _user_blocks(message: ChatMessage) -> list[dict[str, Any]]:
    if not isinstance(message.content, list):
        return [{"text": message.content}] if message.content else []
    blocks: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            blocks.append({"text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(_image_block(part))
        else:
            raise BadRequestError(
                "Bedrock models take text and images in messages, not audio or files",
                param="messages",
            )
    return blocks


def _assistant_blocks(message: ChatMessage) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"text": text} for text in _texts(message)]
    for tool_call in message.tool_calls or []:
        function = tool_call.get("function", {})
        try:
            arguments = msgspec.json.decode(function.get("arguments") or "{}")
        except msgspec.DecodeError:
            raise BadRequestError(
                "a tool call's arguments are not valid JSON", param="messages"
            ) from None
        use = {"toolUseId": tool_call.get("id", ""), "name": function.get("name", "")}
        blocks.append({"toolUse": {**use, "input": arguments}})
    return blocks


def _turn(message: ChatMessage) -> tuple[str, list[dict[str, Any]]]:
    if message.role == "user":
        return "user", _user_blocks(message)
    if message.role == "assistant":
        return "assistant", _assistant_blocks(message)
    if message.role == "tool":
        result = [{"text": text} for text in _texts(message)]
        return "user", [{"toolResult": {"toolUseId": message.tool_call_id or "",
                                        "content": result}}]  # fmt: skip
    raise BadRequestError(
        f"Bedrock has no {message.role!r} messages; use tool messages", param="messages"
    )


def _refuse_unsupported(request: ChatCompletionRequest) -> None:
    # Fields with no meaning at all are the gateway's to refuse or drop (CHAT_UNSUPPORTED);
    # these are values Converse cannot honour.
    if request.n not in (None, 1):
        raise UnsupportedParamsError("Bedrock makes one choice per call (n=1)", param="n")
    if request.response_format is not None and request.response_format.get("type") != "text":
        raise UnsupportedParamsError(
            "Bedrock's Converse API has no response_format; describe the format in the prompt",
            param="response_format",
        )
    if request.parallel_tool_calls is False:
        raise UnsupportedParamsError(
            "Bedrock cannot forbid parallel tool calls", param="parallel_tool_calls"
        )


def _tool_config(request: ChatCompletionRequest) -> dict[str, Any]:
    specs = []
    for tool in request.tools or []:
        function = tool.get("function")
        if tool.get("type") != "function" or not isinstance(function, dict):
            raise BadRequestError("Bedrock takes function tools only", param="tools")
        spec = {
            "name": function.get("name", ""),
            "inputSchema": {
                "json": function.get("parameters") or {"type": "object", "properties": {}}
            },
        }
        if function.get("description"):
            spec["description"] = function["description"]
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    choice = request.tool_choice
    if isinstance(choice, dict):
        config["toolChoice"] = {"tool": {"name": choice.get("function", {}).get("name", "")}}
    elif choice in ("auto", "required"):
        config["toolChoice"] = {"auto": {}} if choice == "auto" else {"any": {}}
    elif choice is not None:
        raise BadRequestError(
            f"Bedrock has no tool_choice {choice!r}; leave out the tools instead",
            param="tool_choice",
        )
    return config


def converse_body(request: ChatCompletionRequest, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The Converse body for an OpenAI chat request (the model id travels in the path)."""
    _refuse_unsupported(request)
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role in ("system", "developer"):
            system += [{"text": text} for text in _texts(message)]
            continue
        role, blocks = _turn(message)
        if messages and messages[-1]["role"] == role:  # Converse turns must alternate
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})
    for index, turn in enumerate(messages):
        images = sum("image" in block for block in turn["content"])
        if images > MAX_IMAGES_PER_MESSAGE:
            raise BadRequestError(
                f"Bedrock takes at most {MAX_IMAGES_PER_MESSAGE} images per message; "
                f"message {index} has {images}",
                param="messages",
                code="too_many_images",
            )
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    stop = [request.stop] if isinstance(request.stop, str) else request.stop
    config = {
        "maxTokens": request.max_completion_tokens or request.max_tokens,
        "temperature": request.temperature,
        "topP": request.top_p,
        "stopSequences": stop,
    }
    if inference := {key: value for key, value in config.items() if value is not None}:
        body["inferenceConfig"] = inference
    if request.tools:
        body["toolConfig"] = _tool_config(request)
    elif request.tool_choice is not None:
        raise BadRequestError("tool_choice needs tools", param="tool_choice")
    model_fields = dict(extra.get("additionalModelRequestFields") or {})
    for key, value in extra.items():
        if key in _CONVERSE_FIELDS:
            body[key] = value
        elif key != "additionalModelRequestFields":
            model_fields[key] = value
    if model_fields:
        body["additionalModelRequestFields"] = model_fields
    return body


# ---------------------------------------------------------------------------- answers


class _ToolUse(msgspec.Struct, rename="camel"):
    tool_use_id: str
    name: str
    input: Any = None


class _Block(msgspec.Struct, rename="camel"):
    text: str | None = None
    tool_use: _ToolUse | None = None


class _Message(msgspec.Struct):
    content: list[_Block] = msgspec.field(default_factory=list)


class _Output(msgspec.Struct):
    message: _Message = msgspec.field(default_factory=_Message)


class _Usage(msgspec.Struct, rename="camel"):
    input_tokens: int = 0
    output_tokens: int = 0


class _Answer(msgspec.Struct, rename="camel"):
    output: _Output = msgspec.field(default_factory=_Output)
    stop_reason: str = "end_turn"
    usage: _Usage = msgspec.field(default_factory=_Usage)


def _usage(usage: _Usage) -> ChatUsage:
    return ChatUsage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.input_tokens + usage.output_tokens,
    )


def completion(body: bytes, completion_id: str, model: str) -> ChatCompletion:
    """A Converse answer as an OpenAI chat completion."""
    answer = msgspec.json.decode(body, type=_Answer)
    blocks = answer.output.message.content
    text = "".join(block.text or "" for block in blocks)
    tool_calls = [
        {"id": use.tool_use_id, "type": "function",
         "function": {"name": use.name, "arguments": msgspec.json.encode(use.input).decode()}}
        for use in (block.tool_use for block in blocks) if use is not None
    ]  # fmt: skip
    message = ResponseMessage(content=text or None, tool_calls=tool_calls or None)
    reason = _STOP_REASONS.get(answer.stop_reason, "stop")
    return ChatCompletion(
        id=completion_id,
        created=int(time.time()),
        model=model,
        choices=[ChatChoice(index=0, message=message, finish_reason=reason)],
        usage=_usage(answer.usage),
    )


# ---------------------------------------------------------------------------- streams


@dataclass(slots=True)
class StreamTranslator:
    """ConverseStream's events (decoded frames) → OpenAI chunks: the role first, content
    and tool-call deltas, then finish_reason with usage. An exception frame raises."""

    id: str
    created: int
    model: str
    reason: str | None = None
    done: bool = False
    # contentBlockIndex → the OpenAI index of the tool call it carries.
    tools: dict[int, int] = field(default_factory=dict)

    def feed(self, headers: Mapping[str, Any], data: bytes, redact: Redactor) -> list[ChatChunk]:
        """The chunks one event frame makes."""
        try:
            payload: dict[str, Any] = msgspec.json.decode(data, type=dict) if data else {}
        except msgspec.DecodeError as exc:
            raise unreadable_answer("bedrock", 200, f"an event was not JSON ({exc})") from exc
        kind = headers.get(":message-type")
        if kind in ("exception", "error"):
            name = str(headers.get(":exception-type") or headers.get(":error-code") or "")
            status = payload.get("originalStatusCode") or _STREAM_STATUS.get(name, 500)
            message = payload.get("message") or headers.get(":error-message") or name
            raise from_upstream(
                int(status),
                redact(str(message or "the stream failed")),
                provider="bedrock",
                code=name[:1].upper() + name[1:] or None,
            )
        event = headers.get(":event-type")
        if event == "messageStart":
            return [self._chunk(ChunkDelta(role="assistant", content=""))]
        if event == "contentBlockStart" and "toolUse" in payload.get("start", {}):
            use, block = payload["start"]["toolUse"], payload.get("contentBlockIndex", 0)
            self.tools[block] = len(self.tools)
            call = {"index": self.tools[block], "id": use.get("toolUseId", ""), "type": "function",
                    "function": {"name": use.get("name", ""), "arguments": ""}}  # fmt: skip
            return [self._chunk(ChunkDelta(tool_calls=[call]))]
        if event == "contentBlockDelta":
            return self._delta(payload.get("delta", {}), payload.get("contentBlockIndex", 0))
        if event == "messageStop":
            self.reason = _STOP_REASONS.get(payload.get("stopReason", ""), "stop")
        elif event == "metadata" and self.reason is not None:
            self.done = True
            usage = _usage(msgspec.convert(payload.get("usage", {}), _Usage))
            return [self._chunk(ChunkDelta(), finish_reason=self.reason, usage=usage)]
        return []  # contentBlockStop, reasoning deltas

    def _delta(self, delta: dict[str, Any], block: int) -> list[ChatChunk]:
        if "text" in delta:
            return [self._chunk(ChunkDelta(content=delta["text"]))]
        if "toolUse" in delta and block in self.tools:
            call = {"index": self.tools[block],
                    "function": {"arguments": delta["toolUse"].get("input", "")}}  # fmt: skip
            return [self._chunk(ChunkDelta(tool_calls=[call]))]
        return []

    def finish(self) -> Iterator[ChatChunk]:
        """The closing chunk when no metadata event carried it; an error if the stream
        ended before Bedrock said why it stopped."""
        if self.reason is None:
            raise APIError("bedrock ended the stream before the answer was complete",
                           provider="bedrock")  # fmt: skip
        if not self.done:
            yield self._chunk(ChunkDelta(), finish_reason=self.reason)

    def _chunk(
        self, delta: ChunkDelta, *, finish_reason: str | None = None, usage: ChatUsage | None = None
    ) -> ChatChunk:
        choice = ChunkChoice(delta=delta, finish_reason=finish_reason)
        return ChatChunk(id=self.id, created=self.created, model=self.model, choices=[choice],
                         usage=usage)  # fmt: skip
