"""The engine behind providers that answer with a job: polling, deadline, cancel, progress.

The jobs here are scripted stand-ins for a provider's job (the emulator-backed providers
test the same engine end to end); what is under test is `run_job` itself.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from prismgate.errors import (
    APIConnectionError,
    AuthenticationError,
    ContentPolicyViolationError,
    PrismgateError,
    ServiceUnavailableError,
    Timeout,
)
from prismgate.providers.jobs import JobProgress, JobState, JobStatus, Polling, run_job
from prismgate.transport import Transport

FAST = Polling(first=0.01, factor=2, longest=0.04, cancel_timeout=1)
NO_HTTP: Transport = None  # type: ignore[assignment]  # the scripted jobs send nothing


@dataclass
class ScriptedJob:
    """Answers each poll with the next step: a status, or an error to raise."""

    steps: list[JobStatus[str] | PrismgateError]
    cancellable: bool = True
    provider: str = "scripted"
    id: str = "job-1"
    polls: int = 0
    cancels: int = 0
    poll_times: list[float] = field(default_factory=list)

    async def poll(self, http: Transport, within: float) -> JobStatus[str]:
        self.poll_times.append(asyncio.get_running_loop().time())
        step = self.steps[min(self.polls, len(self.steps) - 1)]
        self.polls += 1
        if isinstance(step, PrismgateError):
            raise step
        return step

    async def cancel(self, http: Transport, within: float) -> bool:
        self.cancels += 1
        return self.cancellable


QUEUED: JobStatus[str] = JobStatus(JobState.QUEUED, queue_position=2)
RUNNING: JobStatus[str] = JobStatus(JobState.RUNNING, progress=0.5)
DONE: JobStatus[str] = JobStatus(JobState.SUCCEEDED, result="the image")


async def test_a_job_is_polled_until_it_succeeds_and_each_move_is_reported_once() -> None:
    job = ScriptedJob([QUEUED, QUEUED, RUNNING, RUNNING, DONE])
    seen: list[JobProgress] = []
    assert await run_job(job, NO_HTTP, within=5, on_progress=seen.append, polling=FAST) == (
        "the image"
    )
    assert job.polls == 5 and job.cancels == 0
    assert [(p.state, p.queue_position, p.progress) for p in seen] == [
        (JobState.QUEUED, 2, None),
        (JobState.RUNNING, None, 0.5),
    ]
    assert all(p.job_id == "job-1" and p.provider == "scripted" for p in seen)
    assert seen[0].elapsed <= seen[1].elapsed


async def test_polls_that_fail_in_transit_are_polled_again() -> None:
    job = ScriptedJob(
        [
            QUEUED,
            APIConnectionError("reset", provider="scripted"),
            ServiceUnavailableError("busy", provider="scripted"),
            DONE,
        ]
    )
    assert await run_job(job, NO_HTTP, within=5, polling=FAST) == "the image"
    assert job.polls == 4


async def test_a_failed_job_raises_its_reason_marked_as_sent() -> None:
    refused = ContentPolicyViolationError("the prompt was refused", provider="scripted")
    job = ScriptedJob([QUEUED, JobStatus(JobState.FAILED, error=refused)])
    with pytest.raises(ContentPolicyViolationError) as raised:
        await run_job(job, NO_HTTP, within=5, polling=FAST)
    assert raised.value is refused
    assert raised.value.request_sent  # never submitted again by a retry or a fallback


async def test_a_job_cancelled_at_the_provider_is_an_error() -> None:
    job = ScriptedJob([JobStatus(JobState.CANCELLED)])
    with pytest.raises(PrismgateError, match="job job-1 was cancelled at the provider"):
        await run_job(job, NO_HTTP, within=5, polling=FAST)


async def test_a_poll_the_provider_refuses_ends_the_call() -> None:
    job = ScriptedJob([QUEUED, AuthenticationError("bad key", provider="scripted")])
    with pytest.raises(AuthenticationError) as raised:
        await run_job(job, NO_HTTP, within=5, polling=FAST)
    assert raised.value.request_sent and job.polls == 2


@pytest.mark.parametrize(
    ("cancellable", "said"), [(True, "it was cancelled"), (False, "it could not be cancelled")]
)
async def test_the_deadline_cancels_the_job_and_says_so(cancellable: bool, said: str) -> None:
    job = ScriptedJob([RUNNING], cancellable=cancellable)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Timeout) as raised:
        await run_job(job, NO_HTTP, within=0.2, polling=FAST)
    assert 0.2 <= loop.time() - started < 1.5
    assert job.cancels == 1
    assert said in raised.value.message and "job job-1" in raised.value.message
    assert raised.value.request_sent and raised.value.code == "job_timeout"


async def test_a_caller_who_leaves_cancels_the_job() -> None:
    job = ScriptedJob([RUNNING])
    task = asyncio.ensure_future(run_job(job, NO_HTTP, within=30, polling=FAST))
    while job.polls < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert job.cancels == 1


async def test_waits_grow_to_the_longest_and_follow_the_providers_hint() -> None:
    job = ScriptedJob([RUNNING] * 6 + [DONE])
    await run_job(job, NO_HTTP, within=5, polling=FAST)
    gaps = [b - a for a, b in zip(job.poll_times, job.poll_times[1:], strict=False)]
    assert gaps[0] < gaps[2]  # growing
    assert max(gaps) < FAST.longest + 0.03  # never longer than `longest` (some slack)
    hinted = ScriptedJob([JobStatus(JobState.RUNNING, next_poll=0.0)] * 5 + [DONE])
    await run_job(hinted, NO_HTTP, within=5, polling=Polling(first=1, longest=1))
    assert hinted.poll_times[-1] - hinted.poll_times[0] < 0.5  # the hint, not 1 s a poll


async def test_a_progress_display_that_fails_never_fails_the_call() -> None:
    def broken(_progress: JobProgress) -> None:
        raise RuntimeError("the terminal went away")

    job = ScriptedJob([QUEUED, RUNNING, DONE])
    assert await run_job(job, NO_HTTP, within=5, on_progress=broken, polling=FAST) == "the image"
