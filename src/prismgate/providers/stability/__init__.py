"""Stability AI's own REST API (v2beta Stable Image): multipart forms in, base64 JSON out.

Every call is `multipart/form-data`, even without a file, and makes one image (the gateway
fans out `n`). Ultra and Core have their own paths; the SD3.5 models share `/sd3` and are
told apart by the `model` field, which is always sent. Image-to-image (`/v1/images/edits`)
is served by the SD3.5 models: the input image, a `strength`, and no aspect ratio.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from prismgate.catalog import ImageCapabilities
from prismgate.errors import (
    BadRequestError,
    ContentPolicyViolationError,
    PrismgateError,
    UnsupportedParamsError,
    from_upstream,
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
from prismgate.providers.image_rules import match_aspect_ratio
from prismgate.providers.openai.wire import models_probe
from prismgate.transport import (
    Transport,
    UpstreamRequest,
    UpstreamResponse,
    image_answer_bytes,
    multipart_body,
    retry_after_seconds,
)
from prismgate.types import ImageObject, ImageResponse, InputImage

__all__ = ["STABILITY", "STABILITY_ASPECT_RATIOS", "STABILITY_FAMILIES", "stability_error"]

# The ratios Stability documents, for models the catalog does not list.
STABILITY_ASPECT_RATIOS = ("1:1", "16:9", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
# Image-to-image needs a strength; when the caller gives none, the input image keeps its
# composition but the prompt still changes it visibly.
DEFAULT_STRENGTH = 0.7
_GENERATE = "/v2beta/stable-image/generate/"


def _aspect_ratio(size: Any, capabilities: ImageCapabilities | None) -> str:
    ratios = (capabilities and capabilities.aspect_ratios) or STABILITY_ASPECT_RATIOS
    return match_aspect_ratio(str(size), ratios)[0]


_SIZE_NOTE = "the aspect ratio of the size (a ratio within 2 % is reported as adjusted)"
_COMMON: FieldTable = {
    "prompt": Field("prompt"),
    "negative_prompt": Field("negative_prompt"),
    "size": Field("aspect_ratio", convert=_aspect_ratio, note=_SIZE_NOTE),
    "output_format": Field("output_format"),
    "seed": Field("seed"),
}
ULTRA_FIELDS: FieldTable = _COMMON
CORE_FIELDS: FieldTable = {**_COMMON, "style_preset": Field("style_preset")}
SD3_FIELDS: FieldTable = {
    **_COMMON,
    "cfg_scale": Field("cfg_scale"),
    "strength": Field(
        "strength", note=f"edits only: 0 keeps the input image, 1 ignores it ({DEFAULT_STRENGTH} "
        "when not given, as Stability needs one)"
    ),
}  # fmt: skip

STABILITY_FAMILIES = (
    ImageFamily("Stable Image Ultra", ("stability/stable-image-ultra",), ULTRA_FIELDS),
    ImageFamily("Stable Image Core", ("stability/stable-image-core",), CORE_FIELDS),
    ImageFamily(
        "Stable Diffusion 3.5",
        ("stability/sd3.5-large", "stability/sd3.5-large-turbo", "stability/sd3.5-medium"),
        SD3_FIELDS,
        operations=("edit",),
    ),
)


def _endpoint(model: str) -> tuple[str, FieldTable, bool]:
    """(path under /v2beta/stable-image/generate/, field table, whether `model` is sent)."""
    if model in ("stable-image-ultra", "ultra"):
        return "ultra", ULTRA_FIELDS, False
    if model in ("stable-image-core", "core"):
        return "core", CORE_FIELDS, False
    return "sd3", SD3_FIELDS, True


# ---------------------------------------------------------------------------- answers


class _Answer(msgspec.Struct):
    image: str | None = None
    finish_reason: str | None = None
    seed: int | None = None


class _Error(msgspec.Struct):
    id: str | None = None
    name: str | None = None
    errors: list[str] | None = None
    message: str | None = None


def stability_error(response: UpstreamResponse, redact: Redactor) -> PrismgateError:
    """Stability's `{"id","name","errors":[...]}` into the tree; a moderation refusal (403
    `content_moderation`) becomes a content policy violation."""
    detail = _Error()
    with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
        detail = msgspec.json.decode(response.body, type=_Error)
    text = "; ".join(detail.errors or ()) or detail.message
    message = redact(text or response.body[:300].decode("utf-8", "replace") or "(empty body)")
    if detail.name == "content_moderation":
        return ContentPolicyViolationError(
            f"stability's content moderation refused the request: {message}. Change the "
            "prompt (or the input image) and try again.",
            provider="stability",
            upstream_status=response.status,
            upstream_message=message,
        )
    return from_upstream(
        response.status,
        message,
        provider="stability",
        code=detail.name,
        retry_after=retry_after_seconds(response.headers),
    )


def _image_response(answer: UpstreamResponse, output_format: str) -> ImageResponse:
    try:
        decoded = msgspec.json.decode(answer.body, type=_Answer)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise unreadable_answer(
            "stability", answer.status, f"not Stability's image JSON ({exc})"
        ) from exc
    response = ImageResponse(created=int(time.time()), output_format=output_format)
    if decoded.finish_reason == "CONTENT_FILTERED":
        response.filtered = ("stability's content filter withheld the image (CONTENT_FILTERED)",)
    elif decoded.image:
        response.data = [ImageObject(b64_json=decoded.image)]
    return response


# ---------------------------------------------------------------------------- requests


def _form_value(name: str, value: Any) -> str:
    """Multipart fields are text: numbers and flags as Stability parses them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise BadRequestError(
        f"stability takes only text, numbers and true/false as form fields; {name!r} is a "
        f"{type(value).__name__}",
        param=name,
        provider="stability",
    )


async def _send(
    call: ImageCall[Any],
    http: Transport,
    path: str,
    fields: list[tuple[str, str | InputImage]],
) -> ImageResponse:
    body, content_type = await multipart_body(fields)
    key = call.credentials.api_key
    request = UpstreamRequest(
        method="POST",
        url=call.credentials.api_base + _GENERATE + path,
        provider="stability",
        headers={
            **({"Authorization": f"Bearer {key}"} if key else {}),
            "Content-Type": content_type,
            "Accept": "application/json",
        },
        body=body,
        timeout=call.timeout,
        connect_timeout=call.connect_timeout,
        max_answer_bytes=image_answer_bytes(1),  # one image per call
    )
    response = await http.send(request)
    if response.status >= 400:
        raise stability_error(response, call.redact)
    return _image_response(response, call.request.output_format or "png")


def _fields(
    call: ImageCall[Any], table: FieldTable, values: Mapping[str, Any], send_model: bool
) -> list[tuple[str, str | InputImage]]:
    built = build_body(table, values, call.capabilities, call.extra)
    fields: list[tuple[str, str | InputImage]] = []
    if send_model:  # /sd3 serves several models; without it Stability picks sd3.5-large
        fields.append(("model", call.deployment.model))
    fields += [(name, _form_value(name, value)) for name, value in built.items()]
    return fields


def _values(call: ImageCall[Any]) -> dict[str, Any]:
    request = call.request
    return {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "size": request.size,
        "output_format": request.output_format,
    }


@dataclass(frozen=True, slots=True)
class StabilityImages:
    """Text-to-image on /ultra, /core and /sd3; image-to-image on /sd3."""

    families: tuple[ImageFamily, ...] = STABILITY_FAMILIES

    async def generate(self, call: ImageGenerationCall, http: Transport) -> ImageResponse:
        """One image from a prompt."""
        path, table, send_model = _endpoint(call.deployment.model)
        return await _send(call, http, path, _fields(call, table, _values(call), send_model))

    async def edit(self, call: ImageEditCall, http: Transport) -> ImageResponse:
        """One image from the first input image and a prompt (SD3.5 image-to-image)."""
        path, table, send_model = _endpoint(call.deployment.model)
        request = call.request
        if path != "sd3":
            raise BadRequestError(
                f"stability/{call.deployment.model} cannot edit images; use an SD3.5 model "
                "(stability/sd3.5-large, sd3.5-large-turbo or sd3.5-medium)",
                param="model",
                code="model_not_supported",
            )
        if request.mask is not None:
            raise UnsupportedParamsError(
                "stability's image-to-image takes no mask (it changes the whole image): "
                "remove the mask",
                param="mask",
            )
        if len(request.image) != 1:
            raise UnsupportedParamsError(
                f"stability's image-to-image takes one input image; got {len(request.image)}: "
                "send only the image to change",
                param="image",
            )
        if request.size is not None:
            raise UnsupportedParamsError(
                "stability's image-to-image keeps the input image's aspect ratio, so it has "
                "no size: remove size (or crop the input image to the shape you want)",
                param="size",
            )
        values = {**_values(call), "strength": DEFAULT_STRENGTH}
        fields = _fields(call, table, values, send_model)
        fields[1:1] = [("mode", "image-to-image"), ("image", request.image[0])]
        return await _send(call, http, path, fields)


_IMAGES = StabilityImages()

STABILITY = Provider(
    name="stability",
    translate_error=stability_error,
    aliases=("stability-ai",),
    credentials=CredentialSpec(
        api_key_env=("STABILITY_API_KEY",),
        api_base_env=("STABILITY_API_BASE",),
        default_api_base="https://api.stability.ai",
    ),
    image_generation=_IMAGES,
    image_edit=_IMAGES,
    # The account's credit balance: free, and it proves the key.
    health_probe=models_probe("/v1/user/balance"),
)
