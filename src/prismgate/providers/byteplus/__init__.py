"""ByteDance Seedream through BytePlus ModelArk: an OpenAI-like `POST /images/generations`
(under `…/api/v3`) that also edits, with reference images in the same body.

One image per call here: ModelArk makes several only in its "sequential" mode, where the
model decides from the prompt how many to draw, so the gateway fans `n` out instead.
Sizes are free `WIDTHxHEIGHT` within each model's pixel and aspect-ratio bounds (catalog
size rules, checked before the call). ModelArk's own `watermark` defaults to on; it is
sent only when the caller sets it, never injected. `seed` is refused on the 4.x models,
which ignore it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgspec

from prismgate.errors import (
    ContentPolicyViolationError,
    PrismgateError,
    UnsupportedParamsError,
    unreadable_answer,
)
from prismgate.observability.redaction import Redactor
from prismgate.providers.base import (
    CredentialSpec,
    Field,
    FieldTable,
    ImageCall,
    ImageEditCall,
    ImageFamily,
    ImageGenerationCall,
    Provider,
    build_body,
)
from prismgate.providers.image_rules import check_instructed_edit
from prismgate.providers.openai.wire import bearer, openai_error
from prismgate.transport import Transport, UpstreamRequest, UpstreamResponse, image_answer_bytes
from prismgate.types import ImageObject, ImageResponse

__all__ = ["BYTEPLUS", "SEEDREAM_FIELDS", "byteplus_error"]

_PROVIDER = "byteplus"
# ModelArk's error codes for a refused prompt, input image or result.
_SENSITIVE = "SensitiveContentDetected"
# ModelArk takes at most this many reference images (inputs and outputs total 15).
MAX_REFERENCE_IMAGES = 14
# ModelArk honours `seed` only on Seedream 3.0 and SeedEdit 3.0; the 4.x models ignore it,
# so asking for one there is refused rather than silently not honoured.
_SEEDLESS = ("seedream-4", "seedream-5")

SEEDREAM_FIELDS: FieldTable = {
    "prompt": Field("prompt"),
    "size": Field("size"),
    "response_format": Field("response_format"),
    "watermark": Field("watermark"),
}

# One family per size rule, so the README tables state each one's bounds.
SEEDREAM_FAMILIES = (
    ImageFamily("Seedream 4.5", ("byteplus/seedream-4-5-251128",), SEEDREAM_FIELDS,
                operations=("edit",)),
    ImageFamily("Seedream 4.0", ("byteplus/seedream-4-0-250828",), SEEDREAM_FIELDS,
                operations=("edit",)),
)  # fmt: skip


class _ImageError(msgspec.Struct):
    code: str | None = None
    message: str | None = None


class _Image(msgspec.Struct):
    url: str | None = None
    b64_json: str | None = None
    size: str | None = None
    error: _ImageError | None = None


class _Answer(msgspec.Struct):
    data: list[_Image] = msgspec.field(default_factory=list)
    created: int | None = None


def byteplus_error(response: UpstreamResponse, redact: Redactor) -> PrismgateError:
    """ModelArk's OpenAI-shaped `{"error": {"code","message","param","type"}}`; a
    `…SensitiveContentDetected` code is a content policy refusal."""
    error = openai_error(_PROVIDER, response, redact)
    if error.code and error.code.endswith(_SENSITIVE):
        return ContentPolicyViolationError(
            f"byteplus refused the request ({error.code}): {error.upstream_message}. Change "
            "the prompt (or the input images) and try again.",
            provider=_PROVIDER,
            code=error.code,
            upstream_status=response.status,
            upstream_message=error.upstream_message,
        )
    return error


def _answer(response: UpstreamResponse) -> ImageResponse:
    try:
        answer = msgspec.json.decode(response.body, type=_Answer)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise unreadable_answer(
            _PROVIDER, response.status, f"not ModelArk's images JSON ({exc})"
        ) from exc
    result = ImageResponse(created=answer.created or int(time.time()), output_format="jpeg")
    filtered = []
    for image in answer.data:
        if image.error is not None:  # one image of the set was refused or failed
            filtered.append(f"byteplus withheld an image ({image.error.code}): "
                            f"{image.error.message}")  # fmt: skip
        else:
            result.data.append(ImageObject(url=image.url, b64_json=image.b64_json))
    result.filtered = tuple(filtered)
    return result


async def _send(call: ImageCall[Any], http: Transport, body: dict[str, Any]) -> ImageResponse:
    request = UpstreamRequest(
        method="POST",
        url=call.credentials.api_base + "/images/generations",
        provider=_PROVIDER,
        headers={**bearer(call.credentials, call.settings), "Content-Type": "application/json"},
        body=msgspec.json.encode(body),
        timeout=call.timeout,
        connect_timeout=call.connect_timeout,
        max_answer_bytes=image_answer_bytes(1),  # one image per call
    )
    response = await http.send(request)
    if response.status >= 400:
        raise byteplus_error(response, call.redact)
    return _answer(response)


def _body(call: ImageCall[Any]) -> dict[str, Any]:
    request = call.request
    if "seed" in call.extra and call.deployment.model.startswith(_SEEDLESS):
        raise UnsupportedParamsError(
            f"byteplus/{call.deployment.model} ignores seed (ModelArk honours it only on "
            "Seedream 3.0 and SeedEdit 3.0), so the same seed would not give the same "
            "image: remove seed",
            param="seed",
        )
    values = {
        "prompt": request.prompt,
        "size": request.size,
        "response_format": request.response_format,
    }
    built = build_body(SEEDREAM_FIELDS, values, call.capabilities, call.extra)
    return {"model": call.deployment.model, **built}


@dataclass(frozen=True, slots=True)
class SeedreamImages:
    """Text-to-image and reference-image edits on one endpoint."""

    families: tuple[ImageFamily, ...] = SEEDREAM_FAMILIES

    async def generate(self, call: ImageGenerationCall, http: Transport) -> ImageResponse:
        """One image from a prompt."""
        return await _send(call, http, _body(call))

    async def edit(self, call: ImageEditCall, http: Transport) -> ImageResponse:
        """One image from the prompt and the input images as references (no mask)."""
        check_instructed_edit(call.request, "byteplus Seedream", MAX_REFERENCE_IMAGES)
        images = [image.data_url() for image in call.request.image]
        body = _body(call)
        body["image"] = images[0] if len(images) == 1 else images
        return await _send(call, http, body)


_IMAGES = SeedreamImages()

BYTEPLUS = Provider(
    name=_PROVIDER,
    translate_error=byteplus_error,
    # How other gateways and SDKs name the maker or the platform.
    aliases=("bytedance", "byteplus-modelark"),
    credentials=CredentialSpec(
        api_key_env=("BYTEPLUS_API_KEY", "ARK_API_KEY"),
        api_base_env=("BYTEPLUS_API_BASE",),
        # The Asia-Pacific (Johor) region; other regions are another api_base.
        default_api_base="https://ark.ap-southeast.bytepluses.com/api/v3",
    ),
    image_generation=_IMAGES,
    image_edit=_IMAGES,
)
