"""CacheStore contract, run against both backends; then the in-process LRU bounds and what
is particular to Redis (key layout, an unreachable server)."""

from __future__ import annotations

import logging
import math

import pytest
from redis.asyncio import Redis

from prismgate.errors import ConfigError
from prismgate.storage import CacheStore, MemoryCacheStore, RedisCacheStore
from prismgate.storage.redis import connect_redis
from tests.storage.conftest import REDIS_HOST, REDIS_PORT, Backend, FakeClock, RedisFactory

# ---- the contract: both backends ----


async def test_set_get_delete(cache: Backend[CacheStore]) -> None:
    store = cache.store
    assert await store.get("k") is None
    every_byte = bytes(range(256))
    await store.set("k", every_byte, 10)
    assert await store.get("k") == every_byte
    await store.set("k", b"newer", 10)
    assert await store.get("k") == b"newer"
    await store.set("empty", b"", 10)
    assert await store.get("empty") == b""
    await store.delete("k")
    assert await store.get("k") is None
    await store.delete("never-set")
    assert await store.get("empty") == b""


async def test_entries_expire_after_their_ttl(cache: Backend[CacheStore]) -> None:
    store = cache.store
    await store.set("short", b"s", 0.1)
    await store.set("long", b"l", 10)
    await store.set("renewed", b"r", 0.1)
    await store.set("renewed", b"r", 10)  # a new set starts a new TTL
    assert await store.get("short") == b"s"
    await cache.advance(0.2)
    assert await store.get("short") is None
    assert await store.get("long") == b"l"
    assert await store.get("renewed") == b"r"


@pytest.mark.parametrize("ttl", [0, -1, math.nan])
async def test_a_ttl_must_be_positive(cache: Backend[CacheStore], ttl: float) -> None:
    with pytest.raises(ValueError, match="more than 0 seconds"):
        await cache.store.set("k", b"v", ttl)
    assert await cache.store.get("k") is None


# ---- in-process: an LRU bounded by entries and bytes ----


async def test_memory_evicts_the_least_recently_used_entry() -> None:
    store = MemoryCacheStore(max_entries=2, max_bytes=1000)
    await store.set("a", b"1", 10)
    await store.set("b", b"2", 10)
    assert await store.get("a") == b"1"  # a is now the most recently used
    await store.set("c", b"3", 10)
    assert [await store.get(k) for k in "abc"] == [b"1", None, b"3"]


async def test_memory_keeps_total_bytes_under_max_bytes() -> None:
    store = MemoryCacheStore(max_entries=100, max_bytes=10)
    await store.set("a", b"aaaa", 10)
    await store.set("b", b"bbbb", 10)
    await store.set("c", b"cccc", 10)  # 12 bytes: a goes
    assert [await store.get(k) for k in "abc"] == [None, b"bbbb", b"cccc"]
    await store.set("b", b"b", 10)  # replacing a value frees its bytes
    await store.set("d", b"dddd", 10)
    assert [await store.get(k) for k in "bcd"] == [b"b", b"cccc", b"dddd"]


async def test_memory_does_not_store_a_value_over_max_bytes() -> None:
    store = MemoryCacheStore(max_entries=100, max_bytes=10)
    await store.set("small", b"12345", 10)
    await store.set("big", b"x" * 11, 10)
    assert await store.get("big") is None
    assert await store.get("small") == b"12345"  # nothing was evicted for it
    await store.set("small", b"y" * 11, 10)  # too big: the older value does not linger
    assert await store.get("small") is None
    await store.set("exact", b"z" * 10, 10)
    assert await store.get("exact") == b"z" * 10


async def test_memory_drops_an_expired_entry_when_it_is_read() -> None:
    clock = FakeClock()
    store = MemoryCacheStore(max_entries=2, max_bytes=1000, clock=clock)
    await store.set("a", b"1", 1)
    await store.set("b", b"2", 100)
    assert await store.get("a") == b"1"  # a is the most recently used ...
    clock.advance(2)
    assert await store.get("a") is None  # ... but expired, and dropped: its room is free
    await store.set("c", b"3", 100)
    assert [await store.get(k) for k in "bc"] == [b"2", b"3"]


def test_memory_bounds_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="max_entries must be at least 1"):
        MemoryCacheStore(max_entries=0)
    with pytest.raises(ConfigError, match="max_bytes must be at least 1"):
        MemoryCacheStore(max_bytes=0)


# ---- Redis only ----


async def test_redis_keys_are_prefixed_and_expire(redis_client: RedisFactory, prefix: str) -> None:
    client = redis_client()
    store = RedisCacheStore(client, prefix=prefix)
    await store.set("k", b"v", 5)
    assert await client.get(prefix + "cache:k") == b"v"
    assert 4000 < await client.pttl(prefix + "cache:k") <= 5000
    other = RedisCacheStore(redis_client(), prefix=prefix + "other:")
    assert await other.get("k") is None
    await other.set("k", b"w", 5)
    assert await store.get("k") == b"v"


def test_redis_cache_needs_bytes_answers() -> None:
    client = Redis(host=REDIS_HOST, port=REDIS_PORT, decode_responses=True)
    with pytest.raises(ConfigError, match="decode_responses=False"):
        RedisCacheStore(client)


async def test_unreachable_redis_falls_back_to_this_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    store = RedisCacheStore(connect_redis("redis://:hunter2-secret@127.0.0.1:1/0"), clock=clock)
    with caplog.at_level(logging.WARNING, logger="prismgate.storage"):
        await store.set("k", b"v", 10)
        clock.advance(2)
        assert await store.get("k") == b"v"  # kept in this process meanwhile
        clock.advance(2)
        await store.delete("k")
        assert await store.get("k") is None
        clock.advance(20)
        assert await store.get("k") is None  # expired locally too
    await store.aclose()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "Redis is not answering" in warnings[0]
    assert "response cache" in warnings[0]
    assert "hunter2" not in warnings[0]
