"""Generation and edits on Black Forest Labs: submit a task, then poll it to its image.

`POST {api_base}/<model>` with the key in `x-key` answers `{id, polling_url}`; the task
is then polled by the shared job engine (`prismgate.providers.jobs`) until its image is
ready, the call's timeout passes, or the caller leaves. The submit is an ordinary call
(retried by the router when it fails); once a task id exists nothing is submitted again.
One image per task: the gateway fans `n` out.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from prismgate.errors import UnsupportedParamsError, unreadable_answer
from prismgate.providers.base import (
    ImageCall,
    ImageEditCall,
    ImageFamily,
    ImageGenerationCall,
    build_body,
)
from prismgate.providers.black_forest_labs.fields import (
    BFL_FAMILIES,
    fields_for,
    max_input_images,
)
from prismgate.providers.black_forest_labs.job import (
    PROVIDER,
    BflJob,
    b64,
    bfl_error,
    trusted_url,
    untrusted,
)
from prismgate.providers.jobs import run_job
from prismgate.transport import Transport, UpstreamRequest
from prismgate.types import ImageObject, ImageResponse

__all__ = ["BflImages"]


class _Submitted(msgspec.Struct):
    id: str
    polling_url: str


def _values(call: ImageCall[Any]) -> dict[str, Any]:
    request = call.request
    return {"prompt": request.prompt, "size": request.size, "output_format": request.output_format}


async def _run(call: ImageCall[Any], http: Transport, body: dict[str, Any]) -> ImageResponse:
    started = time.monotonic()
    base = call.credentials.api_base
    request = UpstreamRequest(
        method="POST",
        url=f"{base}/{call.deployment.model}",
        provider=PROVIDER,
        headers={
            "x-key": call.credentials.api_key or "",
            "Content-Type": "application/json",
            "accept": "application/json",
        },
        body=msgspec.json.encode(body),
        timeout=call.timeout,
        connect_timeout=call.connect_timeout,
    )
    response = await http.send(request)
    if response.status >= 400:
        raise bfl_error(response, call.redact)
    try:
        submitted = msgspec.json.decode(response.body, type=_Submitted)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise unreadable_answer(PROVIDER, response.status, f"not BFL's task ({exc})") from exc
    if not trusted_url(submitted.polling_url, base):
        raise untrusted("polling_url", submitted.polling_url, submitted.id)
    job = BflJob(
        id=submitted.id,
        polling_url=submitted.polling_url,
        api_key=call.credentials.api_key,
        api_base=base,
        connect_timeout=call.connect_timeout,
        redact=call.redact,
    )
    left = max(0.0, call.timeout - (time.monotonic() - started))
    image = await run_job(job, http, within=left, on_progress=call.on_progress)
    return ImageResponse(
        created=int(time.time()),
        data=[ImageObject(b64_json=b64(image))],
        output_format=call.request.output_format,
    )


@dataclass(frozen=True, slots=True)
class BflImages:
    """Text-to-image on every FLUX model; edits on FLUX.2 and FLUX.1 Kontext."""

    families: tuple[ImageFamily, ...] = BFL_FAMILIES

    async def generate(self, call: ImageGenerationCall, http: Transport) -> ImageResponse:
        """One image from a prompt."""
        table = fields_for(call.deployment.model)
        return await _run(
            call, http, build_body(table, _values(call), call.capabilities, call.extra)
        )

    async def edit(self, call: ImageEditCall, http: Transport) -> ImageResponse:
        """One image from the input images (`input_image`, `input_image_2`, ...) and a
        prompt; FLUX.2 and Kontext edit the whole image, so there is no mask."""
        model, request = call.deployment.model, call.request
        most = max_input_images(model)
        if request.mask is not None:
            raise UnsupportedParamsError(
                f"{PROVIDER}/{model} edits follow the prompt over the whole image and take no "
                "mask: remove the mask and say in the prompt what to change",
                param="mask",
            )
        if not most or len(request.image) > most:
            raise UnsupportedParamsError(
                f"{PROVIDER}/{model} takes at most {most} input images; got "
                f"{len(request.image)}"
                + ("" if most else ": use flux-2-pro or flux-kontext-pro to edit"),
                param="image",
            )
        body = build_body(fields_for(model), _values(call), call.capabilities, call.extra)
        for index, image in enumerate(request.image):
            name = "input_image" if index == 0 else f"input_image_{index + 1}"
            body[name] = base64.b64encode(image.data).decode()
        return await _run(call, http, body)
