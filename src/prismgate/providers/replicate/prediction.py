"""A Replicate prediction as a `RemoteJob`, its errors, and its output read at once.

A prediction is `starting` (queued, or a worker booting), `processing`, then
`succeeded`, `failed` or `canceled`. It is polled at `{api_base}/predictions/{id}` (the
host we were configured with, whatever its answer's `urls` say) and cancelled at
`.../cancel`. Its output is a URL, a list of them, or data URIs; output files live an
hour on replicate.delivery, so they are read as soon as the prediction succeeds and
returned as base64. Only links on `replicate.delivery` (https) or the api_base's own
host are followed.
"""

from __future__ import annotations

import base64
import contextlib
import re
from dataclasses import dataclass
from typing import Any

import msgspec
import yarl

from prismgate.errors import (
    APIError,
    ContentPolicyViolationError,
    PrismgateError,
    from_upstream,
    unreadable_answer,
)
from prismgate.observability.redaction import Redactor
from prismgate.providers.base import followable
from prismgate.providers.jobs import JobState, JobStatus
from prismgate.transport import (
    Transport,
    UpstreamRequest,
    UpstreamResponse,
    image_answer_bytes,
    retry_after_seconds,
)

__all__ = ["PROVIDER", "Prediction", "ReplicateJob", "read_outputs", "replicate_error"]

PROVIDER = "replicate"
_DELIVERY = "replicate.delivery"
_EXPIRED = frozenset({403, 404, 410})
# A model's progress bar in its logs (tqdm: " 40%|████      | 2/5").
_PERCENT = re.compile(r"(\d{1,3})%\|")


class _Problem(msgspec.Struct):
    title: str | None = None
    detail: str | None = None
    status: int | None = None


def replicate_error(response: UpstreamResponse, redact: Redactor) -> PrismgateError:
    """Replicate's problem details (`{"title", "detail", "status"}`) into the tree."""
    problem = _Problem()
    with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
        problem = msgspec.json.decode(response.body, type=_Problem)
    text = ": ".join(part for part in (problem.title, problem.detail) if part)
    return from_upstream(
        response.status,
        redact(text or response.body[:300].decode("utf-8", "replace") or "(empty body)"),
        provider=PROVIDER,
        retry_after=retry_after_seconds(response.headers),
    )


class Prediction(msgspec.Struct):
    id: str
    status: str
    output: Any = None
    error: Any = None
    logs: str | None = None


def decode_prediction(response: UpstreamResponse) -> Prediction:
    try:
        return msgspec.json.decode(response.body, type=Prediction)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise unreadable_answer(PROVIDER, response.status, f"not a prediction ({exc})") from exc


def failure(prediction: Prediction, redact: Redactor) -> PrismgateError:
    """Why `prediction` failed or was cancelled, as the caller's error."""
    said = redact(str(prediction.error or "no reason given"))
    if prediction.status == "canceled":
        return APIError(
            f"{PROVIDER} prediction {prediction.id} was canceled at the provider",
            provider=PROVIDER,
            code="job_cancelled",
        )
    if "nsfw" in said.lower():  # the model's safety checker refused the image
        return ContentPolicyViolationError(
            f"{PROVIDER}'s safety checker refused the image: {said}. Change the prompt and "
            "try again.",
            provider=PROVIDER,
            upstream_message=said,
        )
    return APIError(
        f"{PROVIDER} prediction {prediction.id} failed: {said}",
        provider=PROVIDER,
        code="job_failed",
        upstream_message=said,
    )


def _trusted(url: str, api_base: str) -> bool:
    return followable(url, api_base, (_DELIVERY,))


async def read_outputs(
    prediction: Prediction, http: Transport, api_base: str, within: float, redact: Redactor
) -> list[bytes] | PrismgateError:
    """Every output image's bytes; the error when a link is foreign, expired or the
    output is not images. A 5xx or a broken download is raised (and read again)."""
    outputs = prediction.output if isinstance(prediction.output, list) else [prediction.output]
    images = []
    for output in outputs:
        if not isinstance(output, str) or not output:
            return unreadable_answer(PROVIDER, 200, f"output {output!r} is not an image link")
        if output.startswith("data:"):
            images.append(base64.b64decode(output.partition(",")[2]))
            continue
        if not _trusted(output, api_base):
            return APIError(
                f"{PROVIDER} answered prediction {prediction.id} with an output on "
                f"{yarl.URL(output).host}, which is neither replicate.delivery nor the "
                "deployment's api_base; it was not followed",
                provider=PROVIDER,
                code="untrusted_upstream_url",
            )
        request = UpstreamRequest(
            method="GET",
            url=output,
            provider=PROVIDER,
            timeout=within,
            max_answer_bytes=image_answer_bytes(1),
        )
        response = await http.send(request)
        if response.status in _EXPIRED:
            return APIError(
                f"{PROVIDER}'s output file for prediction {prediction.id} had expired "
                f"({response.status}) before it could be read. Generate the image again.",
                provider=PROVIDER,
                code="result_expired",
                upstream_status=response.status,
            )
        if response.status >= 400:
            raise from_upstream(
                response.status,
                redact(response.body[:300].decode("utf-8", "replace")),
                provider=PROVIDER,
            )
        images.append(response.body)
    return images


def progress_of(logs: str | None) -> float | None:
    """The last percentage a model's progress bar printed, as 0 to 1."""
    found = _PERCENT.findall(logs or "")
    return min(100, int(found[-1])) / 100 if found else None


@dataclass(frozen=True, slots=True)
class ReplicateJob:
    """A prediction that had not finished when it was created; its result is its images."""

    id: str
    api_base: str
    headers: dict[str, str]
    connect_timeout: float
    redact: Redactor
    provider: str = PROVIDER

    async def poll(self, http: Transport, within: float) -> JobStatus[list[bytes]]:
        """GET the prediction; when it succeeded, its output is read too."""
        response = await http.send(self._request("GET", "", within))
        if response.status >= 400:
            raise replicate_error(response, self.redact)
        prediction = decode_prediction(response)
        if prediction.status == "succeeded":
            images = await read_outputs(prediction, http, self.api_base, within, self.redact)
            if isinstance(images, PrismgateError):  # final: polling again cannot help
                return JobStatus(JobState.FAILED, error=images)
            return JobStatus(JobState.SUCCEEDED, result=images)
        if prediction.status in ("failed", "canceled"):
            state = JobState.FAILED if prediction.status == "failed" else JobState.CANCELLED
            return JobStatus(state, error=failure(prediction, self.redact))
        if prediction.status == "processing":
            return JobStatus(JobState.RUNNING, progress=progress_of(prediction.logs))
        return JobStatus(JobState.QUEUED)

    async def cancel(self, http: Transport, within: float) -> bool:
        """POST .../cancel; True when Replicate took it."""
        response = await http.send(self._request("POST", "/cancel", within))
        return response.status < 400

    def _request(self, method: str, tail: str, within: float) -> UpstreamRequest:
        return UpstreamRequest(
            method=method,
            url=f"{self.api_base}/predictions/{self.id}{tail}",
            provider=PROVIDER,
            headers=self.headers,
            timeout=within,
            connect_timeout=self.connect_timeout,
        )
