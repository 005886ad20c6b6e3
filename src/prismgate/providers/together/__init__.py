"""Together AI images: an OpenAI-like `POST /images/generations`, with a width and height
instead of `size`, and `base64` where OpenAI says `b64_json`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgspec

from prismgate.catalog import ImageCapabilities
from prismgate.errors import ContentPolicyViolationError, PrismgateError, unreadable_answer
from prismgate.observability.redaction import Redactor
from prismgate.providers.base import (
    CredentialSpec,
    Field,
    FieldTable,
    ImageFamily,
    ImageGenerationCall,
    Provider,
    build_body,
)
from prismgate.providers.image_rules import parse_size
from prismgate.providers.openai.wire import bearer, models_probe, openai_error
from prismgate.transport import Transport, UpstreamRequest, UpstreamResponse, image_answer_bytes
from prismgate.types import ImageObject, ImageResponse

__all__ = ["TOGETHER_AI", "TOGETHER_IMAGE_FIELDS"]

# Together's words for OpenAI's response formats.
_RESPONSE_FORMATS = {"b64_json": "base64", "url": "url"}


def _width_height(size: Any, _capabilities: ImageCapabilities | None) -> dict[str, int]:
    width, height = parse_size(str(size))
    return {"width": width, "height": height}


def _response_format(value: Any, _capabilities: ImageCapabilities | None) -> str:
    return _RESPONSE_FORMATS.get(str(value), str(value))


TOGETHER_IMAGE_FIELDS: FieldTable = {
    "prompt": Field("prompt"),
    "n": Field("n"),
    "size": Field(convert=_width_height, note="split into width and height"),
    "negative_prompt": Field("negative_prompt"),
    "output_format": Field("output_format"),
    "response_format": Field(
        "response_format", convert=_response_format, note="b64_json is sent as base64"
    ),
    "steps": Field("steps"),
    "seed": Field("seed"),
    "guidance_scale": Field("guidance_scale"),
}


class _Image(msgspec.Struct):
    b64_json: str | None = None
    url: str | None = None


class _Answer(msgspec.Struct):
    data: list[_Image] = msgspec.field(default_factory=list)


def _answer(response: UpstreamResponse, output_format: str | None) -> ImageResponse:
    try:
        answer = msgspec.json.decode(response.body, type=_Answer)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise unreadable_answer(
            "together_ai", response.status, f"not Together's images JSON ({exc})"
        ) from exc
    return ImageResponse(
        created=int(time.time()),
        data=[ImageObject(b64_json=image.b64_json, url=image.url) for image in answer.data],
        output_format=output_format,
    )


def together_error(response: UpstreamResponse, redact: Redactor) -> PrismgateError:
    """Together's OpenAI-shaped errors; a safety-checker refusal is a content policy one."""
    error = openai_error("together_ai", response, redact)
    # Together refuses the whole call when its safety checker flags the prompt or image.
    if "nsfw" in (error.upstream_message or "").lower():
        return ContentPolicyViolationError(
            f"together_ai's safety checker refused the request: {error.upstream_message}. "
            "Change the prompt and try again.",
            provider="together_ai",
            upstream_status=response.status,
            upstream_message=error.upstream_message,
        )
    return error


@dataclass(frozen=True, slots=True)
class TogetherImageGeneration:
    """`POST {api_base}/images/generations` (the base ends in /v1)."""

    families: tuple[ImageFamily, ...] = (
        ImageFamily(
            "FLUX on Together", ("together_ai/black-forest-labs/FLUX.1-schnell",),
            TOGETHER_IMAGE_FIELDS,
        ),
    )  # fmt: skip

    async def generate(self, call: ImageGenerationCall, http: Transport) -> ImageResponse:
        """Up to four images in one call."""
        values = msgspec.structs.asdict(call.request)
        body = {
            "model": call.deployment.model,
            **build_body(TOGETHER_IMAGE_FIELDS, values, call.capabilities, call.extra),
        }
        request = UpstreamRequest(
            method="POST",
            url=call.credentials.api_base + "/images/generations",
            provider="together_ai",
            headers={**bearer(call.credentials, call.settings), "Content-Type": "application/json"},
            body=msgspec.json.encode(body),
            timeout=call.timeout,
            connect_timeout=call.connect_timeout,
            max_answer_bytes=image_answer_bytes(call.request.n or 1),
        )
        response = await http.send(request)
        if response.status >= 400:
            raise together_error(response, call.redact)
        return _answer(response, call.request.output_format)


TOGETHER_AI = Provider(
    name="together_ai",
    translate_error=together_error,
    aliases=("together-ai",),
    credentials=CredentialSpec(
        api_key_env=("TOGETHER_API_KEY", "TOGETHERAI_API_KEY", "TOGETHER_AI_API_KEY"),
        api_base_env=("TOGETHER_API_BASE", "TOGETHERAI_API_BASE"),
        # The host Together's API reference names; api.together.xyz serves the same API.
        default_api_base="https://api.together.ai/v1",
    ),
    image_generation=TogetherImageGeneration(),
    health_probe=models_probe(),
)
