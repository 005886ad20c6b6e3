"""fal image models: OpenAI's parameters as fal's inputs, and fal's output as OpenAI's.

A call is queued (`queue.submit`, then `run_job`), or made at once on the synchronous
host when the deployment says `fal_sync`. fal answers with links to its CDN; the caller
who wants `b64_json` gets them fetched at once through the same transport, one who wants
`url` gets fal's links as they are (fal keeps them for the account's retention period).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import yarl

from prismgate.catalog import ImageCapabilities
from prismgate.errors import (
    APIError,
    BadRequestError,
    PrismgateError,
    UnreadableAnswerError,
    UnsupportedParamsError,
    from_upstream,
)
from prismgate.providers.base import (
    Field,
    FieldTable,
    ImageCall,
    ImageEditCall,
    ImageFamily,
    ImageGenerationCall,
    build_body,
    followable,
    settings_of,
)
from prismgate.providers.fal.queue import (
    PROVIDER,
    FalOutput,
    fal_error,
    read_output,
    submit,
)
from prismgate.providers.fal.settings import QUEUE_BASE, SYNC_BASE, FalSettings
from prismgate.providers.image_rules import parse_size
from prismgate.providers.jobs import run_job
from prismgate.transport import Transport, UpstreamRequest, image_answer_bytes
from prismgate.types import ImageObject, ImageResponse, InputImage

__all__ = ["EDIT_FIELDS", "FAL_FAMILIES", "IMAGE_FIELDS", "FalImages"]

# fal's named sizes (`image_size` presets), by the size each one makes.
IMAGE_SIZE_PRESETS = {
    "1024x1024": "square_hd",
    "512x512": "square",
    "768x1024": "portrait_4_3",
    "576x1024": "portrait_16_9",
    "1024x768": "landscape_4_3",
    "1024x576": "landscape_16_9",
}
# OpenAI parameters no fal image model has a meaning for (refused even where the
# catalog does not describe the model, so none is ever dropped silently).
_NO_MEANING = (
    "quality",
    "style",
    "background",
    "output_compression",
    "moderation",
    "input_fidelity",
)


def _image_size(size: Any, _capabilities: ImageCapabilities | None) -> str | dict[str, int]:
    preset = IMAGE_SIZE_PRESETS.get(str(size))
    if preset is not None:
        return preset
    width, height = parse_size(str(size))
    return {"width": width, "height": height}


def _data_uri(image: InputImage, _capabilities: ImageCapabilities | None) -> str:
    # fal's image inputs take a URL or a data URI; the bytes go inline, never uploaded.
    return image.data_url()


def _not_sent(_value: Any, _capabilities: ImageCapabilities | None) -> dict[str, Any]:
    return {}  # fal always answers with links; the provider delivers what was asked


_DELIVERY = Field(
    convert=_not_sent,
    note="never sent; fal's links given as they are, or fetched at once for `b64_json`",
)
_SIZE_NOTE = "a fal preset name (`square_hd`, `landscape_4_3`, ...) or `{width, height}`"
IMAGE_FIELDS: FieldTable = {
    "prompt": Field("prompt"),
    "n": Field("num_images"),
    "size": Field("image_size", convert=_image_size, note=_SIZE_NOTE),
    "negative_prompt": Field("negative_prompt"),
    "output_format": Field("output_format"),
    "response_format": _DELIVERY,
    "seed": Field("seed"),
    "num_inference_steps": Field("num_inference_steps"),
    "guidance_scale": Field("guidance_scale"),
    "enable_safety_checker": Field("enable_safety_checker"),
}
EDIT_FIELDS: FieldTable = {
    "prompt": Field("prompt"),
    "image": Field("image_url", convert=_data_uri, note="the first image, as a data URI"),
    "n": Field("num_images"),
    "output_format": Field("output_format"),
    "response_format": _DELIVERY,
    "seed": Field("seed"),
    "guidance_scale": Field("guidance_scale"),
    "safety_tolerance": Field("safety_tolerance"),
}

FAL_FAMILIES = (
    ImageFamily(
        "FLUX.1 on fal",
        ("fal_ai/fal-ai/flux/dev", "fal_ai/fal-ai/flux/schnell"),
        IMAGE_FIELDS,
    ),
    ImageFamily(
        "FLUX.1 Kontext on fal (edits only: a generation is refused with a 400)",
        ("fal_ai/fal-ai/flux-pro/kontext",),
        EDIT_FIELDS,
        operations=("edit",),
    ),
)


@dataclass(frozen=True, slots=True)
class FalImages:
    """Generation (FLUX and the like) and edits (Kontext), queued or synchronous."""

    families: tuple[ImageFamily, ...] = FAL_FAMILIES

    async def generate(self, call: ImageGenerationCall, http: Transport) -> ImageResponse:
        """Up to the model's `num_images` per call (the gateway fans out the rest)."""
        info = call.deployment.info
        if info is not None and info.mode == "image_edit":  # the catalog says: edits only
            raise BadRequestError(
                f"fal_ai/{call.deployment.model} edits an input image: call /v1/images/edits "
                "with one, or use a text-to-image model",
                param="model",
                code="model_not_supported",
            )
        _refuse_meaningless(call)
        values = msgspec.structs.asdict(call.request)
        body = build_body(IMAGE_FIELDS, values, call.capabilities, call.extra)
        return await _run(call, http, body)

    async def edit(self, call: ImageEditCall, http: Transport) -> ImageResponse:
        """One input image and a prompt (Kontext's `image_url`)."""
        request = call.request
        _refuse_meaningless(call)
        if request.mask is not None:
            raise UnsupportedParamsError(
                "fal's Kontext edits follow the prompt over the whole image and take no "
                "mask: remove the mask and say in the prompt what to change",
                param="mask",
            )
        if len(request.image) != 1:
            raise UnsupportedParamsError(
                f"this fal model edits one input image; got {len(request.image)}: send "
                "only the image to change",
                param="image",
            )
        if request.size is not None:
            raise UnsupportedParamsError(
                "fal's Kontext edits keep the input image's size: remove size (or resize "
                "the input image)",
                param="size",
            )
        values = {
            "prompt": request.prompt,
            "image": request.image[0],
            "n": request.n,
            "output_format": request.output_format,
        }
        body = build_body(EDIT_FIELDS, values, call.capabilities, call.extra)
        return await _run(call, http, body)


def _refuse_meaningless(call: ImageCall[Any]) -> None:
    for name in _NO_MEANING:
        if getattr(call.request, name, None) is not None:
            raise UnsupportedParamsError(
                f"fal's image models have no {name!r}: remove it, or set drop_params=True",
                param=name,
            )


async def _run(call: ImageCall[Any], http: Transport, body: dict[str, Any]) -> ImageResponse:
    settings = settings_of(call, FalSettings)
    base = call.credentials.api_base
    key = call.credentials.api_key
    headers = {"Authorization": f"Key {key}"} if key else {}
    encoded = msgspec.json.encode(body)
    images = (call.request.n or 1) + 1
    started = time.monotonic()
    if settings.fal_sync or base == SYNC_BASE:
        # fal's own host for the queue is swapped for its synchronous one.
        output = await _run_at_once(
            call, http, SYNC_BASE if base == QUEUE_BASE else base, encoded, headers
        )
    else:
        job = await submit(
            http,
            base,
            call.deployment.model,
            encoded,
            headers,
            within=call.timeout,
            connect_timeout=call.connect_timeout,
            redact=call.redact,
            max_answer_bytes=image_answer_bytes(images),
        )
        within = max(0.0, call.timeout - (time.monotonic() - started))
        output = await run_job(job, http, within=within, on_progress=call.on_progress)
    remaining = max(1.0, call.timeout - (time.monotonic() - started))
    try:
        return await _response(call, http, output, remaining)
    except PrismgateError as error:
        error.request_sent = True  # the images exist (and are billed): never made again
        raise


async def _run_at_once(
    call: ImageCall[Any], http: Transport, base: str, body: bytes, headers: dict[str, str]
) -> FalOutput:
    answer = await http.send(
        UpstreamRequest(
            method="POST",
            url=f"{base}/{call.deployment.model}",
            provider=PROVIDER,
            headers={**headers, "Content-Type": "application/json"},
            body=body,
            timeout=call.timeout,
            connect_timeout=call.connect_timeout,
            max_answer_bytes=image_answer_bytes((call.request.n or 1) + 1),
        )
    )
    if answer.status >= 400:
        raise fal_error(answer, call.redact)
    return read_output(answer)


async def _response(
    call: ImageCall[Any], http: Transport, output: FalOutput, within: float
) -> ImageResponse:
    """fal's images as OpenAI's: links as they are, or fetched and encoded for
    `b64_json`; images its safety checker flagged are withheld with a reason."""
    as_b64 = call.request.response_format == "b64_json"
    flagged = output.has_nsfw_concepts or []
    data: list[ImageObject] = []
    withheld: list[str] = []
    for index, image in enumerate(output.images):
        if index < len(flagged) and flagged[index]:
            withheld.append(f"fal's safety checker flagged image {index + 1} (has_nsfw_concepts)")
            continue
        if image.url.startswith("data:"):  # `sync_mode`: the image is in the answer
            encoded = image.url.partition(",")[2]
            data.append(ImageObject(b64_json=encoded) if as_b64 else ImageObject(url=image.url))
        elif as_b64:
            if not followable(image.url, call.credentials.api_base, _MEDIA_DOMAINS):
                raise _untrusted(image.url)
            fetched = await _fetch(http, image.url, index, within, call.connect_timeout)
            data.append(ImageObject(b64_json=base64.b64encode(fetched).decode()))
        else:
            data.append(ImageObject(url=image.url))
    first = output.images[0] if output.images else None
    response = ImageResponse(
        created=int(time.time()),
        data=data,
        output_format=call.request.output_format,
        # What fal made (a custom `image_size` too): fal prices by its megapixels.
        size=f"{first.width}x{first.height}" if first and first.width and first.height else None,
    )
    response.filtered = tuple(withheld)
    return response


# Where fal serves result images: its media CDN and its own hosts, over https.
_MEDIA_DOMAINS = ("fal.media", "fal.ai", "fal.run")


def _untrusted(url: str) -> APIError:
    host = yarl.URL(url).host if url else None
    return APIError(
        f"{PROVIDER} answered with an image link on {host or 'no host'}, which is neither a "
        "fal host (fal.media, fal.ai, fal.run over https) nor the deployment's api_base; it "
        "was not fetched. Ask for response_format=url to get the link as it is.",
        provider=PROVIDER,
        code="untrusted_upstream_url",
        upstream_status=502,
        request_sent=True,
    )


async def _fetch(
    http: Transport, url: str, index: int, within: float, connect_timeout: float
) -> bytes:
    """One result image from fal's CDN; no credentials go with it."""
    answer = await http.send(
        UpstreamRequest(
            method="GET",
            url=url,
            provider=PROVIDER,
            timeout=within,
            connect_timeout=min(connect_timeout, within),
            max_answer_bytes=image_answer_bytes(1),
        )
    )
    if answer.status in (403, 404, 410):
        raise UnreadableAnswerError(
            f"{PROVIDER} made the images, but image {index + 1} could no longer be fetched "
            f"({answer.status}): its link has expired or was deleted at fal. The images were "
            "made (and billed); ask again, or ask for response_format=url and fetch them "
            "before fal's retention period ends.",
            provider=PROVIDER,
            code="result_expired",
            upstream_status=answer.status,
            request_sent=True,
        )
    if answer.status >= 400:
        raise from_upstream(
            answer.status,
            f"fetching image {index + 1} of the result failed",
            provider=PROVIDER,
        )
    return answer.body
