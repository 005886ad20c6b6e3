"""Fireworks AI FLUX text-to-image: a JSON body with an aspect ratio, one image per call,
answered (with `Accept: application/json`) as a list of base64 data URLs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgspec

from prismgate.catalog import ImageCapabilities
from prismgate.errors import unreadable_answer
from prismgate.providers.base import (
    CredentialSpec,
    Field,
    FieldTable,
    ImageFamily,
    ImageGenerationCall,
    Provider,
    build_body,
)
from prismgate.providers.image_rules import match_aspect_ratio
from prismgate.providers.openai.wire import bearer, models_probe, openai_error, openai_errors
from prismgate.transport import Transport, UpstreamRequest, image_answer_bytes
from prismgate.types import ImageObject, ImageResponse

__all__ = ["FIREWORKS_AI", "FIREWORKS_ASPECT_RATIOS", "FIREWORKS_IMAGE_FIELDS"]

# The ratios Fireworks documents for FLUX, for models the catalog does not list.
FIREWORKS_ASPECT_RATIOS = (
    "1:1", "21:9", "16:9", "3:2", "5:4", "4:5", "2:3", "9:16", "9:21", "4:3", "3:4",
)  # fmt: skip
# The JSON answer carries PNGs unless this header asks for another type.
_IMAGE_TYPE_HEADER = "Json-Return-Image-Accept"


def _aspect_ratio(size: Any, capabilities: ImageCapabilities | None) -> str:
    ratios = (capabilities and capabilities.aspect_ratios) or FIREWORKS_ASPECT_RATIOS
    return match_aspect_ratio(str(size), ratios)[0]


def _no_body_field(_value: Any, _capabilities: ImageCapabilities | None) -> dict[str, Any]:
    return {}


FIREWORKS_IMAGE_FIELDS: FieldTable = {
    "prompt": Field("prompt"),
    "size": Field(
        "aspect_ratio",
        convert=_aspect_ratio,
        note="the aspect ratio of the size (a ratio within 2 % is reported as adjusted)",
    ),
    # Not a body field: the image type is asked for with a header.
    "output_format": Field(
        convert=_no_body_field, note=f"sent as the {_IMAGE_TYPE_HEADER} header (image/...)"
    ),
    "guidance_scale": Field("guidance_scale"),
    "num_inference_steps": Field("num_inference_steps"),
    "seed": Field("seed"),
}


class _Answer(msgspec.Struct):
    base64: list[str] = msgspec.field(default_factory=list)
    finish_reason: str | None = msgspec.field(default=None, name="finishReason")
    seed: int | None = None
    id: str | None = None


def _payload(image: str) -> str:
    """The base64 of `data:image/png;base64,<b64>` (or of bare base64)."""
    return image.partition(",")[2] if image.startswith("data:") else image


def _url(call: ImageGenerationCall) -> str:
    model = call.deployment.model
    if not model.startswith("accounts/"):
        model = f"accounts/fireworks/models/{model}"
    return f"{call.credentials.api_base}/inference/v1/workflows/{model}/text_to_image"


@dataclass(frozen=True, slots=True)
class FireworksImageGeneration:
    """`POST …/workflows/accounts/fireworks/models/{model}/text_to_image`."""

    families: tuple[ImageFamily, ...] = (
        ImageFamily("FLUX on Fireworks", ("fireworks_ai/flux-1-schnell-fp8",),
                    FIREWORKS_IMAGE_FIELDS),
    )  # fmt: skip

    async def generate(self, call: ImageGenerationCall, http: Transport) -> ImageResponse:
        """One image from a prompt."""
        values = msgspec.structs.asdict(call.request)
        body = build_body(FIREWORKS_IMAGE_FIELDS, values, call.capabilities, call.extra)
        headers = {
            **bearer(call.credentials, call.settings),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        if call.request.output_format:
            headers[_IMAGE_TYPE_HEADER] = f"image/{call.request.output_format}"
        request = UpstreamRequest(
            method="POST",
            url=_url(call),
            provider="fireworks_ai",
            headers=headers,
            body=msgspec.json.encode(body),
            timeout=call.timeout,
            connect_timeout=call.connect_timeout,
            max_answer_bytes=image_answer_bytes(1),  # one image per call
        )
        response = await http.send(request)
        if response.status >= 400:
            raise openai_error("fireworks_ai", response, call.redact)
        try:
            answer = msgspec.json.decode(response.body, type=_Answer)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise unreadable_answer(
                "fireworks_ai", response.status, f"not Fireworks' image JSON ({exc})"
            ) from exc
        result = ImageResponse(
            created=int(time.time()), output_format=call.request.output_format or "png"
        )
        if answer.finish_reason == "CONTENT_FILTERED":
            result.filtered = ("fireworks_ai's safety check withheld the image (CONTENT_FILTERED)",)
        else:
            result.data = [ImageObject(b64_json=_payload(image)) for image in answer.base64]
        return result


FIREWORKS_AI = Provider(
    name="fireworks_ai",
    translate_error=openai_errors("fireworks_ai"),
    aliases=("fireworks-ai",),
    credentials=CredentialSpec(
        api_key_env=("FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY"),
        api_base_env=("FIREWORKS_AI_API_BASE", "FIREWORKS_API_BASE"),
        default_api_base="https://api.fireworks.ai",
    ),
    image_generation=FireworksImageGeneration(),
    # The OpenAI-compatible model list: free, and it proves the key.
    health_probe=models_probe("/inference/v1/models"),
)
