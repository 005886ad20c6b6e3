"""A Black Forest Labs task as a `RemoteJob`: polled at the `polling_url` BFL gave, its
image fetched from the signed `sample` link the moment it is ready.

BFL routes a task to whichever cluster takes it and says where to ask in `polling_url`
(its docs: poll that exact URL, do not rebuild it). An answer must not make the gateway
call an arbitrary host, so that URL, and the `sample` link, are followed only when they
point at a BFL host (`*.bfl.ai` over https) or at the deployment's own `api_base` (an
emulator, a proxy in front of BFL). The `sample` link expires about ten minutes after
the task ends, so the image is read at once and returned as base64.
"""

from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass

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

__all__ = ["PROVIDER", "BflJob", "bfl_error", "trusted_url"]

PROVIDER = "black_forest_labs"
_BFL_DOMAIN = "bfl.ai"
_MODERATED = {"Content Moderated": "the generated image", "Request Moderated": "the request"}
# Statuses that mean the sample link is gone (BFL's delivery hosts are object stores).
_EXPIRED = frozenset({403, 404, 410})


def trusted_url(url: str, api_base: str) -> bool:
    """Whether the gateway may follow `url` from a BFL answer: https on a BFL host, or
    the deployment's `api_base`."""
    return followable(url, api_base, (_BFL_DOMAIN,))


def untrusted(what: str, url: str, task_id: str) -> APIError:
    """The error for an answer that points outside BFL: never followed."""
    host = yarl.URL(url).host if url else None
    return APIError(
        f"{PROVIDER} answered task {task_id} with a {what} on {host or 'no host'}, which is "
        "neither a BFL host (*.bfl.ai over https) nor the deployment's api_base; it was not "
        "followed. Check the deployment's api_base.",
        provider=PROVIDER,
        code="untrusted_upstream_url",
        upstream_status=502,
        request_sent=True,
    )


class _ValidationItem(msgspec.Struct):
    msg: str = ""
    loc: list[str | int] = msgspec.field(default_factory=list)


class _ErrorBody(msgspec.Struct):
    detail: str | list[_ValidationItem] | None = None


def bfl_error(response: UpstreamResponse, redact: Redactor) -> PrismgateError:
    """BFL's FastAPI errors, `{"detail": "..."}` or a 422's `{"detail": [{"loc", "msg",
    "type"}]}`, into the tree; a 422 names the field it is about."""
    body = _ErrorBody()
    with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
        body = msgspec.json.decode(response.body, type=_ErrorBody)
    param = None
    if isinstance(body.detail, list):
        parts = []
        for item in body.detail:
            where = [str(part) for part in item.loc if part != "body"]
            parts.append(f"{'.'.join(where)}: {item.msg}" if where else item.msg)
            param = param or (where[-1] if where else None)
        text = "; ".join(parts)
    else:
        text = body.detail or response.body[:300].decode("utf-8", "replace") or "(empty body)"
    return from_upstream(
        response.status,
        redact(text),
        provider=PROVIDER,
        param=param,
        retry_after=retry_after_seconds(response.headers),
    )


class _Result(msgspec.Struct):
    sample: str | None = None


class _Poll(msgspec.Struct):
    status: str
    result: _Result | None = None
    progress: float | None = None
    details: object = None


@dataclass(frozen=True, slots=True)
class BflJob:
    """One submitted task; its result is the image's bytes."""

    id: str
    polling_url: str
    api_key: str | None
    api_base: str
    connect_timeout: float
    redact: Redactor
    provider: str = PROVIDER

    async def poll(self, http: Transport, within: float) -> JobStatus[bytes]:
        """GET the polling URL; when the task is Ready, its image is fetched too."""
        request = UpstreamRequest(
            method="GET",
            url=self.polling_url,
            provider=PROVIDER,
            headers={"x-key": self.api_key or "", "accept": "application/json"},
            timeout=within,
            connect_timeout=self.connect_timeout,
        )
        response = await http.send(request)
        if response.status >= 400:
            raise bfl_error(response, self.redact)
        try:
            answer = msgspec.json.decode(response.body, type=_Poll)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise unreadable_answer(PROVIDER, response.status, f"not BFL's result ({exc})") from exc
        return await self._status(answer, http, within)

    async def _status(self, answer: _Poll, http: Transport, within: float) -> JobStatus[bytes]:
        progress = _fraction(answer.progress)
        if answer.status == "Ready":
            sample = answer.result.sample if answer.result else None
            if not sample:
                raise unreadable_answer(PROVIDER, 200, f"task {self.id} is Ready without a sample")
            image = await self._fetch(sample, http, within)
            if isinstance(image, PrismgateError):  # final: polling again cannot help
                return JobStatus(JobState.FAILED, error=image)
            return JobStatus(JobState.SUCCEEDED, result=image)
        if answer.status in ("Pending", "Processing"):
            started = answer.status == "Processing" or bool(progress)
            return JobStatus(JobState.RUNNING if started else JobState.QUEUED, progress=progress)
        return JobStatus(JobState.FAILED, error=self._failure(answer))

    def _failure(self, answer: _Poll) -> PrismgateError:
        details = self.redact(str(answer.details)) if answer.details else ""
        said = f" ({details})" if details else ""
        if answer.status in _MODERATED:
            return ContentPolicyViolationError(
                f"{PROVIDER}'s moderation refused {_MODERATED[answer.status]} "
                f"({answer.status}){said}. Change the prompt or input image and try again "
                "(a higher safety_tolerance relaxes the check).",
                provider=PROVIDER,
                upstream_message=answer.status + said,
            )
        if answer.status == "Task not found":
            return APIError(
                f"{PROVIDER} no longer knows task {self.id} (Task not found)",
                provider=PROVIDER,
                code="job_not_found",
            )
        return APIError(
            f"{PROVIDER} task {self.id} failed: {answer.status}{said}",
            provider=PROVIDER,
            code="job_failed",
            upstream_message=answer.status + said,
        )

    async def _fetch(self, url: str, http: Transport, within: float) -> bytes | PrismgateError:
        """The image's bytes; the error when the link is foreign or expired. A failure in
        transit or a 5xx is raised, and the task polled (and its link read) again."""
        # A signed link: it needs no key, and BFL's key is not sent to the delivery host.
        if not trusted_url(url, self.api_base):
            return untrusted("result link", url, self.id)
        request = UpstreamRequest(
            method="GET",
            url=url,
            provider=PROVIDER,
            timeout=within,
            connect_timeout=self.connect_timeout,
            max_answer_bytes=image_answer_bytes(1),
        )
        response = await http.send(request)
        if response.status in _EXPIRED:
            return APIError(
                f"{PROVIDER}'s result link for task {self.id} had expired ({response.status}) "
                "before the image could be fetched; the image is lost. Generate it again.",
                provider=PROVIDER,
                code="result_expired",
                upstream_status=response.status,
            )
        if response.status >= 400:
            raise from_upstream(
                response.status,
                self.redact(response.body[:300].decode("utf-8", "replace")),
                provider=PROVIDER,
            )
        return response.body

    async def cancel(self, http: Transport, within: float) -> bool:
        """BFL's API has no way to cancel a task."""
        return False


def _fraction(progress: float | None) -> float | None:
    """BFL's progress as 0 to 1 (a value above 1 is taken as a percentage)."""
    if progress is None:
        return None
    return min(1.0, progress / 100 if progress > 1 else progress)


def b64(image: bytes) -> str:
    """The image as the base64 text OpenAI's `b64_json` carries."""
    return base64.b64encode(image).decode()
