"""The limiter: which calls a caller's limits let in, what a refusal says, when slots come
back (a call's end, its error, its cancellation, a stream's last event); and the gateway
calling it, over the real in-process limit store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from prismgate import Gateway, ImageGenerationRequest, load_config
from prismgate.errors import APIError, BudgetExceededError, LimitReachedError
from prismgate.gateway import CallOptions
from prismgate.identity import SDK_CALLER, Principal
from prismgate.identity.limits import FREE, Admission, Limiter, images_asked
from prismgate.observability.redaction import Redactor
from prismgate.rate_limit_headers import wait_text
from prismgate.storage import LimitState, MemoryLimitState, RedisBreaker, RedisLimitState
from prismgate.storage.records import KeyRecord, Limits, TeamRecord, UserRecord
from prismgate.streaming import RelayedStream
from prismgate.types import CallMeta, Served
from prismgate.types.chat import ChatCompletionRequest
from prismgate.types.meta import RateLimitStatus
from prismgate.types.validation import convert_request


@pytest.fixture(params=["memory", "redis"])
async def state(request: pytest.FixtureRequest) -> AsyncIterator[LimitState]:
    """A limit store on real time: in this process, or on the real Redis under a prefix of
    this test's own (deleted at the end)."""
    if request.param == "memory":
        yield MemoryLimitState()
        return
    prefix = f"prismgate-test:{uuid.uuid4().hex}:"
    client = Redis(host="127.0.0.1", port=6379)
    yield RedisLimitState(client, prefix=prefix, breaker=RedisBreaker(client, timeout=5.0))
    cleaner = Redis(host="127.0.0.1", port=6379)
    keys = [key async for key in cleaner.scan_iter(match=prefix + "*")]
    assert all([await cleaner.pttl(key) > 0 for key in keys])  # nothing is kept for ever
    if keys:
        await cleaner.delete(*keys)
    await cleaner.aclose()
    await client.aclose()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


NO_LIMITS = Limits()


def caller(
    key: Limits = NO_LIMITS, team: Limits | None = None, user: Limits | None = None
) -> Principal:
    """A key called ci-bot, in team painters and of user ada when they have limits."""
    painters = (
        None if team is None else TeamRecord(team_id="t-1", team_alias="painters", limits=team)
    )
    return Principal(
        role="key",
        scope="key-digest",
        key=KeyRecord(token="key-digest", key_name="sk-...wxyz", key_alias="ci-bot", limits=key),
        team=painters,
        user=None if user is None else UserRecord(user_id="ada", limits=user),
    )


META = CallMeta(provider="mock", model="m", model_group="m")


def served(value: object = "answer") -> Served[object]:
    return Served(value, META)


def no_tokens(_: object) -> int:
    return 0


def levels(statuses: tuple[RateLimitStatus, ...]) -> list[tuple[str, int, int, float]]:
    return [(s.unit, s.limit, s.remaining, round(s.reset, 3)) for s in statuses]


async def use(admission: Admission, tokens: Callable[[object], int] = no_tokens) -> None:
    async with admission:
        admission.served(served(), tokens)


def test_a_caller_without_limits_costs_nothing() -> None:
    limiter = Limiter(MemoryLimitState())
    unlimited = caller(team=Limits(), user=Limits())
    for principal in (SDK_CALLER, Principal(role="open", scope="x"), unlimited):
        assert limiter.admit(principal, images=4) is FREE
    # A key whose only limit is on images costs nothing on a chat call either.
    assert limiter.admit(caller(Limits(ipm_limit=4)), images=0) is FREE
    assert FREE.served(answer := served(), no_tokens) is answer


async def test_a_refusal_names_the_key_its_limit_and_when_to_retry() -> None:
    limiter = Limiter(MemoryLimitState(clock=FakeClock()))
    principal = caller(Limits(ipm_limit=4, rpm_limit=100))
    for _ in range(2):
        await use(limiter.admit(principal, images=2))
    with pytest.raises(LimitReachedError) as refused:
        await use(limiter.admit(principal, images=2))
    error = refused.value
    assert error.status_code == 429 and error.retry_after == 30.0
    assert error.message == (
        "Rate limit reached for key 'ci-bot' on images per minute (ipm_limit): limit 4, "
        "remaining 0, requested 2. Please try again in 30s."
    )
    body = error.wire_body().error
    assert (body.type, body.code, body.param) == ("images", "rate_limit_exceeded", None)
    assert levels(error.rate_limits) == [("requests", 100, 98, 1.2), ("images", 4, 0, 60.0)]
    with pytest.raises(LimitReachedError, match=r"asks for 5 images.*never pass") as never:
        await use(limiter.admit(caller(Limits(ipm_limit=4)), images=5))
    assert never.value.retry_after is None


async def test_a_team_limit_is_shared_by_its_keys_and_named_when_it_refuses() -> None:
    limiter = Limiter(MemoryLimitState(clock=FakeClock()))
    one = caller(Limits(rpm_limit=10), team=Limits(rpm_limit=2))
    other = Principal(
        role="key",
        scope="other",
        key=KeyRecord(token="other-digest", key_name="sk-...abcd"),
        team=one.team,
    )
    await use(limiter.admit(one))
    await use(limiter.admit(other))
    with pytest.raises(LimitReachedError, match="for team 'painters' on requests per") as refused:
        await use(limiter.admit(one))
    assert refused.value.wire_body().error.type == "requests"
    assert refused.value.retry_after == 30.0
    # The headers show the tightest limit: the team's.
    assert levels(refused.value.rate_limits) == [("requests", 2, 0, 60.0)]
    # The refused call took nothing from the key's own limit: 1 of 10 taken, now 2.
    async with limiter.admit(caller(Limits(rpm_limit=10))) as admission:
        alone = admission.served(served(), no_tokens)
    assert levels(alone.meta.rate_limits) == [("requests", 10, 8, 12.0)]


async def test_user_limits_count_too() -> None:
    limiter = Limiter(MemoryLimitState(clock=FakeClock()))
    principal = caller(user=Limits(max_parallel_requests=1))
    async with limiter.admit(principal):
        with pytest.raises(LimitReachedError, match="user 'ada' on parallel") as refused:
            await use(limiter.admit(principal))
    assert refused.value.wire_body().error.type == "parallel_requests"
    assert refused.value.retry_after == 1.0
    await use(limiter.admit(principal))


async def test_served_counts_tokens_and_reports_every_limited_unit() -> None:
    limiter = Limiter(MemoryLimitState(clock=FakeClock()))
    principal = caller(Limits(tpm_limit=100), team=Limits(rpm_limit=10))
    async with limiter.admit(principal) as admission:
        answer = admission.served(served(), lambda _: 30)
    assert answer.value == "answer"
    assert levels(answer.meta.rate_limits) == [
        ("tokens", 100, 70, 18.0),
        ("requests", 10, 9, 6.0),
    ]
    async with limiter.admit(principal) as admission:
        again = admission.served(served(), no_tokens)
    assert again.meta.rate_limits[0].remaining == 70  # the 30 tokens were counted


async def test_a_slot_comes_back_when_the_call_fails(state: LimitState) -> None:
    limiter = Limiter(state)
    principal = caller(Limits(max_parallel_requests=1, rpm_limit=50))
    with pytest.raises(APIError) as failed:
        async with limiter.admit(principal):
            raise APIError("the provider failed")
    # A limited caller's failures carry its limits too (the x-ratelimit-* headers).
    assert [status.unit for status in failed.value.rate_limits] == ["requests"]
    with pytest.raises(BudgetExceededError):  # refused after it was let in
        async with limiter.admit(principal):
            raise BudgetExceededError("over budget")
    await use(limiter.admit(principal))


async def test_a_slot_comes_back_when_the_call_is_cancelled(state: LimitState) -> None:
    limiter = Limiter(state)
    principal = caller(Limits(max_parallel_requests=1))
    entered = asyncio.Event()

    async def call() -> None:
        async with limiter.admit(principal):
            entered.set()
            await asyncio.Event().wait()  # a slow upstream call

    task = asyncio.create_task(call())
    await entered.wait()
    with pytest.raises(LimitReachedError):
        await use(limiter.admit(principal))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await use(limiter.admit(principal))


async def test_a_running_call_keeps_its_slot_past_its_lease(state: LimitState) -> None:
    limiter = Limiter(state, lease=0.3)  # renewed every 0.1 s
    principal = caller(Limits(max_parallel_requests=1))
    async with limiter.admit(principal):
        await asyncio.sleep(0.7)  # more than two leases
        with pytest.raises(LimitReachedError):
            await use(limiter.admit(principal))
    await use(limiter.admit(principal))


async def test_a_stream_keeps_its_slot_until_it_is_closed(state: LimitState) -> None:
    limiter = Limiter(state)
    principal = caller(Limits(max_parallel_requests=1))

    async def events() -> AsyncGenerator[bytes, None]:
        yield b"data: 2\n\n"
        yield b"data: [DONE]\n\n"

    relayed = RelayedStream(b"data: 1\n\n", events(), redact=Redactor([]), cost_of=lambda _: None)
    async with limiter.admit(principal) as admission:
        opened = admission.served(served(relayed), no_tokens)
    with pytest.raises(LimitReachedError):  # the call ended; its stream is still being read
        await use(limiter.admit(principal))
    stream = opened.value
    assert isinstance(stream, RelayedStream)
    assert [event async for event in stream] == [
        b"data: 1\n\n",
        b"data: 2\n\n",
        b"data: [DONE]\n\n",
    ]
    await use(limiter.admit(principal))


async def test_a_stream_never_read_frees_its_slot_when_closed(state: LimitState) -> None:
    limiter = Limiter(state)
    principal = caller(Limits(max_parallel_requests=1))

    async def events() -> AsyncGenerator[bytes, None]:
        yield b"data: [DONE]\n\n"

    relayed = RelayedStream(b"data: 1\n\n", events(), redact=Redactor([]), cost_of=lambda _: None)
    async with limiter.admit(principal) as admission:
        admission.served(served(relayed), no_tokens)
    with pytest.raises(LimitReachedError):
        await use(limiter.admit(principal))
    await relayed.aclose()  # what the proxy does after the answer, read or not
    await use(limiter.admit(principal))


def test_images_asked_and_wait_text() -> None:
    assert images_asked(ImageGenerationRequest(prompt="x")) == 1
    assert images_asked(ImageGenerationRequest(prompt="x", n=3)) == 3
    chat = convert_request(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2},
        ChatCompletionRequest,
    )
    assert images_asked(chat) == 0
    waits = [0, 0.0004, 0.3, 1, 1.5, 59.9999, 360, 3723.25]
    assert [wait_text(w) for w in waits] == [
        "0s", "1ms", "300ms", "1s", "1.5s", "1m0s", "6m0s", "1h2m3.25s",
    ]  # fmt: skip


async def test_the_gateway_admits_image_and_chat_calls() -> None:
    config = load_config(
        {
            "model_list": [
                {"model_name": "otters", "litellm_params": {"model": "mock/otters"}},
                {"model_name": "chat", "litellm_params": {"model": "mock/llava"}},
            ]
        },
        environ={},
    )
    images = CallOptions(principal=caller(Limits(ipm_limit=3)))
    chatting = CallOptions(principal=caller(Limits(tpm_limit=5, rpm_limit=100)))
    chat = convert_request(
        {"model": "chat", "messages": [{"role": "user", "content": "say something long"}]},
        ChatCompletionRequest,
    )
    async with Gateway(config) as gateway:
        request = ImageGenerationRequest(prompt="an otter", model="otters", size="64x64", n=2)
        first = await gateway.image_generation(request, images)
        [status] = first.meta.rate_limits
        assert (status.unit, status.limit, status.remaining) == ("images", 3, 1)
        # 40 s, computed from clock readings: allow float rounding (40.0000000000009).
        assert status.reset == pytest.approx(40.0, abs=0.1)
        assert status.reset <= 40.0 + 1e-6
        with pytest.raises(LimitReachedError, match="requested 2"):
            await gateway.image_generation(request, images)
        answered = await gateway.chat_completion(chat, chatting)
        assert answered.value.usage is not None and answered.value.usage.total_tokens > 5
        by_unit = {status.unit: status for status in answered.meta.rate_limits}
        assert by_unit["tokens"].remaining == 0 and by_unit["requests"].remaining == 99
        with pytest.raises(LimitReachedError, match="tokens per minute"):
            await gateway.chat_completion(chat, chatting)


async def test_a_call_larger_than_the_whole_limit_is_final(state: LimitState) -> None:
    limiter = Limiter(state)
    with pytest.raises(LimitReachedError, match="can never pass") as refused:
        await use(limiter.admit(caller(Limits(ipm_limit=2)), images=3))
    assert refused.value.retry_after is None and not refused.value.retryable
