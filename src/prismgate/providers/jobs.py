"""Providers that answer later: a job is submitted, polled until it ends, its result read.

fal's queue, Black Forest Labs and Replicate take a generation as a job and answer with
its id; the image comes seconds or minutes later. `run_job` makes such a call feel like
any other. It polls at growing intervals (or when the provider says to) until the call's
deadline, reports each change to the call's progress callback, and cancels the remote
job when the deadline passes or the caller leaves, where the provider lets it.

A poll that fails in transit (a broken connection, a 5xx, a 429) is polled again: the
job is not lost with it. Nothing is ever submitted twice: once a job id exists, every
error that leaves `run_job` says `request_sent`, so neither a retry nor a fallback
submits the work again (the provider may be making, and billing, it).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from prismgate.errors import (
    APIConnectionError,
    APIError,
    PrismgateError,
    RateLimitError,
    Timeout,
)
from prismgate.transport import Transport

__all__ = [
    "JobProgress",
    "JobState",
    "JobStatus",
    "Polling",
    "ProgressCallback",
    "RemoteJob",
    "run_job",
]

log = logging.getLogger("prismgate.jobs")

T = TypeVar("T")


class JobState(enum.StrEnum):
    """Where a remote job stands, in every provider's words mapped onto five."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class JobStatus(Generic[T]):
    """One poll's answer."""

    state: JobState
    # When SUCCEEDED: what the provider module needs to build its answer.
    result: T | None = None
    # When FAILED: the provider's reason, as the error the caller gets.
    error: PrismgateError | None = None
    progress: float | None = None  # 0 to 1, where the provider says
    queue_position: int | None = None
    # Seconds until the next poll is worth making, where the provider says.
    next_poll: float | None = None


@dataclass(frozen=True, slots=True)
class JobProgress:
    """What a call's progress callback is given each time its job moves."""

    provider: str
    job_id: str
    state: JobState
    elapsed: float  # seconds since the job was submitted
    progress: float | None = None
    queue_position: int | None = None


ProgressCallback = Callable[[JobProgress], None]


class RemoteJob(Protocol[T]):
    """A submitted job, as its provider module reaches it."""

    @property
    def provider(self) -> str: ...
    @property
    def id(self) -> str: ...

    async def poll(self, http: Transport, within: float) -> JobStatus[T]:
        """Where the job stands now (one request of at most `within` seconds)."""
        ...

    async def cancel(self, http: Transport, within: float) -> bool:
        """Ask the provider to stop the job; False where its API cannot."""
        ...


@dataclass(frozen=True, slots=True)
class Polling:
    """How often to ask: `first` seconds after submitting, then `factor` times longer
    each time, at most `longest` apart (a provider's own hint wins, within `longest`)."""

    first: float = 0.25
    factor: float = 1.5
    longest: float = 2.0
    # The most one status request may take, and how long a cancel may take.
    request_timeout: float = 30.0
    cancel_timeout: float = 5.0


async def run_job(
    job: RemoteJob[T],
    http: Transport,
    *,
    within: float,
    on_progress: ProgressCallback | None = None,
    polling: Polling = Polling(),
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Poll `job` until it succeeds (its result), fails (its error), or `within` seconds
    pass (a `Timeout`, the job cancelled). See the module docstring."""
    started = clock()
    deadline = started + within
    delay = polling.first
    last: tuple[JobState, float | None, int | None] | None = None
    try:
        while True:
            remaining = deadline - clock()
            if remaining <= 0:
                raise await _gave_up(job, http, within, polling)
            status = await _poll(job, http, min(remaining, polling.request_timeout))
            if status is not None:
                if status.state is JobState.SUCCEEDED and status.result is not None:
                    return status.result
                if status.state is JobState.SUCCEEDED:
                    raise APIError(
                        f"{job.provider} finished job {job.id} without a result",
                        provider=job.provider,
                    )
                if status.state is JobState.FAILED:
                    raise status.error or APIError(
                        f"{job.provider} job {job.id} failed without saying why",
                        provider=job.provider,
                    )
                if status.state is JobState.CANCELLED:
                    raise APIError(
                        f"{job.provider} job {job.id} was cancelled at the provider",
                        provider=job.provider,
                        code="job_cancelled",
                    )
                now = (status.state, status.progress, status.queue_position)
                if on_progress is not None and now != last:
                    _report(on_progress, job, status, clock() - started)
                last = now
            hint = status.next_poll if status is not None else None
            wait = min(hint if hint is not None else delay, polling.longest)
            await asyncio.sleep(max(0.0, min(wait, deadline - clock())))
            delay = min(delay * polling.factor, polling.longest)
    except PrismgateError as error:
        error.request_sent = True  # the job exists: never submitted again
        raise
    except asyncio.CancelledError:
        # The caller left: the job is stopped where the provider lets us, then we go.
        await _cancel_quietly(job, http, polling)
        raise


async def _poll(job: RemoteJob[T], http: Transport, within: float) -> JobStatus[T] | None:
    """One status request; None when it failed in transit (the job is polled again)."""
    try:
        return await job.poll(http, within)
    except (APIConnectionError, RateLimitError, Timeout) as error:
        log.info("%s job %s: a status poll failed (%s); polling again",
                 job.provider, job.id, type(error).__name__)  # fmt: skip
        return None
    except PrismgateError as error:
        if error.status_code >= 500:
            log.info("%s job %s: a status poll got %s; polling again",
                     job.provider, job.id, error.status_code)  # fmt: skip
            return None
        raise


async def _gave_up(job: RemoteJob[T], http: Transport, within: float, polling: Polling) -> Timeout:
    cancelled = await _cancel_quietly(job, http, polling)
    outcome = "it was cancelled" if cancelled else "it could not be cancelled and may finish"
    return Timeout(
        f"{job.provider} job {job.id} did not finish within the call's timeout of "
        f"{within:g} s; {outcome}. Raise the timeout (timeout= or the deployment's "
        "litellm_params.timeout) for slower models.",
        provider=job.provider,
        code="job_timeout",
    )


async def _cancel_quietly(job: RemoteJob[T], http: Transport, polling: Polling) -> bool:
    """Cancel `job`, shielded from the caller's own cancellation; never raises."""
    attempt = asyncio.ensure_future(job.cancel(http, polling.cancel_timeout))
    try:
        return await asyncio.shield(attempt)
    except asyncio.CancelledError:
        return False  # cancelled again: the cancel request goes on by itself
    except Exception as error:  # a failed cancel must not hide why we cancelled
        log.warning("%s job %s: cancelling failed (%s)", job.provider, job.id,
                    type(error).__name__)  # fmt: skip
        return False


def _report(
    callback: ProgressCallback, job: RemoteJob[T], status: JobStatus[T], elapsed: float
) -> None:
    event = JobProgress(
        provider=job.provider,
        job_id=job.id,
        state=status.state,
        elapsed=round(elapsed, 3),
        progress=status.progress,
        queue_position=status.queue_position,
    )
    try:
        callback(event)
    except Exception:  # a display's failure never fails the call
        log.exception("a progress callback failed")
