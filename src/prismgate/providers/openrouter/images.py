"""Images on OpenRouter's Image API: `POST {api_base}/images` generates, and edits when
the body carries the input images as `input_references`.

The body is OpenRouter's normalized one (`model`, `prompt`, `n`, `size`, `quality`,
`background`, `output_format`, `output_compression`, `input_references`; `resolution`,
`aspect_ratio` and `seed` as extras); OpenRouter fits it to the model's own provider.
`size` is sent as given: OpenRouter documents it as the shorthand for a resolution tier
and an aspect ratio, and the catalog's ratios (checked before the call) are the ones the
model makes. The answer is `{"created", "data": [{"b64_json"}], "usage": {..., "cost"}}`;
the cost OpenRouter reports is what the call cost.
(https://openrouter.ai/docs/api/api-reference/images/generate-an-image)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgspec

from prismgate.errors import unreadable_answer
from prismgate.observability.redaction import Redactor
from prismgate.providers.base import (
    Field,
    FieldTable,
    ImageCall,
    ImageEditCall,
    ImageFamily,
    ImageGenerationCall,
    build_body,
)
from prismgate.providers.image_rules import check_instructed_edit
from prismgate.providers.openai.wire import in_band_error, openai_error
from prismgate.providers.openrouter.settings import openrouter_headers
from prismgate.transport import Transport, UpstreamRequest, UpstreamResponse, image_answer_bytes
from prismgate.types import ImageObject, ImageResponse, InputImage

__all__ = ["MAX_INPUT_REFERENCES", "OPENROUTER_IMAGE_FIELDS", "OpenRouterImages"]

_PROVIDER = "openrouter"
# The most reference images one call takes.
MAX_INPUT_REFERENCES = 16

OPENROUTER_IMAGE_FIELDS: FieldTable = {
    "prompt": Field("prompt"),
    "n": Field("n", note="1-10; the gateway makes several calls for a model that draws one"),
    "size": Field(
        "size",
        note="OpenRouter fits it to the model's nearest aspect ratio and resolution tier "
        "(512, 1K, 2K, 4K)",
    ),
    "quality": Field("quality"),
    "background": Field("background"),
    "output_format": Field("output_format"),
    "output_compression": Field("output_compression"),
    "seed": Field("seed"),
    "resolution": Field("resolution"),
    "aspect_ratio": Field("aspect_ratio"),
}


class _Image(msgspec.Struct):
    b64_json: str | None = None


class _Usage(msgspec.Struct):
    cost: float | None = None


class _Answer(msgspec.Struct):
    data: list[_Image] = msgspec.field(default_factory=list)
    created: int | None = None
    usage: _Usage | None = None


def _answer(
    response: UpstreamResponse, output_format: str | None, redact: Redactor
) -> ImageResponse:
    try:
        answer = msgspec.json.decode(response.body, type=_Answer)
    except msgspec.DecodeError as exc:
        raise unreadable_answer(
            _PROVIDER, response.status, f"not OpenRouter's images JSON ({exc})"
        ) from exc
    if not answer.data and (failed := in_band_error(_PROVIDER, response, redact)):
        raise failed  # an error once the model had started, inside a 200
    if not answer.data or not all(image.b64_json for image in answer.data):
        raise unreadable_answer(_PROVIDER, response.status, "the answer holds no base64 image")
    result = ImageResponse(
        created=answer.created or int(time.time()),
        data=[ImageObject(b64_json=image.b64_json) for image in answer.data],
        output_format=output_format,
    )
    result.billed_cost = answer.usage.cost if answer.usage else None
    return result


def _reference(image: InputImage) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": image.data_url()}}


def _values(call: ImageCall[Any]) -> dict[str, Any]:
    request = call.request
    return {
        "prompt": request.prompt,
        "n": request.n,
        "size": request.size,
        "quality": request.quality,
        "background": request.background,
        "output_format": request.output_format,
        "output_compression": request.output_compression,
    }


async def _send(call: ImageCall[Any], http: Transport, body: dict[str, Any]) -> ImageResponse:
    request = UpstreamRequest(
        method="POST",
        url=call.credentials.api_base + "/images",
        provider=_PROVIDER,
        headers={
            **openrouter_headers(call.credentials, call.settings),
            "Content-Type": "application/json",
        },
        body=msgspec.json.encode(body),
        timeout=call.timeout,
        connect_timeout=call.connect_timeout,
        max_answer_bytes=image_answer_bytes(call.request.n or 1),
    )
    response = await http.send(request)
    if response.status >= 400:
        raise openai_error(_PROVIDER, response, call.redact)
    return _answer(response, call.request.output_format, call.redact)


def _body(call: ImageCall[Any]) -> dict[str, Any]:
    built = build_body(OPENROUTER_IMAGE_FIELDS, _values(call), call.capabilities, call.extra)
    return {"model": call.deployment.model, **built}


@dataclass(frozen=True, slots=True)
class OpenRouterImages:
    """Text-to-image and reference-image edits on OpenRouter's one images endpoint."""

    families: tuple[ImageFamily, ...] = (
        ImageFamily(
            "Image API",
            (
                "openrouter/google/gemini-2.5-flash-image",
                "openrouter/bytedance-seed/seedream-4.5",
            ),
            OPENROUTER_IMAGE_FIELDS,
            operations=("edit",),
        ),
    )

    async def generate(self, call: ImageGenerationCall, http: Transport) -> ImageResponse:
        """Images from a prompt."""
        return await _send(call, http, _body(call))

    async def edit(self, call: ImageEditCall, http: Transport) -> ImageResponse:
        """Images from the prompt and the input images as references (no mask)."""
        check_instructed_edit(call.request, _PROVIDER, MAX_INPUT_REFERENCES)
        body = _body(call)
        body["input_references"] = [_reference(image) for image in call.request.image]
        return await _send(call, http, body)
