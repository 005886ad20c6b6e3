"""fal's queue: a request is submitted, its status polled, its result read, or cancelled.

    POST {queue}/{model_id}                         → {request_id, status_url, response_url,
                                                       cancel_url}
    GET  {queue}/{owner}/{app}/requests/{id}/status → IN_QUEUE (queue_position),
                                                       IN_PROGRESS, COMPLETED (error?)
    GET  {queue}/{owner}/{app}/requests/{id}        → the model's output, or its error
    PUT  {queue}/{owner}/{app}/requests/{id}/cancel → 202, or 400 ALREADY_COMPLETED

The status, result and cancel paths name the app without the model's subpath
(`fal-ai/flux/dev` is polled under `fal-ai/flux`). A job `FalJob` is driven by
`prismgate.providers.jobs.run_job`; this module says what one poll and one cancel are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from prismgate.errors import PrismgateError, from_upstream, unreadable_answer
from prismgate.observability.redaction import Redactor
from prismgate.providers.jobs import JobState, JobStatus
from prismgate.transport import (
    JSON_ANSWER_BYTES,
    Transport,
    UpstreamRequest,
    UpstreamResponse,
    retry_after_seconds,
)

__all__ = ["PROVIDER", "FalImage", "FalJob", "FalOutput", "fal_error", "read_output", "submit"]

PROVIDER = "fal_ai"
# Apps under these namespaces have one more segment before their name (fal's client).
_NAMESPACES = ("workflows", "comfy")
# fal's status for a job the caller cancelled (its request error types).
_CANCELLED = frozenset({"client_cancelled"})


class FalImage(msgspec.Struct):
    url: str
    width: int | None = None
    height: int | None = None
    content_type: str | None = None


class FalOutput(msgspec.Struct):
    """An image model's output: `images`, the `seed` used, and per image whether the
    safety checker flagged it."""

    images: list[FalImage] = msgspec.field(default_factory=list)
    seed: int | None = None
    has_nsfw_concepts: list[bool] | None = None


class _Submitted(msgspec.Struct):
    request_id: str
    status_url: str | None = None
    response_url: str | None = None
    cancel_url: str | None = None


class _Status(msgspec.Struct):
    status: str
    queue_position: int | None = None
    error: str | None = None
    error_type: str | None = None


class _ModelError(msgspec.Struct):
    loc: list[str | int] = msgspec.field(default_factory=list)
    msg: str = ""
    type: str | None = None


class _ErrorBody(msgspec.Struct):
    # A list of model errors (validation, content checks) or one request error's text.
    detail: list[_ModelError] | str | None = None
    error_type: str | None = None


def fal_error(response: UpstreamResponse, redact: Redactor, context: str = "") -> PrismgateError:
    """fal's error answers in the tree, `context` leading the message. Model errors are
    `{"detail": [{loc, msg, type}]}` (a `content_policy_violation` one becomes a content
    policy refusal); request errors are `{"detail": "...", "error_type": "..."}` (the type
    also in `X-Fal-Error-Type`)."""
    body = _ErrorBody()
    with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
        body = msgspec.json.decode(response.body, type=_ErrorBody)
    code = body.error_type or response.headers.get("x-fal-error-type")
    param = None
    if isinstance(body.detail, list) and body.detail:
        first = body.detail[0]
        code = first.type or code
        fields = [str(part) for part in first.loc if part != "body"]
        param = fields[0] if fields else None
        text = "; ".join(
            f"{'.'.join(str(p) for p in e.loc if p != 'body') or 'body'}: {e.msg}"
            for e in body.detail
        )
    elif isinstance(body.detail, str):
        text = body.detail
    else:
        text = response.body[:300].decode("utf-8", "replace") or "(empty body)"
    message = context + redact(text)
    status = response.status
    if code == "content_policy_violation":
        # fal answers 422; the tree's refusal is a 400, as OpenAI's is.
        status = 400
    return from_upstream(
        status,
        message,
        provider=PROVIDER,
        code=code,
        param=param,
        retry_after=retry_after_seconds(response.headers),
    )


def read_output(response: UpstreamResponse) -> FalOutput:
    """A successful answer (the sync host's, or a queued job's result) as an output."""
    try:
        return msgspec.json.decode(response.body, type=FalOutput)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise unreadable_answer(
            PROVIDER, response.status, f"not fal's image output ({exc})"
        ) from exc


@dataclass(frozen=True, slots=True)
class FalJob:
    """One queued request at fal, as `run_job` polls and cancels it."""

    id: str
    status_url: str
    response_url: str
    cancel_url: str
    headers: Mapping[str, str]
    redact: Redactor
    connect_timeout: float
    # The result can carry its images inline (`sync_mode` data URIs).
    max_answer_bytes: int
    provider: str = PROVIDER

    async def poll(self, http: Transport, within: float) -> JobStatus[FalOutput]:
        """The status; on COMPLETED, the result read too (or the job's error)."""
        answer = await http.send(self._request("GET", self.status_url, within))
        if answer.status >= 400:
            raise fal_error(answer, self.redact)  # run_job polls again after a 5xx or 429
        try:
            status = msgspec.json.decode(answer.body, type=_Status)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise unreadable_answer(PROVIDER, answer.status, f"not a queue status ({exc})") from exc
        if status.status == "IN_QUEUE":
            return JobStatus(JobState.QUEUED, queue_position=status.queue_position)
        if status.status == "IN_PROGRESS":
            return JobStatus(JobState.RUNNING)
        if status.status != "COMPLETED":
            raise unreadable_answer(PROVIDER, answer.status, f"unknown status {status.status!r}")
        if status.error_type in _CANCELLED:
            return JobStatus(JobState.CANCELLED)
        result = await http.send(
            self._request("GET", self.response_url, within, self.max_answer_bytes)
        )
        if result.status < 400:
            return JobStatus(JobState.SUCCEEDED, result=read_output(result))
        if status.error is None and result.status >= 500:
            raise fal_error(result, self.redact)  # not readable this time: polled again
        failure = fal_error(result, self.redact, context=f"job {self.id} failed: ")
        return JobStatus(JobState.FAILED, error=failure)

    async def cancel(self, http: Transport, within: float) -> bool:
        """Ask fal to drop the job (queued) or stop it (running); False when fal says it
        is already completed or unknown."""
        answer = await http.send(self._request("PUT", self.cancel_url, within))
        return answer.status < 300

    def _request(
        self, method: str, url: str, within: float, max_answer_bytes: int | None = None
    ) -> UpstreamRequest:
        return UpstreamRequest(
            method=method,
            url=url,
            provider=PROVIDER,
            headers=self.headers,
            timeout=within,
            connect_timeout=min(self.connect_timeout, within),
            max_answer_bytes=max_answer_bytes or JSON_ANSWER_BYTES,
        )


async def submit(
    http: Transport,
    base: str,
    model: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    within: float,
    connect_timeout: float,
    redact: Redactor,
    max_answer_bytes: int,
) -> FalJob:
    """Put a request in fal's queue. A failure here follows the normal retry rules: no
    job exists yet (unless the answer was lost on the way, which transport reports)."""
    answer = await http.send(
        UpstreamRequest(
            method="POST",
            url=f"{base}/{model}",
            provider=PROVIDER,
            headers={**headers, "Content-Type": "application/json"},
            body=body,
            timeout=within,
            connect_timeout=connect_timeout,
        )
    )
    if answer.status >= 400:
        raise fal_error(answer, redact)
    try:
        submitted = msgspec.json.decode(answer.body, type=_Submitted)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise unreadable_answer(PROVIDER, answer.status, f"no request_id ({exc})") from exc
    requests = f"{base}/{_app(model)}/requests/{submitted.request_id}"
    return FalJob(
        id=submitted.request_id,
        status_url=_trusted(submitted.status_url, base) or requests + "/status",
        response_url=_trusted(submitted.response_url, base) or requests,
        cancel_url=_trusted(submitted.cancel_url, base) or requests + "/cancel",
        headers=headers,
        redact=redact,
        connect_timeout=connect_timeout,
        max_answer_bytes=max_answer_bytes,
    )


def _app(model: str) -> str:
    """`fal-ai/flux/dev` → `fal-ai/flux`: the queue's paths name the app, not its subpath."""
    parts = model.split("/")
    keep = 3 if parts[0] in _NAMESPACES else 2
    return "/".join(parts[:keep])


def _trusted(url: str | None, base: str) -> str | None:
    """A URL fal's answer gave, used only on the host we submitted to: the key is sent
    with every poll, so it never follows an answer to another host."""
    return url if url is not None and url.startswith(base + "/") else None
