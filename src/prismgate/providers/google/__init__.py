"""Gemini `generateContent`, on Vertex AI (`vertex_ai/`) and on the Gemini API (`gemini/`).

System messages become the top-level `systemInstruction`, the assistant is the `model`,
images travel as `inlineData` (the gateway has set their true type) or, on Vertex only,
as `gs://` `fileData`; sampling fields go to `generationConfig` through a field table.
Streams (`?alt=sse`, each event a partial answer) become OpenAI chunks. Image generation
(Imagen, Gemini image models) is `images`'; addresses, credentials and Google's
error bodies are `auth`'s business.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import msgspec

from prismgate.errors import (
    APIError,
    BadRequestError,
    ContentPolicyViolationError,
    unreadable_answer,
)
from prismgate.media.images import ImageLimits, parse_data_url
from prismgate.observability.redaction import Redactor
from prismgate.providers.base import (
    ChatCall,
    CredentialSpec,
    Field,
    FieldTable,
    Provider,
    build_body,
)
from prismgate.providers.google.auth import (
    GoogleErrorDetail,
    VertexSettings,
    gemini_error,
    generate,
    generate_stream,
    status_error,
    vertex_error,
)
from prismgate.providers.google.images import (
    GoogleImageGeneration,
    gemini_image_families,
    vertex_image_families,
)
from prismgate.providers.sse import read_events, sse_data
from prismgate.transport import Transport
from prismgate.types.chat import (
    AnsweredImage,
    AnsweredImageURL,
    ChatChoice,
    ChatChunk,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    ChatUsage,
    ChunkChoice,
    ChunkDelta,
    ImagePart,
    ImageURL,
    ResponseMessage,
    TextPart,
)

__all__ = ["GEMINI", "VERTEX_AI", "GoogleChat"]

GEMINI_API_BASE = "https://generativelanguage.googleapis.com"
# Reported as the deployment's address until the location picks the regional host.
VERTEX_API_BASE = "https://aiplatform.googleapis.com"
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
# A gs:// object's type, from its name, only when the caller gave no `format`.
_EXTENSIONS = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".webp": "image/webp", ".heic": "image/heic", ".heif": "image/heif"}  # fmt: skip
_ROLES = {"user": "user", "assistant": "model"}
_RESOLUTIONS = {"low": "MEDIA_RESOLUTION_LOW", "high": "MEDIA_RESOLUTION_HIGH"}
_FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
             "IMAGE_PROHIBITED_CONTENT")  # fmt: skip
FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length"} | dict.fromkeys(
    _FILTERED, "content_filter"
)
# OpenAI fields with no generateContent meaning here: refused rather than ignored.
_UNSUPPORTED = ("logit_bias", "logprobs", "top_logprobs", "tools", "tool_choice",
                "parallel_tool_calls", "response_format")  # fmt: skip


def _stop(value: str | list[str], _: object) -> list[str]:
    return [value] if isinstance(value, str) else value


# OpenAI's sampling fields → generationConfig. max_completion_tokens comes after
# max_tokens, so it wins when both are set.
_GENERATION: FieldTable = {
    "max_tokens": Field("generationConfig.maxOutputTokens"),
    "max_completion_tokens": Field("generationConfig.maxOutputTokens"),
    "temperature": Field("generationConfig.temperature"),
    "top_p": Field("generationConfig.topP"),
    "stop": Field("generationConfig.stopSequences", _stop),
    "n": Field("generationConfig.candidateCount"),
    "presence_penalty": Field("generationConfig.presencePenalty"),
    "frequency_penalty": Field("generationConfig.frequencyPenalty"),
    "seed": Field("generationConfig.seed"),
}


def contents_body(request: ChatCompletionRequest, *, vertex: bool) -> dict[str, Any]:
    """The `generateContent` body for an OpenAI chat request (`user` is not sent: it
    labels the caller for the gateway's logs, Google has no field for it)."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    details: set[str] = set()
    for message in request.messages:
        parts = _parts(message, vertex, details)
        if message.role in ("system", "developer"):
            system += parts
        elif message.role in _ROLES and not message.tool_calls:
            if parts:  # Google refuses a turn without parts
                contents.append({"role": _ROLES[message.role], "parts": parts})
        else:
            raise BadRequestError(
                "Gemini models here take system, user and assistant messages (no tool calls)",
                param="messages",
            )
    body = build_body(_GENERATION, {n: getattr(request, n) for n in _GENERATION}, None)
    body = {"contents": contents, **({"systemInstruction": {"parts": system}} if system else {}),
            **body}  # fmt: skip
    if len(details) > 1:
        raise BadRequestError(
            "Gemini takes one media resolution per request: give every image the same detail",
            param="detail",
        )
    if details:
        body.setdefault("generationConfig", {})["mediaResolution"] = _RESOLUTIONS[details.pop()]
    return body


def _parts(message: ChatMessage, vertex: bool, details: set[str]) -> list[dict[str, Any]]:
    if not isinstance(message.content, list):
        return [{"text": message.content}] if message.content else []
    parts: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            if part.text:
                parts.append({"text": part.text})
        elif isinstance(part, ImagePart):
            image = part.image
            if image.detail in _RESOLUTIONS:
                details.add(image.detail)
            parts.append(_image_part(image, vertex))
        else:
            raise BadRequestError(
                "Gemini models here take text and images in messages", param="messages"
            )
    return parts


def _image_part(image: ImageURL, vertex: bool) -> dict[str, Any]:
    inline = parse_data_url(image.url)
    if inline is not None:  # the gateway has set its true type and fitted its size
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    if image.url.startswith("gs://") and vertex:
        return {"fileData": {"mimeType": _gs_type(image), "fileUri": image.url}}
    raise BadRequestError(
        "images go to Gemini inline (data URLs or https URLs the gateway fetches); gs:// "
        "URLs work only with Vertex AI (vertex_ai/ models)",
        param="image_url",
        code="invalid_image_url",
    )


def _gs_type(image: ImageURL) -> str:
    """A gs:// image's type: the caller's `format`, else (last resort) its extension."""
    if image.format is not None:
        if image.format not in IMAGE_TYPES:
            raise BadRequestError(
                f"image format {image.format!r} is not one Gemini takes: "
                f"{', '.join(sorted(IMAGE_TYPES))}",
                param="image_url",
                code="invalid_image_format",
            )
        return image.format
    suffix = PurePosixPath(image.url.removeprefix("gs://")).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    raise BadRequestError(
        f"cannot tell the type of the image at {image.url}: set image_url.format "
        "(for example image/jpeg)",
        param="image_url",
        code="missing_image_format",
    )


class _Blob(msgspec.Struct, rename="camel"):
    mime_type: str = "image/png"
    data: str = ""


class _Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool = False
    # An image the model made (Gemini image models).
    inline_data: _Blob | None = None


class _Content(msgspec.Struct):
    parts: list[_Part] = msgspec.field(default_factory=list)


class _Candidate(msgspec.Struct, rename="camel"):
    content: _Content = msgspec.field(default_factory=_Content)
    finish_reason: str | None = None
    index: int = 0

    def text(self) -> str:
        # Thought summaries (thinking models) are not part of the answer.
        return "".join(part.text or "" for part in self.content.parts if not part.thought)

    def images(self) -> list[AnsweredImage] | None:
        """The images the model made, as data URLs (the gateway may store and link them)."""
        made = [
            AnsweredImage(
                image_url=AnsweredImageURL(
                    url=f"data:{part.inline_data.mime_type};base64,{part.inline_data.data}"
                )
            )
            for part in self.content.parts
            if part.inline_data is not None and part.inline_data.data and not part.thought
        ]
        return made or None


class _UsageMetadata(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    total_token_count: int = 0
    thoughts_token_count: int = 0


class _PromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None
    block_reason_message: str | None = None


class GoogleAnswer(msgspec.Struct, rename="camel"):
    """A `GenerateContentResponse`: the whole answer, or one streamed part of it."""

    candidates: list[_Candidate] = msgspec.field(default_factory=list)
    prompt_feedback: _PromptFeedback | None = None
    usage_metadata: _UsageMetadata | None = None
    model_version: str = ""
    response_id: str = ""


def _blocked(provider: str, answer: GoogleAnswer) -> ContentPolicyViolationError:
    feedback = answer.prompt_feedback or _PromptFeedback()
    reason = feedback.block_reason or "BLOCKED"
    said = f" ({feedback.block_reason_message})" if feedback.block_reason_message else ""
    return ContentPolicyViolationError(
        f"{provider} blocked the prompt: {reason}{said}",
        provider=provider,
        upstream_message=reason,
    )


def _usage(answer: GoogleAnswer) -> ChatUsage | None:
    meta = answer.usage_metadata
    if meta is None:
        return None
    # Thinking tokens are billed as output, as OpenAI counts reasoning tokens.
    completion = meta.candidates_token_count + meta.thoughts_token_count
    return ChatUsage(
        prompt_tokens=meta.prompt_token_count,
        completion_tokens=completion,
        total_tokens=meta.total_token_count or meta.prompt_token_count + completion,
        completion_tokens_details=(
            {"reasoning_tokens": meta.thoughts_token_count} if meta.thoughts_token_count else None
        ),
    )


def _completion(provider: str, answer: GoogleAnswer, model: str) -> ChatCompletion:
    if not answer.candidates and answer.prompt_feedback and answer.prompt_feedback.block_reason:
        raise _blocked(provider, answer)
    choices = [
        ChatChoice(
            index=candidate.index,
            message=ResponseMessage(
                content=candidate.text() or None, images=candidate.images() or msgspec.UNSET
            ),
            finish_reason=FINISH_REASONS.get(candidate.finish_reason or "", "stop"),
        )
        for candidate in answer.candidates
    ]
    if not choices:
        raise APIError(f"{provider} answered with no candidates", provider=provider)
    return ChatCompletion(
        id=answer.response_id or f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=answer.model_version or model,
        choices=choices,
        usage=_usage(answer),
    )


@dataclass(frozen=True, slots=True)
class GoogleChat:
    """Chat over `generateContent`, on Vertex AI (`vertex=True`) or the Gemini API."""

    provider: str
    vertex: bool

    def _body(self, call: ChatCall) -> bytes:
        body = contents_body(call.request, vertex=self.vertex)
        for key, value in call.extra.items():  # provider fields; objects merge one level
            known = body.get(key)
            merge = isinstance(known, dict) and isinstance(value, dict)
            body[key] = known | value if merge else value
        return msgspec.json.encode(body)

    async def complete(self, call: ChatCall, http: Transport) -> ChatCompletion:
        """One whole answer."""
        response = await generate(call, self.provider, self._body(call), http, vertex=self.vertex)
        try:
            answer = msgspec.json.decode(response.body, type=GoogleAnswer)
        except msgspec.DecodeError as exc:
            raise unreadable_answer(self.provider, response.status, str(exc)) from exc
        return _completion(self.provider, answer, call.deployment.model)

    async def stream(self, call: ChatCall, http: Transport) -> AsyncGenerator[bytes, None]:
        """Google's partial answers as OpenAI chunks; an error event raises mid-stream."""
        body = self._body(call)
        async with generate_stream(call, self.provider, body, http, vertex=self.vertex) as upstream:
            translator = _StreamTranslator(self.provider, call.deployment.model)
            async for event in read_events(upstream.chunks()):
                for chunk in translator.feed(event.data, call.redact):
                    yield sse_data(msgspec.json.encode(chunk))
            yield sse_data(msgspec.json.encode(translator.finish()))
            yield b"data: [DONE]\n\n"


class _StreamEvent(GoogleAnswer):
    error: GoogleErrorDetail | None = None


@dataclass(slots=True)
class _StreamTranslator:
    provider: str
    model: str
    id: str = ""
    created: int = 0
    usage: ChatUsage | None = None
    finished: dict[int, str] = field(default_factory=dict)

    def feed(self, data: bytes, redact: Redactor) -> list[ChatChunk]:
        try:
            event = msgspec.json.decode(data, type=_StreamEvent)
        except msgspec.DecodeError as exc:
            raise unreadable_answer(self.provider, 200, f"an event was not JSON ({exc})") from exc
        if event.error is not None:
            raise status_error(self.provider, event.error, redact)
        if not event.candidates and event.prompt_feedback and event.prompt_feedback.block_reason:
            raise _blocked(self.provider, event)
        chunks: list[ChatChunk] = []
        if not self.id:  # the first event
            self.id = event.response_id or f"chatcmpl-{uuid.uuid4().hex}"
            self.model = event.model_version or self.model
            self.created = int(time.time())
            chunks.append(self._chunk(ChunkDelta(role="assistant", content="")))
        for candidate in event.candidates:
            if text := candidate.text():
                chunks.append(self._chunk(ChunkDelta(content=text), index=candidate.index))
            if images := candidate.images():
                chunks.append(self._chunk(ChunkDelta(images=images), index=candidate.index))
            if candidate.finish_reason:
                reason = FINISH_REASONS.get(candidate.finish_reason, "stop")
                self.finished[candidate.index] = reason
        self.usage = _usage(event) or self.usage  # cumulative: the last one is the total
        return chunks

    def finish(self) -> ChatChunk:
        """The closing chunk: each choice's finish_reason, and the usage."""
        if not self.finished:
            raise APIError(
                f"{self.provider} ended the stream before the answer was complete",
                provider=self.provider,
            )
        choices = [
            ChunkChoice(index=index, finish_reason=reason)
            for index, reason in sorted(self.finished.items())
        ]
        return ChatChunk(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=self.usage
        )

    def _chunk(self, delta: ChunkDelta, *, index: int = 0) -> ChatChunk:
        choice = ChunkChoice(index=index, delta=delta)
        return ChatChunk(id=self.id, created=self.created, model=self.model, choices=[choice])


VERTEX_AI = Provider(
    name="vertex_ai",
    translate_error=vertex_error,
    # The project, location and OAuth token are resolved per call (auth.py).
    credentials=CredentialSpec(default_api_base=VERTEX_API_BASE, key_required=False),
    chat=GoogleChat(provider="vertex_ai", vertex=True),
    settings_type=VertexSettings,
    image_generation=GoogleImageGeneration(
        "vertex_ai", vertex=True, families=vertex_image_families()
    ),
    chat_unsupported=frozenset(_UNSUPPORTED),
    # 7 MB inline per image. gs:// URLs go to Google as they are; http(s) images are
    # fetched by the gateway and sent inline.
    image_limits=ImageLimits(
        media_types=IMAGE_TYPES, max_bytes=7 * 1024 * 1024, url_schemes=frozenset({"gs"})
    ),
)

GEMINI = Provider(
    name="gemini",
    translate_error=gemini_error,
    credentials=CredentialSpec(
        api_key_env=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        api_base_env=("GEMINI_API_BASE",),
        default_api_base=GEMINI_API_BASE,
    ),
    chat=GoogleChat(provider="gemini", vertex=False),
    # Gemini's image models only: Imagen's :predict on this host is deprecated.
    image_generation=GoogleImageGeneration(
        "gemini", vertex=False, families=gemini_image_families()
    ),
    chat_unsupported=frozenset(_UNSUPPORTED),
    # Every image is inline (no gs://); 20 MB an image keeps well inside the request cap.
    image_limits=ImageLimits(
        media_types=IMAGE_TYPES, max_bytes=20 * 1024 * 1024, url_schemes=frozenset()
    ),
)
