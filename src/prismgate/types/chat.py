"""Chat completions as OpenAI's `/v1/chat/completions` defines them, images included."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from prismgate.types.answer import AnswerObject
from prismgate.types.meta import WithCallMeta

__all__ = [
    "AnsweredImage",
    "AnsweredImageURL",
    "AudioPart",
    "ChatChoice",
    "ChatChunk",
    "ChatCompletion",
    "ChatCompletionRequest",
    "ChatMessage",
    "ChatUsage",
    "ContentPart",
    "FilePart",
    "ImagePart",
    "ImageURL",
    "ResponseMessage",
    "TextPart",
]


class ImageURL(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Where an image is: https, http, a data URL, or gs://. `format` (LiteLLM's field)
    overrides the media type the gateway would read from the bytes."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None
    format: str | None = None


class TextPart(msgspec.Struct, tag="text", tag_field="type", kw_only=True):
    """Text in a message."""

    text: str


class ImagePart(msgspec.Struct, tag="image_url", tag_field="type", kw_only=True):
    """An image in a user message; the URL may be given as a bare string."""

    image_url: ImageURL | str

    @property
    def image(self) -> ImageURL:
        """The image reference in its object form."""
        return (
            self.image_url if isinstance(self.image_url, ImageURL) else ImageURL(url=self.image_url)
        )


class AudioPart(msgspec.Struct, tag="input_audio", tag_field="type", kw_only=True):
    """Audio input, passed through to providers that take it."""

    input_audio: dict[str, Any]


class FilePart(msgspec.Struct, tag="file", tag_field="type", kw_only=True):
    """A file input, passed through to providers that take it."""

    file: dict[str, Any]


ContentPart = TextPart | ImagePart | AudioPart | FilePart


class ChatMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One message of the conversation."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def image_parts(self) -> list[ImagePart]:
        """The images in this message, in order."""
        if isinstance(self.content, list):
            return [part for part in self.content if isinstance(part, ImagePart)]
        return []


class ChatCompletionRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An OpenAI chat completion request. `None` means the caller did not set the field;
    fields not listed here are provider parameters and travel separately."""

    model: str
    # A chat without a message has nothing to answer, for every provider.
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None

    def has_images(self) -> bool:
        """Whether any message carries an image."""
        return any(message.image_parts() for message in self.messages)


class AnsweredImageURL(AnswerObject, msgspec.Struct, kw_only=True):
    """Where an answered image is: a data URL, or a signed link to the image store."""

    url: str


class AnsweredImage(AnswerObject, msgspec.Struct, kw_only=True):
    """An image a chat model made (Gemini image models, OpenRouter's image output), in
    `message.images`, the shape OpenRouter and the peers share."""

    image_url: AnsweredImageURL
    type: str = "image_url"


class ResponseMessage(AnswerObject, msgspec.Struct, kw_only=True):
    """The assistant's answer."""

    role: str = "assistant"
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None
    # OpenAI's citations (`url_citation`, from its web-search models), kept as they came.
    annotations: list[dict[str, Any]] | None = None
    # Images the model made, where it makes them: not OpenAI's field, so left out of the
    # answer unless there are some.
    images: list[AnsweredImage] | msgspec.UnsetType = msgspec.UNSET


class ChatChoice(AnswerObject, msgspec.Struct, kw_only=True):
    """One choice of a chat completion."""

    index: int
    message: ResponseMessage
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatUsage(AnswerObject, msgspec.Struct, kw_only=True):
    """Token counts of a chat completion."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None


class ChatCompletion(AnswerObject, msgspec.Struct, WithCallMeta, kw_only=True, dict=True):
    """OpenAI's chat completion object. Answer types encode every field, as OpenAI's wire
    does (`object`, `role`, a choice's `index` are always there, even at their defaults)."""

    id: str
    created: int
    model: str
    choices: list[ChatChoice]
    object: str = "chat.completion"
    usage: ChatUsage | None = None
    system_fingerprint: str | None = None
    # OpenAI's processing tier for the call (`default`, `flex`, ...), as it answered.
    service_tier: str | None = None


class ChunkDelta(AnswerObject, msgspec.Struct, kw_only=True, omit_defaults=True):
    """What one streamed chunk adds to the answer."""

    role: str | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None
    images: list[AnsweredImage] | None = None


class ChunkChoice(AnswerObject, msgspec.Struct, kw_only=True):
    """One choice in a streamed chunk."""

    index: int = 0
    delta: ChunkDelta = msgspec.field(default_factory=ChunkDelta)
    finish_reason: str | None = None


class ChatChunk(AnswerObject, msgspec.Struct, kw_only=True):
    """One `chat.completion.chunk` of a streamed answer."""

    id: str = ""
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice] = msgspec.field(default_factory=list)
    object: str = "chat.completion.chunk"
    usage: ChatUsage | None = None
