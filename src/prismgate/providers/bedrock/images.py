"""Image generation, edits and variations on AWS Bedrock (InvokeModel), for Stability SDXL,
Stability SD3 / SD3.5 / Stable Image Ultra and Core, Amazon Titan Image Generator and
Amazon Nova Canvas.

Each family is data (`ImageWire`): its models, its field table, how its bodies are built
(`image_bodies`) and how its answer is read. Every answer is base64; images the
safety filter withheld are reported in `ImageResponse.filtered` with Bedrock's reason,
and a request Bedrock refused outright is a `ContentPolicyViolationError`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import msgspec

from prismgate.catalog import ModelInfo
from prismgate.errors import (
    APIError,
    BadRequestError,
    ContentPolicyViolationError,
    PrismgateError,
    unreadable_answer,
)
from prismgate.observability.redaction import Redactor
from prismgate.providers.base import (
    ImageCall,
    ImageEditCall,
    ImageFamily,
    ImageGenerationCall,
    ImageVariationCall,
)
from prismgate.providers.bedrock.auth import bedrock_error, call_redactor, signed_request
from prismgate.providers.bedrock.image_bodies import (
    NOVA_FIELDS,
    SD3_FIELDS,
    SDXL_FIELDS,
    TITAN_FIELDS,
    amazon_body,
    amazon_edit_body,
    amazon_variation_body,
    sd3_edit_body,
    sdxl_body,
    stability_body,
)
from prismgate.transport import Transport, UpstreamResponse, image_answer_bytes
from prismgate.types import ImageObject, ImageResponse

__all__ = ["BEDROCK_IMAGES", "WIRES", "BedrockImages", "ImageWire"]

# Cross-region inference profiles prefix the base model id (`us.amazon.nova-canvas-v1:0`).
_REGION_PREFIXES = frozenset({"us", "eu", "apac", "jp", "au", "ca", "us-gov", "global"})
# How Bedrock words a request its content filter refused (a 400 ValidationException).
_BLOCKED = re.compile(r"content filter", re.IGNORECASE)


# ---------------------------------------------------------------------------- answers


class _Artifact(msgspec.Struct, rename="camel"):
    base64: str | None = None
    finish_reason: str | None = None


class _SdxlAnswer(msgspec.Struct):
    artifacts: list[_Artifact] = msgspec.field(default_factory=list)


class _StabilityAnswer(msgspec.Struct):
    images: list[str] = msgspec.field(default_factory=list)
    finish_reasons: list[str | None] = msgspec.field(default_factory=list)


class _AmazonAnswer(msgspec.Struct):
    images: list[str] = msgspec.field(default_factory=list)
    error: str | None = None


def _response(images: list[str], filtered: list[str]) -> ImageResponse:
    response = ImageResponse(
        created=int(time.time()), data=[ImageObject(b64_json=image) for image in images]
    )
    response.filtered = tuple(filtered)
    return response


def _sdxl_answer(body: bytes, _wanted: int) -> ImageResponse:
    """`artifacts[]`: SUCCESS kept, CONTENT_FILTERED withheld (Stability sends a blurred
    picture for those), ERROR a failure."""
    images: list[str] = []
    filtered: list[str] = []
    for artifact in msgspec.json.decode(body, type=_SdxlAnswer).artifacts:
        reason = artifact.finish_reason or "SUCCESS"
        if reason == "CONTENT_FILTERED":
            filtered.append("Stability's content filter withheld the image (CONTENT_FILTERED)")
        elif reason == "SUCCESS" and artifact.base64:
            images.append(artifact.base64)
        else:
            raise APIError(
                f"bedrock's SDXL model failed to make an image (finishReason {reason}); try again",
                provider="bedrock",
            )
    return _response(images, filtered)


def _stability_answer(body: bytes, _wanted: int) -> ImageResponse:
    """`finish_reasons[i]` null: `images[i]` is good; a "Filter reason: ..." withholds it
    (a filtered request may carry no `images` at all); "Inference error" is a failure."""
    answer = msgspec.json.decode(body, type=_StabilityAnswer)
    reasons = answer.finish_reasons or [None] * len(answer.images)
    images: list[str] = []
    filtered: list[str] = []
    for index, reason in enumerate(reasons):
        if reason is None and index < len(answer.images):
            images.append(answer.images[index])
        elif reason is not None and reason.startswith("Filter reason"):
            filtered.append(reason)
        else:
            raise APIError(
                f"bedrock's Stability model failed to make an image ({reason or 'no image'}); "
                "try again",
                provider="bedrock",
            )
    return _response(images, filtered)


def _amazon_answer(body: bytes, wanted: int) -> ImageResponse:
    """`{"images": [...], "error"?}`: an `error` with no image is a refusal; with fewer
    images than asked, the missing ones were withheld for that reason."""
    answer = msgspec.json.decode(body, type=_AmazonAnswer)
    if answer.error and not answer.images:
        raise _refused(answer.error)
    missing = max(wanted - len(answer.images), 0) if answer.error else 0
    return _response(answer.images, [answer.error or ""] * missing)


def _refused(message: str) -> ContentPolicyViolationError:
    return ContentPolicyViolationError(
        f"bedrock's content filter refused the request: {message} Change the prompt (or the "
        "input image) and try again.",
        provider="bedrock",
        upstream_status=400,
        upstream_message=message,
    )


def _error(response: UpstreamResponse, redact: Redactor) -> PrismgateError:
    error = bedrock_error(response, redact)
    message = error.upstream_message or ""
    if response.status == 400 and _BLOCKED.search(message):
        return _refused(message)
    return error


# ---------------------------------------------------------------------------- families


@dataclass(frozen=True, slots=True)
class ImageWire:
    """One family's wire: which model ids it serves (by prefix), its bodies and answer."""

    family: ImageFamily
    prefixes: tuple[str, ...]
    generation: Callable[[ImageGenerationCall], dict[str, Any]]
    answer: Callable[[bytes, int], ImageResponse]
    edit: Callable[[ImageEditCall], dict[str, Any]] | None = None
    variation: Callable[[ImageVariationCall], dict[str, Any]] | None = None


def _ids(*models: str) -> tuple[str, ...]:
    return tuple(f"bedrock/{model}" for model in models)


WIRES: tuple[ImageWire, ...] = (
    ImageWire(
        ImageFamily(
            "Stability SDXL",
            _ids("stability.stable-diffusion-xl-v1", "stability.stable-diffusion-xl-v0"),
            SDXL_FIELDS,
        ),
        prefixes=("stability.stable-diffusion-xl",),
        generation=sdxl_body,
        answer=_sdxl_answer,
    ),
    ImageWire(
        ImageFamily(
            "Stability SD3 / SD3.5 Large",
            _ids("stability.sd3-5-large-v1:0", "stability.sd3-large-v1:0"),
            SD3_FIELDS,
            operations=("edit",),
        ),
        prefixes=("stability.sd3",),
        generation=stability_body,
        answer=_stability_answer,
        edit=sd3_edit_body,
    ),
    ImageWire(
        ImageFamily(
            "Stable Image Ultra / Core",
            _ids(
                "stability.stable-image-ultra-v1:1",
                "stability.stable-image-ultra-v1:0",
                "stability.stable-image-core-v1:1",
                "stability.stable-image-core-v1:0",
            ),
            SD3_FIELDS,
        ),
        prefixes=("stability.stable-image-ultra", "stability.stable-image-core"),
        generation=stability_body,
        answer=_stability_answer,
    ),
    ImageWire(
        ImageFamily(
            "Amazon Titan Image Generator",
            _ids("amazon.titan-image-generator-v2:0", "amazon.titan-image-generator-v1"),
            TITAN_FIELDS,
            operations=("edit", "variation"),
        ),
        prefixes=("amazon.titan-image-generator",),
        generation=partial(amazon_body, nova=False),
        answer=_amazon_answer,
        edit=partial(amazon_edit_body, nova=False),
        variation=partial(amazon_variation_body, nova=False),
    ),
    ImageWire(
        ImageFamily(
            "Amazon Nova Canvas",
            _ids("amazon.nova-canvas-v1:0"),
            NOVA_FIELDS,
            operations=("edit", "variation"),
        ),
        prefixes=("amazon.nova-canvas",),
        generation=partial(amazon_body, nova=True),
        answer=_amazon_answer,
        edit=partial(amazon_edit_body, nova=True),
        variation=partial(amazon_variation_body, nova=True),
    ),
)


def _base_id(model: str) -> str:
    """`arn:...:inference-profile/us.amazon.nova-canvas-v1:0` → `amazon.nova-canvas-v1:0`."""
    if model.startswith("arn:"):
        model = model.rpartition("/")[2]
    region, _, rest = model.partition(".")
    return rest if region in _REGION_PREFIXES and "." in rest else model


def wire_for(model: str, info: ModelInfo | None) -> ImageWire:
    """The family that serves `model` (an id, inference profile or ARN), else the one of
    `model_info.base_model`; a 400 naming `model` when neither is an image model here."""
    candidates = [_base_id(model)]
    if info is not None and info.base_model:
        candidates.append(_base_id(info.base_model.removeprefix("bedrock/")))
    for candidate in candidates:
        for wire in WIRES:
            if candidate.startswith(wire.prefixes):
                return wire
    families = ", ".join(wire.family.name for wire in WIRES)
    raise BadRequestError(
        f"bedrock/{model} is not an image model prismgate can call on Bedrock ({families}); "
        "for an ARN that does not name its model, set model_info.base_model",
        param="model",
        code="model_not_supported",
    )


# ---------------------------------------------------------------------------- the capability


@dataclass(frozen=True, slots=True)
class BedrockImages:
    """Generation, edits and variations over InvokeModel."""

    families: tuple[ImageFamily, ...] = tuple(wire.family for wire in WIRES)

    async def generate(self, call: ImageGenerationCall, http: Transport) -> ImageResponse:
        """Text to image."""
        wire = wire_for(call.deployment.model, call.deployment.info)
        return await _invoke(call, wire.generation(call), wire, http)

    async def edit(self, call: ImageEditCall, http: Transport) -> ImageResponse:
        """Image (and mask) to image."""
        wire = wire_for(call.deployment.model, call.deployment.info)
        if wire.edit is None:
            raise _cannot(call, "edit images")
        return await _invoke(call, wire.edit(call), wire, http)

    async def vary(self, call: ImageVariationCall, http: Transport) -> ImageResponse:
        """Variations of one image."""
        wire = wire_for(call.deployment.model, call.deployment.info)
        if wire.variation is None:
            raise _cannot(call, "make image variations")
        return await _invoke(call, wire.variation(call), wire, http)


def _cannot(call: ImageCall[Any], verb: str) -> BadRequestError:
    return BadRequestError(
        f"bedrock/{call.deployment.model} cannot {verb} on Bedrock; use "
        "amazon.nova-canvas-v1:0 or amazon.titan-image-generator-v2:0"
        + (" (or stability.sd3-5-large-v1:0 for edits)" if verb == "edit images" else ""),
        param="model",
        code="model_not_supported",
    )


async def _invoke(
    call: ImageCall[Any], body: dict[str, Any], wire: ImageWire, http: Transport
) -> ImageResponse:
    request = await signed_request(call, "invoke", msgspec.json.encode(body))
    images = call.request.n or 1
    response = await http.send(replace(request, max_answer_bytes=image_answer_bytes(images)))
    if response.status >= 400:
        raise _error(response, call_redactor(call))
    try:
        return wire.answer(response.body, images)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise unreadable_answer(
            "bedrock", response.status, f"not a {wire.family.name} answer ({exc})"
        ) from exc


BEDROCK_IMAGES = BedrockImages()
