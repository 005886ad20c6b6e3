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
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from prismgate.errors import PrismgateError
from prismgate.providers.base import ImageFamily, ImageGenerationCall, build_body
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
from prismgate.transport import Transport, UpstreamRequest, image_answer_bytes
from prismgate.types import ImageObject, ImageResponse

__all__ = ["ReplicateImages"]

# Replicate holds a `Prefer: wait` request open for at most a minute. We ask for less than
# the call's timeout, so the answer (and with it the prediction's id, to poll or cancel)
# always arrives before our own deadline cuts the request.
MAX_WAIT = 60
WAIT_MARGIN = 2.0


def _target(api_base: str, model: str, input_: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The create URL and body for `owner/name` or `owner/name:version`."""
    name, _, version = model.partition(":")
    if version:
        return f"{api_base}/predictions", {"version": version, "input": input_}
    return f"{api_base}/models/{name}/predictions", {"input": input_}


@dataclass(frozen=True, slots=True)
class ReplicateImages:
    """Text-to-image on Replicate's image models."""

    families: tuple[ImageFamily, ...] = REPLICATE_FAMILIES

    async def generate(self, call: ImageGenerationCall, http: Transport) -> ImageResponse:
        """A prediction's images (several when the model takes `num_outputs`)."""
        started = time.monotonic()
        request = call.request
        values = {
            "prompt": request.prompt,
            "n": request.n,
            "size": request.size,
            "output_format": request.output_format,
        }
        table = fields_for(call.deployment.model)
        input_ = build_body(table, values, call.capabilities, call.extra)
        base = call.credentials.api_base
        url, body = _target(base, call.deployment.model, input_)
        auth = {"Authorization": f"Bearer {call.credentials.api_key or ''}"}
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
        call: ImageGenerationCall,
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
