"""Image generation on OpenRouter: a chat call with `modalities`, its drawn image taken
from `choices[0].message.images` (a data URL) into an OpenAI images answer.

`POST {api_base}/chat/completions` with `{"model", "messages": [{"role": "user",
"content": <prompt>}], "modalities": ["image", "text"]}`; `size` becomes
`image_config.aspect_ratio`. One image per call: the catalog says `max_n: 1`, so the
gateway fans `n` out.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from prismgate.catalog import ImageCapabilities
from prismgate.errors import unreadable_answer
from prismgate.observability.redaction import Redactor
from prismgate.providers.base import (
    Field,
    FieldTable,
    ImageFamily,
    ImageGenerationCall,
    build_body,
)
from prismgate.providers.image_rules import match_aspect_ratio
from prismgate.providers.openai.wire import openai_error
from prismgate.providers.openrouter.settings import openrouter_headers
from prismgate.transport import Transport, UpstreamRequest, UpstreamResponse, image_answer_bytes
from prismgate.types import ImageObject, ImageResponse
from prismgate.types.chat import ChatCompletion

__all__ = ["OPENROUTER_ASPECT_RATIOS", "OPENROUTER_IMAGE_FIELDS", "OpenRouterImages"]

# The ratios OpenRouter's `image_config.aspect_ratio` documents, for models the catalog
# does not list (a listed model's own `aspect_ratios` win).
OPENROUTER_ASPECT_RATIOS = (
    "1:1",
    "2:3",
    "3:2",
    "3:4",
    "4:3",
    "4:5",
    "5:4",
    "9:16",
    "16:9",
    "21:9",
)
# Models that answer with text as well as images; others (FLUX, Seedream) draw only.
_TEXT_TOO = ("google/", "openai/")


def _messages(prompt: Any, _capabilities: ImageCapabilities | None) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": str(prompt)}]}


def _aspect_ratio(size: Any, capabilities: ImageCapabilities | None) -> str:
    ratios = (capabilities and capabilities.aspect_ratios) or OPENROUTER_ASPECT_RATIOS
    return match_aspect_ratio(str(size), ratios)[0]


OPENROUTER_IMAGE_FIELDS: FieldTable = {
    "prompt": Field(convert=_messages, note="sent as the user message of a chat call"),
    "size": Field(
        "image_config.aspect_ratio",
        convert=_aspect_ratio,
        note="the aspect ratio of the size (a ratio within 2 % is reported as adjusted)",
    ),
}


def modalities(model: str) -> list[str]:
    """What OpenRouter's docs say to ask for: image and text from models that write too,
    image alone from those that only draw."""
    return ["image", "text"] if model.startswith(_TEXT_TOO) else ["image"]


def _decoded(data_url: str) -> str:
    """The base64 of a `data:image/...;base64,` URL (checked), or ''."""
    head, comma, data = data_url.partition(",")
    if not comma or not head.startswith("data:image/") or not head.endswith(";base64"):
        return ""
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return ""
    return data


class _InBandError(msgspec.Struct):
    code: int | str | None = None


class _MaybeFailed(msgspec.Struct):
    error: _InBandError | None = None


def _failed_in_band(response: UpstreamResponse) -> int | None:
    """The status of an error OpenRouter reports inside a 200 (it does once a model has
    started: https://openrouter.ai/docs/api/reference/errors-and-debugging.md), or None."""
    try:
        error = msgspec.json.decode(response.body, type=_MaybeFailed).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if error is None:
        return None
    code = str(error.code or "")
    return int(code) if code.isdigit() and 400 <= int(code) < 600 else 502


def _answer(response: UpstreamResponse, redact: Redactor) -> ImageResponse:
    status = _failed_in_band(response)
    if status is not None:
        failed = UpstreamResponse(status, response.headers, response.body)
        raise openai_error("openrouter", failed, redact)
    try:
        completion = msgspec.json.decode(response.body, type=ChatCompletion)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise unreadable_answer(
            "openrouter", response.status, f"not a chat completion ({exc})"
        ) from exc
    drawn = []
    for choice in completion.choices:
        images = choice.message.images
        if isinstance(images, list):
            drawn += [_decoded(image.image_url.url) for image in images]
    if not drawn or not all(drawn):
        raise unreadable_answer(
            "openrouter", response.status, "the chat answer holds no image as a base64 data URL"
        )
    return ImageResponse(created=int(time.time()), data=[ImageObject(b64_json=drawn[0])])


@dataclass(frozen=True, slots=True)
class OpenRouterImages:
    """Text-to-image through OpenRouter's chat endpoint."""

    families: tuple[ImageFamily, ...] = (
        ImageFamily(
            "Image output through chat",
            ("openrouter/google/gemini-2.5-flash-image",),
            OPENROUTER_IMAGE_FIELDS,
        ),
    )

    async def generate(self, call: ImageGenerationCall, http: Transport) -> ImageResponse:
        """One image per call."""
        model = call.deployment.model
        values = {"prompt": call.request.prompt, "size": call.request.size}
        body = {
            "model": model,
            **build_body(OPENROUTER_IMAGE_FIELDS, values, call.capabilities, call.extra),
            "modalities": modalities(model),
        }
        request = UpstreamRequest(
            method="POST",
            url=call.credentials.api_base + "/chat/completions",
            provider="openrouter",
            headers={
                **openrouter_headers(call.credentials, call.settings),
                "Content-Type": "application/json",
            },
            body=msgspec.json.encode(body),
            timeout=call.timeout,
            connect_timeout=call.connect_timeout,
            max_answer_bytes=image_answer_bytes(1),
        )
        response = await http.send(request)
        if response.status >= 400:
            raise openai_error("openrouter", response, call.redact)
        return _answer(response, call.redact)
