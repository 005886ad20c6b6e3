"""Generation on Replicate: create a prediction, waiting for it when it is fast, and
poll it through the job engine when it is not.

`POST {api_base}/models/{owner}/{name}/predictions` (official models) or
`POST {api_base}/predictions` with `version` (a model named `owner/name:version`), with
`Prefer: wait=<seconds>`: a fast model answers `succeeded` in that same call; a slower
one answers `starting` or `processing`, and is polled until the call's timeout (then
cancelled). Once a prediction id exists nothing is submitted again.
"""

from __future__ import annotations

import base64
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from prismgate.errors import PrismgateError, UnsupportedParamsError, unreadable_answer
from prismgate.providers.base import (
    ImageCall,
    ImageEditCall,
    ImageFamily,
    ImageGenerationCall,
    build_body,
)
from prismgate.providers.image_rules import check_instructed_edit
from prismgate.providers.jobs import run_job
from prismgate.providers.replicate.fields import REPLICATE_FAMILIES, fields_for
from prismgate.providers.replicate.prediction import (
    PROVIDER,
    Prediction,
    ReplicateJob,
    decode_prediction,
    failure,
    read_outputs,
    replicate_error,
)
from prismgate.transport import Transport, UpstreamRequest, image_answer_bytes, multipart_body
from prismgate.types import ImageObject, ImageResponse, InputImage

__all__ = ["ReplicateImages"]

# Replicate holds a `Prefer: wait` request open for at most a minute. We ask for less than
# the call's timeout, so the answer (and with it the prediction's id, to poll or cancel)
# always arrives before our own deadline cuts the request.
MAX_WAIT = 60
WAIT_MARGIN = 2.0
# Replicate takes an input file inline as a data URI below 1 MB (its docs); a larger one
# is uploaded through its Files API first.
MAX_INLINE_BYTES = 1_000_000
# The models that edit (by their `owner/name` ending).
_EDITORS = ("/flux-kontext-pro", "/flux-kontext-max")


class _Urls(msgspec.Struct):
    get: str


class _File(msgspec.Struct):
    id: str
    urls: _Urls

    @property
    def url(self) -> str:
        return self.urls.get


async def _upload(call: ImageEditCall, http: Transport, image: InputImage) -> _File:
    """`POST /files`: an image too large to send inline, as a file the prediction reads."""
    body, content_type = await multipart_body([("content", image)])
    response = await http.send(
        UpstreamRequest(
            method="POST",
            url=call.credentials.api_base + "/files",
            provider=PROVIDER,
            headers={**_auth(call), "Content-Type": content_type},
            body=body,
            timeout=call.timeout,
            connect_timeout=call.connect_timeout,
        )
    )
    if response.status >= 400:
        raise replicate_error(response, call.redact)
    try:
        return msgspec.json.decode(response.body, type=_File)
    except msgspec.DecodeError as exc:
        raise unreadable_answer(PROVIDER, response.status, f"not a file ({exc})") from exc


async def _delete(call: ImageEditCall, http: Transport, file_id: str) -> None:
    """`DELETE /files/{id}` once the prediction has read it; a failure costs nothing but
    the file, which Replicate removes itself a day later."""
    with contextlib.suppress(PrismgateError):
        await http.send(
            UpstreamRequest(
                method="DELETE",
                url=f"{call.credentials.api_base}/files/{file_id}",
                provider=PROVIDER,
                headers=_auth(call),
                timeout=10.0,
                connect_timeout=call.connect_timeout,
            )
        )


def _auth(call: ImageCall[Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {call.credentials.api_key or ''}"}


def _input(call: ImageCall[Any]) -> dict[str, Any]:
    """The model's `input` for the call's OpenAI parameters and the caller's extras."""
    request = call.request
    values = {
        "prompt": request.prompt,
        "n": request.n,
        "size": request.size,
        "output_format": request.output_format,
    }
    return build_body(fields_for(call.deployment.model), values, call.capabilities, call.extra)


def _target(api_base: str, model: str, input_: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The create URL and body for `owner/name` or `owner/name:version`."""
    name, _, version = model.partition(":")
    if version:
        return f"{api_base}/predictions", {"version": version, "input": input_}
    return f"{api_base}/models/{name}/predictions", {"input": input_}


@dataclass(frozen=True, slots=True)
class ReplicateImages:
    """Text-to-image on Replicate's image models, and edits on FLUX.1 Kontext."""

    families: tuple[ImageFamily, ...] = REPLICATE_FAMILIES

    async def generate(self, call: ImageGenerationCall, http: Transport) -> ImageResponse:
        """A prediction's images (several when the model takes `num_outputs`)."""
        return await self._predict(call, http, _input(call))

    async def edit(self, call: ImageEditCall, http: Transport) -> ImageResponse:
        """An edit by instruction: the input image as the model's `input_image` (FLUX.1
        Kontext takes one image and no mask)."""
        request = call.request
        if not call.deployment.model.partition(":")[0].endswith(_EDITORS):
            raise UnsupportedParamsError(
                f"replicate/{call.deployment.model} does not edit images; the models that do "
                "are FLUX.1 Kontext (replicate/black-forest-labs/flux-kontext-pro, -max)",
                param="model",
            )
        check_instructed_edit(request, "FLUX.1 Kontext", 1)
        image = request.image[0]
        if len(image.data) <= MAX_INLINE_BYTES:
            inline = {"input_image": image.data_url()}
            return await self._predict(call, http, {**_input(call), **inline})
        uploaded = await _upload(call, http, image)
        try:
            return await self._predict(call, http, {**_input(call), "input_image": uploaded.url})
        finally:
            await _delete(call, http, uploaded.id)

    async def _predict(
        self, call: ImageCall[Any], http: Transport, input_: dict[str, Any]
    ) -> ImageResponse:
        started = time.monotonic()
        request = call.request
        base = call.credentials.api_base
        url, body = _target(base, call.deployment.model, input_)
        auth = _auth(call)
        headers = {**auth, "Content-Type": "application/json"}
        wait = min(MAX_WAIT, int(call.timeout - WAIT_MARGIN))
        if wait >= 1:
            headers["Prefer"] = f"wait={wait}"
        response = await http.send(
            UpstreamRequest(
                method="POST",
                url=url,
                provider=PROVIDER,
                headers=headers,
                body=msgspec.json.encode(body),
                timeout=call.timeout,
                connect_timeout=call.connect_timeout,
                max_answer_bytes=image_answer_bytes(request.n or 1),  # data URIs
            )
        )
        if response.status >= 400:
            raise replicate_error(response, call.redact)
        prediction = decode_prediction(response)
        try:
            images = await self._images(call, http, prediction, auth, started)
        except PrismgateError as error:
            error.request_sent = True  # the prediction exists: never created again
            raise
        return ImageResponse(
            created=int(time.time()),
            data=[ImageObject(b64_json=base64.b64encode(image).decode()) for image in images],
            output_format=request.output_format,
        )

    async def _images(
        self,
        call: ImageCall[Any],
        http: Transport,
        prediction: Prediction,
        auth: dict[str, str],
        started: float,
    ) -> list[bytes]:
        base = call.credentials.api_base
        left = max(0.0, call.timeout - (time.monotonic() - started))
        if prediction.status == "succeeded":  # the fast path: answered within the wait
            images = await read_outputs(prediction, http, base, max(left, 1.0), call.redact)
            if isinstance(images, PrismgateError):
                raise images
            return images
        if prediction.status in ("failed", "canceled"):
            raise failure(prediction, call.redact)
        job = ReplicateJob(
            id=prediction.id,
            api_base=base,
            headers=auth,
            connect_timeout=call.connect_timeout,
            redact=call.redact,
        )
        return await run_job(job, http, within=left, on_progress=call.on_progress)
