"""RoutingState contract, run against both backends; then what only Redis adds (instances
sharing state, key expiry, an unreachable server), and the factory."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time

import pytest

from prismgate.errors import ConfigError
from prismgate.storage import (
    MemoryCacheStore,
    MemoryRoutingState,
    RedisBreaker,
    RedisCacheStore,
    RedisRoutingState,
    RoutingState,
    Usage,
    open_shared_state,
    redis_url_from,
)
from prismgate.storage.redis import connect_redis
from tests.storage.conftest import (
    REDIS_HOST,
    REDIS_PORT,
    Backend,
    FakeClock,
    RedisFactory,
    settle_minute,
)

# ---- the contract: both backends ----


async def test_nothing_cools_down_unless_told(routing: Backend[RoutingState]) -> None:
    state = routing.store
    assert await state.cooled_down(["a", "b"]) == frozenset()
    assert await state.cooled_down([]) == frozenset()
    await state.cool_down("a", 10)
    assert await state.cooled_down(["a", "b"]) == {"a"}
    assert await state.cooled_down(["b"]) == frozenset()


async def test_cooldowns_say_how_long_and_why(routing: Backend[RoutingState]) -> None:
    state = routing.store
    assert await state.cooldowns([]) == {}
    await state.cool_down("a", 10, "openai returned 500: boom")
    await state.cool_down("a", 2, "openai returned 503: later")  # shorter: the reason moves
    assert await state.record_failure(
        "b", allowed_fails=0, window=10, cooldown=5, reason="openai returned 429"
    )
    await state.cool_down("c", 10)
    found = await state.cooldowns(["a", "b", "c", "d"])
    assert set(found) == {"a", "b", "c"}
    assert found["a"].reason == "openai returned 503: later" and 9 < found["a"].left <= 10
    assert found["b"].reason == "openai returned 429" and 4 < found["b"].left <= 5
    assert found["c"].left > 9 and found["c"].reason == ""
    await routing.advance(5.1)
    assert set(await state.cooldowns(["a", "b", "c"])) == {"a", "c"}


async def test_cooldowns_extend_never_shorten_and_expire(routing: Backend[RoutingState]) -> None:
    state = routing.store
    await state.cool_down("kept", 0.6)
    await state.cool_down("kept", 0.05)  # shorter: ignored
    await state.cool_down("extended", 0.05)
    await state.cool_down("extended", 0.6)
    await state.cool_down("short", 0.05)
    await state.cool_down("tripped", 0.6)
    # A failure's own, shorter cooldown does not cut a running one short either.
    assert await state.record_failure("tripped", allowed_fails=0, window=10, cooldown=0.05)
    ids = ["kept", "extended", "short", "tripped", "other"]
    assert await state.cooled_down(ids) == {"kept", "extended", "short", "tripped"}
    await routing.advance(0.15)
    assert await state.cooled_down(ids) == {"kept", "extended", "tripped"}


async def test_the_failure_after_allowed_fails_cools_down(routing: Backend[RoutingState]) -> None:
    state = routing.store

    async def fail() -> bool:
        return await state.record_failure("d", allowed_fails=2, window=10, cooldown=10)

    assert [await fail(), await fail()] == [False, False]
    assert await state.cooled_down(["d"]) == frozenset()
    assert await fail() is True
    assert await state.cooled_down(["d"]) == {"d"}
    # The count started again: two more failures are allowed before the next cooldown.
    assert [await fail(), await fail(), await fail()] == [False, False, True]
    # Counts are per deployment.
    assert not await state.record_failure("e", allowed_fails=2, window=10, cooldown=10)


async def test_failures_outside_the_window_do_not_count(routing: Backend[RoutingState]) -> None:
    state = routing.store
    assert not await state.record_failure("d", allowed_fails=1, window=0.1, cooldown=10)
    assert await state.record_failure("e", allowed_fails=0, window=10, cooldown=0.1)
    assert await state.cooled_down(["e"]) == {"e"}
    await routing.advance(0.25)
    assert await state.cooled_down(["e"]) == frozenset()  # the cooldown lasted its 0.1 s
    # d's first failure fell out of its window: this one is the first again.
    assert not await state.record_failure("d", allowed_fails=1, window=10, cooldown=10)
    assert await state.record_failure("d", allowed_fails=1, window=10, cooldown=10)


async def test_take_request_stops_at_rpm(routing: Backend[RoutingState]) -> None:
    state = routing.store
    assert [await state.take_request("d", 3) for _ in range(4)] == [True, True, True, False]
    assert (await state.usage(["d"]))["d"] == Usage(requests=3, tokens=0)  # the refusal: uncounted
    assert await state.take_request("d", None)  # no limit: counted all the same
    assert (await state.usage(["d"]))["d"].requests == 4
    assert not await state.take_request("zero", 0)
    assert await state.take_request("other", 1)
    assert await state.usage(["zero", "other"]) == {
        "zero": Usage(requests=0, tokens=0),
        "other": Usage(requests=1, tokens=0),
    }


async def test_take_request_is_exact_under_concurrency(routing: Backend[RoutingState]) -> None:
    state = routing.store
    taken = await asyncio.gather(*(state.take_request("d", 20) for _ in range(50)))
    assert taken.count(True) == 20
    assert (await state.usage(["d"]))["d"].requests == 20


async def test_usage_counts_requests_and_tokens(routing: Backend[RoutingState]) -> None:
    state = routing.store
    assert await state.usage([]) == {}
    assert await state.usage(["d"]) == {"d": Usage(requests=0, tokens=0)}
    await state.add_tokens("d", 100)
    await state.add_tokens("d", 50)
    await state.take_request("d", None)
    await state.add_tokens("e", 7)
    assert await state.usage(["d", "e", "f"]) == {
        "d": Usage(requests=1, tokens=150),
        "e": Usage(requests=0, tokens=7),
        "f": Usage(requests=0, tokens=0),
    }


# ---- in-process only ----


async def test_memory_usage_restarts_each_minute() -> None:
    clock = FakeClock()
    state = MemoryRoutingState(clock=clock)
    assert await state.take_request("d", 1)
    await state.add_tokens("d", 10)
    assert not await state.take_request("d", 1)
    clock.advance(60)
    assert await state.usage(["d"]) == {"d": Usage(requests=0, tokens=0)}
    assert await state.take_request("d", 1)


# ---- Redis only ----


async def test_redis_instances_share_state(redis_client: RedisFactory, prefix: str) -> None:
    # Two gateway instances: separate clients, one Redis.
    one = RedisRoutingState(redis_client(), prefix=prefix)
    two_client = redis_client()
    await settle_minute(two_client)
    two = RedisRoutingState(two_client, prefix=prefix)
    await one.cool_down("a", 10)
    assert await two.cooled_down(["a", "b"]) == {"a"}
    # Failures add up across instances.
    assert not await one.record_failure("b", allowed_fails=1, window=10, cooldown=10)
    assert await two.record_failure("b", allowed_fails=1, window=10, cooldown=10)
    assert await one.cooled_down(["b"]) == {"b"}
    # So do requests: 25 + 25 concurrent takes against one limit of 20.
    taken = await asyncio.gather(
        *(instance.take_request("c", 20) for _ in range(25) for instance in (one, two))
    )
    assert taken.count(True) == 20
    await one.add_tokens("c", 30)
    await two.add_tokens("c", 12)
    assert await two.usage(["c"]) == {"c": Usage(requests=20, tokens=42)}
    # Another prefix is another gateway: nothing shared.
    other = RedisRoutingState(redis_client(), prefix=prefix + "other:")
    assert await other.cooled_down(["a", "b"]) == frozenset()
    assert await other.usage(["c"]) == {"c": Usage(requests=0, tokens=0)}


async def test_redis_keys_expire(redis_client: RedisFactory, prefix: str) -> None:
    client = redis_client()
    state = RedisRoutingState(client, prefix=prefix)
    await state.take_request("d", 5)
    await state.add_tokens("d", 5)
    await state.cool_down("d", 5)
    await state.record_failure("e", allowed_fails=5, window=7, cooldown=5)
    ttls = {key.decode(): await client.pttl(key) async for key in client.scan_iter(prefix + "*")}
    assert len(ttls) == 4
    for key, ttl in ttls.items():
        kind = key.removeprefix(prefix).split(":")[0]
        limit = {"rpm": 120_000, "tpm": 120_000, "cooldown": 5_000, "fails": 7_000}[kind]
        assert 0 < ttl <= limit, key


async def test_unreachable_redis_fails_no_request(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    client = connect_redis("redis://:hunter2-secret@127.0.0.1:1/0")  # nothing listens there
    state = RedisRoutingState(client, clock=clock)
    started = time.monotonic()
    answers = []
    with caplog.at_level(logging.WARNING, logger="prismgate.storage"):
        # Answered by this process's own state meanwhile: cooldowns and limits still hold.
        for call in (
            state.cooled_down(["a"]),
            state.cool_down("a", 10, "upstream said no"),
            state.record_failure("b", allowed_fails=0, window=10, cooldown=10),
            state.usage(["a"]),
            state.take_request("a", 1),
            state.take_request("a", 1),
            state.add_tokens("a", 10),
            state.cooled_down(["a", "b", "c"]),
        ):
            answers.append(await call)
            clock.advance(0.5)
        cooling = await state.cooldowns(["a", "b"])
    await state.aclose()
    assert answers == [
        frozenset(),
        None,
        True,
        {"a": Usage(0, 0)},
        True,
        False,
        None,
        frozenset({"a", "b"}),
    ]
    assert cooling["a"].reason == "upstream said no" and 0 < cooling["a"].left < 10
    assert time.monotonic() - started < 1  # no long retries
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1  # not one per call
    assert "Redis is not answering" in warnings[0]
    assert not any("hunter2" in w for w in warnings)


async def test_after_a_failure_redis_is_left_alone_until_the_probe(prefix: str) -> None:
    # A server that hangs up on every connection, and counts them.
    connections = 0

    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clock = FakeClock()
    client = connect_redis(f"redis://127.0.0.1:{port}/0")
    breaker = RedisBreaker(client, retry_interval=1.0, clock=clock)
    state = RedisRoutingState(client, prefix=prefix, breaker=breaker, clock=clock)
    try:
        assert await state.take_request("d", 5)  # answered in this process: allowed
        tried = connections
        assert tried > 0 and breaker.is_open
        clock.advance(0.5)
        assert await state.take_request("d", 5)
        assert await state.cooled_down(["d"]) == frozenset()
        assert connections == tried  # not asked during the pause
        clock.advance(1)
        assert await state.take_request("d", 5)  # answered at once; a probe goes out
        for _ in range(100):
            if connections > tried:
                break
            await asyncio.sleep(0.01)
        assert connections > tried  # asked again after it, in the background
        assert breaker.is_open  # it hung up again: still set aside
    finally:
        await state.aclose()
        server.close()
        await server.wait_closed()


# ---- the factory ----


def test_redis_url_from_litellm_settings() -> None:
    assert redis_url_from(url=None, host=None, port=None, password=None) is None
    assert redis_url_from(url=None, host="cache", port=None, password=None) == (
        "redis://cache:6379/0"
    )
    assert redis_url_from(url=None, host="10.0.0.2", port=6380, password="p@ss:w/rd") == (
        "redis://:p%40ss%3Aw%2Frd@10.0.0.2:6380/0"
    )
    assert redis_url_from(url=None, host="::1", port=7000, password=None) == "redis://[::1]:7000/0"
    assert redis_url_from(url="rediss://r:6379/2", host="ignored", port=1, password="x") == (
        "rediss://r:6379/2"
    )


async def test_open_shared_state_in_process_by_default() -> None:
    routing, cache = open_shared_state(redis_url=None, cache_max_entries=1, cache_max_bytes=10)
    assert isinstance(routing, MemoryRoutingState)
    assert isinstance(cache, MemoryCacheStore)
    await cache.set("a", b"1", 10)
    await cache.set("b", b"2", 10)  # one entry at most: a is evicted
    assert (await cache.get("a"), await cache.get("b")) == (None, b"2")


async def test_open_shared_state_on_redis(redis_client: RedisFactory, prefix: str) -> None:
    password = "pw/with:specials"
    url = redis_url_from(url=None, host=REDIS_HOST, port=REDIS_PORT, password=None)
    assert url is not None
    routing, cache = open_shared_state(redis_url=url, prefix=prefix)
    assert isinstance(routing, RedisRoutingState)
    assert isinstance(cache, RedisCacheStore)
    await routing.cool_down("a", 10)
    await cache.set("k", b"v", 10)
    # Visible to another instance, through its own client.
    assert await RedisRoutingState(redis_client(), prefix=prefix).cooled_down(["a"]) == {"a"}
    assert await RedisCacheStore(redis_client(), prefix=prefix).get("k") == b"v"
    await routing.aclose()
    await cache.aclose()
    with pytest.raises(ConfigError) as refused:
        open_shared_state(redis_url=f"http://:{password}@cache:6379")
    assert password not in str(refused.value)


def test_importing_storage_does_not_load_redis() -> None:
    probe = "import sys, prismgate.storage; print('redis' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
