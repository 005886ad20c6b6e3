"""LimitState contract, run against both backends (in-process, and the real Redis on
127.0.0.1:6379); then what only Redis adds (instances sharing counters, key expiry, an
unreachable server) and the factory."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from prismgate.storage import (
    Holder,
    LimitCheck,
    LimitState,
    MemoryLimitState,
    RedisBreaker,
    RedisLimitState,
    open_shared,
)
from prismgate.storage.redis import connect_redis
from tests.storage.conftest import REDIS_HOST, REDIS_PORT, Backend, FakeClock, RedisFactory

KEY = Holder("key", "digest-1")
OTHER_KEY = Holder("key", "digest-2")
TEAM = Holder("team", "artists")
LEASE = 30.0


@pytest.fixture(params=["memory", "redis"])
async def limits(
    request: pytest.FixtureRequest, prefix: str, redis_client: RedisFactory
) -> AsyncIterator[Backend[LimitState]]:
    state: LimitState
    if request.param == "memory":
        clock = FakeClock()

        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        state = MemoryLimitState(clock=clock)
        backend = Backend[LimitState]("memory", state, advance)
    else:
        state = on_redis(redis_client(), prefix)
        backend = Backend[LimitState]("redis", state, asyncio.sleep)
    yield backend
    await state.aclose()


def on_redis(client: Redis, prefix: str) -> RedisLimitState:
    # About Redis's own atomicity: a deadline a loaded machine can miss would put the
    # breaker's in-process fallback under test instead.
    return RedisLimitState(client, prefix=prefix, breaker=RedisBreaker(client, timeout=5.0))


def call() -> str:
    return uuid.uuid4().hex


def rpm(holder: Holder, limit: int) -> LimitCheck:
    return LimitCheck(holder, "requests", limit, 1)


def ipm(holder: Holder, limit: int, images: int) -> LimitCheck:
    return LimitCheck(holder, "images", limit, images)


def tpm(holder: Holder, limit: int) -> LimitCheck:
    return LimitCheck(holder, "tokens", limit, 0)


def parallel(holder: Holder, limit: int) -> LimitCheck:
    return LimitCheck(holder, "parallel", limit, 1)


# ---- the contract: both backends ----


async def test_exactly_the_limit_passes_under_100_concurrent_takes(
    limits: Backend[LimitState],
) -> None:
    checks = [rpm(KEY, 37), ipm(KEY, 100, 1), parallel(KEY, 60)]
    answers = await asyncio.gather(
        *(limits.store.take(call(), checks, lease=LEASE) for _ in range(100))
    )
    passed = [answer for answer in answers if answer.refused is None]
    assert len(passed) == 37
    # Each let-in call saw a different count left: no two took the same request.
    assert sorted(answer.levels[0].remaining for answer in passed) == list(range(37))
    refused = {answer.refused for answer in answers if answer.refused is not None}
    assert refused == {0}  # the request limit, never the images or slots, refused
    # The refused takes took nothing: 37 images and 37 slots were taken, and now one more.
    after = await limits.store.take(call(), [ipm(KEY, 100, 1), parallel(KEY, 60)], lease=LEASE)
    assert [level.remaining for level in after.levels] == [100 - 38, 60 - 38]


async def test_a_call_takes_from_key_and_team_all_or_none(limits: Backend[LimitState]) -> None:
    state = limits.store
    # The team allows 3 a minute, the key 5: the team refuses the 4th, and the key's
    # counter is left as it was (3 taken, not 4).
    mine = [rpm(KEY, 5), rpm(TEAM, 3)]
    outcomes = [(await state.take(call(), mine, lease=LEASE)).refused for _ in range(4)]
    assert outcomes == [None, None, None, 1]
    alone = await state.take(call(), [rpm(KEY, 5)], lease=LEASE)
    assert alone.refused is None and alone.levels[0].remaining == 1  # 4 taken, not 5
    # Another key of the same team is refused by the team, and its own counter untouched.
    theirs = [rpm(OTHER_KEY, 5), rpm(TEAM, 3)]
    refused = await state.take(call(), theirs, lease=LEASE)
    assert refused.refused == 1 and refused.levels[0].remaining == 5
    # A full parallel counter refuses too, and the per-minute counters stay untouched.
    held = [parallel(TEAM, 1), ipm(OTHER_KEY, 10, 1)]
    assert (await state.take(call(), held, lease=LEASE)).refused is None
    blocked = await state.take(call(), held, lease=LEASE)
    assert blocked.refused == 0 and blocked.retry_after is None
    assert blocked.levels[1].remaining == 9


async def test_retry_after_is_when_the_call_would_pass(limits: Backend[LimitState]) -> None:
    state = limits.store
    images = [ipm(KEY, 4, 2)]  # one image back every 15 s
    for _ in range(2):
        assert (await state.take(call(), images, lease=LEASE)).refused is None
    refused = await state.take(call(), images, lease=LEASE)
    assert refused.refused == 0 and refused.retry_after is not None
    assert 29.8 < refused.retry_after <= 30.0  # two images: 30 s, less the time passed
    assert refused.levels[0].remaining == 0 and 59.8 < refused.levels[0].reset <= 60.0
    # With two counters refusing (15 s and 60 s), the wait is the longer: then both pass.
    assert (await state.take(call(), [rpm(TEAM, 1)], lease=LEASE)).refused is None
    longest = await state.take(call(), [ipm(KEY, 4, 1), rpm(TEAM, 1)], lease=LEASE)
    assert longest.refused == 1 and longest.retry_after is not None
    assert 59.7 < longest.retry_after <= 60.0
    # More than the whole limit can never pass: no retry time.
    never = await state.take(call(), [ipm(OTHER_KEY, 4, 5)], lease=LEASE)
    assert never.refused == 0 and never.retry_after is None
    assert never.levels[0].remaining == 4


async def test_a_bucket_refills_one_unit_per_interval(limits: Backend[LimitState]) -> None:
    state = limits.store
    fast = [rpm(KEY, 60)]  # one request back every second
    answers = [await state.take(call(), fast, lease=LEASE) for _ in range(61)]
    assert [a.refused for a in answers].count(None) == 60 and answers[-1].refused == 0
    retry = answers[-1].retry_after
    assert retry is not None and 0.8 < retry <= 1.0
    await limits.advance(retry + 0.01)
    assert (await state.take(call(), fast, lease=LEASE)).refused is None
    assert (await state.take(call(), fast, lease=LEASE)).refused == 0


async def test_tokens_refuse_once_the_minute_is_used_and_count_after(
    limits: Backend[LimitState],
) -> None:
    state = limits.store
    tokens = [tpm(KEY, 100)]  # one token back every 0.6 s
    first = await state.take(call(), tokens, lease=LEASE)
    assert first.refused is None and first.levels[0].remaining == 100  # nothing taken yet
    await state.finish(call(), tokens, tokens=150)  # an answer larger than the limit
    refused = await state.take(call(), tokens, lease=LEASE)
    assert refused.refused == 0 and refused.retry_after is not None
    # 150 tokens are 90 s of the bucket; one token must be back: 90 + 0.6 - 60 s.
    assert 30.4 < refused.retry_after <= 30.6
    assert refused.levels[0].remaining == 0 and 89.8 < refused.levels[0].reset <= 90.0


async def test_parallel_slots_come_back_when_calls_finish(limits: Backend[LimitState]) -> None:
    state = limits.store
    slots = [parallel(KEY, 2)]
    first, second = call(), call()
    assert (await state.take(first, slots, lease=LEASE)).refused is None
    answer = await state.take(second, slots, lease=LEASE)
    assert answer.refused is None and answer.levels[0].remaining == 0
    assert (await state.take(call(), slots, lease=LEASE)).refused == 0
    await state.finish(first, slots, tokens=0)
    await state.finish(first, slots, tokens=0)  # a second finish frees nothing more
    third = call()
    assert (await state.take(third, slots, lease=LEASE)).refused is None
    assert (await state.take(call(), slots, lease=LEASE)).refused == 0


async def test_a_lease_lapses_unless_renewed(limits: Backend[LimitState]) -> None:
    state = limits.store
    slots = [parallel(KEY, 1)]
    crashed = call()
    assert (await state.take(crashed, slots, lease=0.3)).refused is None
    assert (await state.take(call(), slots, lease=0.3)).refused == 0
    await limits.advance(0.4)  # its instance died: nobody renewed it
    running = call()
    assert (await state.take(running, slots, lease=0.3)).refused is None
    for _ in range(3):  # renewed, it outlives its first lease
        await limits.advance(0.2)
        await state.renew(running, slots, lease=0.3)
    assert (await state.take(call(), slots, lease=0.3)).refused == 0
    await state.renew(crashed, slots, lease=0.3)  # a lapsed lease is not brought back
    await state.finish(running, slots, tokens=0)
    assert (await state.take(call(), slots, lease=0.3)).refused is None


async def test_in_process_counters_that_mean_nothing_are_swept() -> None:
    clock = FakeClock()
    state = MemoryLimitState(clock=clock)
    for i in range(3000):
        holder = Holder("key", str(i))
        await state.take(call(), [rpm(holder, 10), parallel(holder, 2)], lease=LEASE)
    clock.advance(61)  # every bucket is full again, every lease over
    await state.take(call(), [rpm(KEY, 10)], lease=LEASE)
    # Only the newest counter is left (looked at from inside: nothing else shows it).
    assert (len(state._full_at), len(state._slots)) == (1, 0)


# ---- Redis only ----


async def test_two_instances_share_every_counter(redis_client: RedisFactory, prefix: str) -> None:
    one, two = on_redis(redis_client(), prefix), on_redis(redis_client(), prefix)
    checks = [rpm(KEY, 10), parallel(TEAM, 50)]
    answers = await asyncio.gather(
        *(state.take(call(), checks, lease=LEASE) for _ in range(15) for state in (one, two))
    )
    assert sum(answer.refused is None for answer in answers) == 10
    await one.aclose()
    await two.aclose()


async def test_every_counter_expires(redis_client: RedisFactory, prefix: str) -> None:
    client = redis_client()
    state = on_redis(client, prefix)
    running = call()
    checks = [rpm(KEY, 60), ipm(TEAM, 6, 2), tpm(KEY, 1000), parallel(KEY, 3)]
    assert (await state.take(running, checks, lease=LEASE)).refused is None
    await state.finish(call(), checks, tokens=500)
    keys = sorted([key.decode() async for key in client.scan_iter(match=prefix + "*")])
    assert keys == [
        f"{prefix}limit:key:digest-1:parallel",
        f"{prefix}limit:key:digest-1:requests",
        f"{prefix}limit:key:digest-1:tokens",
        f"{prefix}limit:team:artists:images",
    ]
    ttls = {key.rsplit(":", 1)[1]: await client.pttl(key) for key in keys}
    # Each lives until its bucket is full again (1 s, 20 s, 30 s) or its last lease ends.
    assert 0 < ttls["requests"] <= 1_000 and 19_000 < ttls["images"] <= 20_000
    assert 29_000 < ttls["tokens"] <= 30_000 and 29_000 < ttls["parallel"] <= 30_000
    await state.aclose()


async def test_unreachable_redis_limits_in_this_process() -> None:
    clock = FakeClock()
    state = RedisLimitState(connect_redis("redis://127.0.0.1:1/0"), clock=clock)
    checks = [rpm(KEY, 2)]
    outcomes = [(await state.take(call(), checks, lease=LEASE)).refused for _ in range(3)]
    assert outcomes == [None, None, 0]
    assert state.breaker.is_open
    await state.aclose()


async def test_open_shared_builds_limits_beside_the_other_stores(
    redis_client: RedisFactory, prefix: str
) -> None:
    local = open_shared(redis_url=None)
    assert isinstance(local.limits, MemoryLimitState)
    for store in (local.routing, local.cache, local.limits):
        await store.aclose()
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
    shared = open_shared(redis_url=url, prefix=prefix, timeout=5.0)
    assert isinstance(shared.limits, RedisLimitState)
    assert shared.limits.breaker is getattr(shared.routing, "breaker", None)  # one breaker
    await shared.limits.take(call(), [rpm(KEY, 5)], lease=LEASE)
    other = on_redis(redis_client(), prefix)
    seen = await other.take(call(), [rpm(KEY, 5)], lease=LEASE)
    assert seen.levels[0].remaining == 3
    for store in (shared.routing, shared.cache, shared.limits):
        await store.aclose()
    await other.aclose()
