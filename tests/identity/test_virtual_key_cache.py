"""Stored virtual keys on the request path: read through a cache with bounded staleness,
one read for concurrent lookups, a bounded number of names, the last read served through
a store outage. On a real SQLite key store, counting the statements that reach it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from prismgate.config import load_config
from prismgate.errors import ServiceUnavailableError
from prismgate.identity.sealing import Sealer
from prismgate.identity.virtual_keys import StoredVirtualKeys
from prismgate.routing.virtual_keys import VirtualKeys
from prismgate.storage.sql import SqlKeyStore, database_url, open_engine, upgrade

SEALER = Sealer(["unit-test-encryption-key-01"])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Reads:
    """Counts the statements that read provider keys."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        sa.event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        statement = args[2]
        if statement.lstrip().upper().startswith("SELECT") and "provider_keys" in statement:
            self.count += 1

    def taken(self) -> int:
        count, self.count = self.count, 0
        return count


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = database_url(f"sqlite:///{tmp_path / 'keys.db'}", tmp_path)
    await upgrade(url)
    made = open_engine(url)
    yield made
    await made.dispose()


def service(engine: AsyncEngine, clock: Clock, **options: Any) -> StoredVirtualKeys:
    configured = VirtualKeys(load_config({}, environ={}))
    return StoredVirtualKeys(SqlKeyStore(engine), SEALER, configured, clock=clock, **options)


def body(name: str, key: str) -> dict[str, str]:
    return {"name": name, "provider": "openai", "key": key}


async def test_concurrent_lookups_share_one_read_until_the_staleness_passes(
    engine: AsyncEngine,
) -> None:
    clock = Clock()
    keys = service(engine, clock)
    await keys.create(body("vk", "sk-first-key-000000000001"))
    reads = Reads(engine)
    found = await asyncio.gather(*(keys.resolve("vk") for _ in range(50)))
    assert {key.params.api_key for key in found if key} == {"sk-first-key-000000000001"}
    assert reads.taken() == 1
    clock.now += 0.4
    await keys.resolve("vk")
    assert reads.taken() == 0
    clock.now += 0.2  # 0.6 s after the read: read again
    await keys.resolve("vk")
    assert reads.taken() == 1


async def test_a_change_made_elsewhere_is_seen_within_the_staleness(engine: AsyncEngine) -> None:
    clock = Clock()
    here, there = service(engine, clock), service(engine, clock)
    await here.create(body("vk", "sk-first-key-000000000001"))
    seen = await there.resolve("vk")
    assert seen is not None and seen.params.api_key == "sk-first-key-000000000001"
    await here.update("vk", {"key": "sk-second-key-00000000002"})
    changed = await here.resolve("vk")  # the instance that changed it knows at once
    assert changed is not None and changed.params.api_key == "sk-second-key-00000000002"
    stale = await there.resolve("vk")
    assert stale is not None and stale.params.api_key == "sk-first-key-000000000001"
    clock.now += 0.5
    fresh = await there.resolve("vk")
    assert fresh is not None and fresh.params.api_key == "sk-second-key-00000000002"
    await here.delete("vk")
    clock.now += 0.5
    assert await there.resolve("vk") is None


async def test_unknown_names_are_remembered_and_the_cache_is_bounded(engine: AsyncEngine) -> None:
    clock = Clock()
    keys = service(engine, clock, max_cached=2)
    reads = Reads(engine)
    for name in ("a", "b", "a", "b"):
        assert await keys.resolve(name) is None
    assert reads.taken() == 2  # each unknown name read once
    await keys.resolve("c")  # "a" is the least recently used: it goes
    await keys.resolve("b")
    assert reads.taken() == 1
    await keys.resolve("a")
    assert reads.taken() == 1


async def test_names_no_stored_key_can_have_are_never_read(engine: AsyncEngine) -> None:
    keys = service(engine, Clock())
    reads = Reads(engine)
    for name in ("../etc/passwd", "a/b", "x" * 200, "", "vk\x00"):
        assert await keys.resolve(name) is None
    assert reads.taken() == 0


async def test_a_store_outage_serves_the_last_read_and_refuses_the_unread(
    engine: AsyncEngine,
) -> None:
    clock = Clock()
    keys = service(engine, clock)
    await keys.create(body("vk", "sk-first-key-000000000001"))
    assert await keys.resolve("vk") is not None
    async with engine.begin() as connection:  # the store stops answering
        await connection.execute(sa.text("DROP TABLE provider_keys"))
    clock.now += 5
    kept = await keys.resolve("vk")
    assert kept is not None and kept.params.api_key == "sk-first-key-000000000001"
    with pytest.raises(ServiceUnavailableError, match="not answering"):
        await keys.resolve("never-read")
