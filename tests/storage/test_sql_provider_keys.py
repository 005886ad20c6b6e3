"""The key store's provider keys (stored virtual keys) on both SQL backends: a create that
never replaces, an update that never creates, each decided in one statement. Each test
gets a fresh database: a SQLite file, or one on the real PostgreSQL at 127.0.0.1:5432."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from prismgate.storage.records import ProviderKeyRecord
from prismgate.storage.sql import SqlKeyStore, database_url, open_sql_stores

NOW = 1_750_000_000.0


async def _pg_admin() -> asyncpg.Connection:
    return await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="postgres")


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlKeyStore]:
    name = f"prismgate_test_{uuid.uuid4().hex[:16]}"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'keys.db'}"
    else:
        admin = await _pg_admin()
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    keys, spend = await open_sql_stores(database_url(url, tmp_path))
    yield keys
    await keys.aclose()
    await spend.aclose()
    if request.param == "postgres":
        admin = await _pg_admin()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def record(sealed: bytes, at: float = NOW) -> ProviderKeyRecord:
    return ProviderKeyRecord(
        name="openai-prod", provider="openai", sealed=sealed, created_at=at, updated_at=at
    )


async def test_only_new_never_replaces_and_only_existing_never_creates(store: SqlKeyStore) -> None:
    assert await store.put_provider_key(record(b"one"), only="existing") is False
    assert await store.provider_key("openai-prod") is None
    assert await store.put_provider_key(record(b"one"), only="new") is True
    assert await store.put_provider_key(record(b"two", NOW + 5), only="new") is False
    assert await store.provider_key("openai-prod") == record(b"one")
    assert await store.put_provider_key(record(b"three", NOW + 9), only="existing") is True
    kept = await store.provider_key("openai-prod")
    assert kept is not None and kept.sealed == b"three"
    assert (kept.created_at, kept.updated_at) == (NOW, NOW + 9)  # a rotation keeps created_at
    assert await store.put_provider_key(record(b"four", NOW + 10)) is True  # add or replace
    assert await store.delete_provider_key("openai-prod") is True
    assert await store.put_provider_key(record(b"five"), only="existing") is False


async def test_concurrent_creates_of_one_name_have_one_winner(store: SqlKeyStore) -> None:
    results = await asyncio.gather(
        *(store.put_provider_key(record(bytes([i])), only="new") for i in range(8))
    )
    assert sorted(results) == [False] * 7 + [True]
    assert [r.name for r in await store.list_provider_keys()] == ["openai-prod"]
