"""Backends for the storage contract suites: in-process, the real Redis on 127.0.0.1:6379,
and fresh SQL databases (SQLite files, and databases on the real PostgreSQL at
127.0.0.1:5432, made per module and dropped at its end; never skipped).

Each test gets its own key prefix; every key under it is deleted when the test ends.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import asyncpg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from redis.asyncio import Redis
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from prismgate.storage import (
    CacheStore,
    MemoryCacheStore,
    MemoryRoutingState,
    RedisCacheStore,
    RedisRoutingState,
    RoutingState,
)
from prismgate.storage.breaker import RedisBreaker
from prismgate.storage.sql import (
    SharedEngine,
    SqlKeyStore,
    SqlSpendLog,
    database_url,
    open_engine,
    upgrade,
)
from prismgate.storage.sql.migrate import alembic_config
from prismgate.storage.sql.schema import metadata

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379

S = TypeVar("S")


class FakeClock:
    """A clock tests move by hand; it starts a few seconds into a minute."""

    def __init__(self, now: float = 60_000.0 + 5.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend(Generic[S]):
    """One backend under test, and how to let time pass for it."""

    name: str
    store: S
    advance: Callable[[float], Awaitable[None]]


@pytest.fixture
def prefix() -> str:
    return f"prismgate-test:{uuid.uuid4().hex}:"


RedisFactory = Callable[..., Redis]


@pytest.fixture
async def redis_client(prefix: str) -> AsyncIterator[RedisFactory]:
    """Makes clients of the real Redis; closes them and deletes the test's keys at the end."""
    made: list[Redis] = []

    def make(**options: Any) -> Redis:
        client = Redis(host=REDIS_HOST, port=REDIS_PORT, **options)
        made.append(client)
        return client

    yield make
    cleaner = Redis(host=REDIS_HOST, port=REDIS_PORT)
    keys = [key async for key in cleaner.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await cleaner.delete(*keys)
    await cleaner.aclose()
    for client in made:
        await client.aclose()


async def settle_minute(client: Redis) -> None:
    # Per-minute counts restart when the server's minute turns; a test that counts waits
    # out the last second of a minute rather than straddle it.
    seconds, micros = await client.time()
    left = 60 - (seconds % 60 + micros / 1e6)
    if left < 1.0:
        await asyncio.sleep(left + 0.05)


def _fake_time(clock: FakeClock) -> Callable[[float], Awaitable[None]]:
    async def advance(seconds: float) -> None:
        clock.advance(seconds)

    return advance


@pytest.fixture(params=["memory", "redis"])
async def routing(
    request: pytest.FixtureRequest, prefix: str, redis_client: RedisFactory
) -> AsyncIterator[Backend[RoutingState]]:
    state: RoutingState
    if request.param == "memory":
        clock = FakeClock()
        state = MemoryRoutingState(clock=clock)
        backend = Backend[RoutingState]("memory", state, _fake_time(clock))
    else:
        client = redis_client()
        await settle_minute(client)
        # These tests are about Redis's own atomicity: a deadline that a loaded CI machine
        # can miss would put the breaker's in-process fallback under test instead.
        breaker = RedisBreaker(client, timeout=5.0)
        state = RedisRoutingState(client, prefix=prefix, breaker=breaker)
        backend = Backend[RoutingState]("redis", state, asyncio.sleep)
    yield backend
    await state.aclose()


@pytest.fixture(params=["memory", "redis"])
async def cache(
    request: pytest.FixtureRequest, prefix: str, redis_client: RedisFactory
) -> AsyncIterator[Backend[CacheStore]]:
    store: CacheStore
    if request.param == "memory":
        clock = FakeClock()
        store = MemoryCacheStore(max_entries=100, max_bytes=1 << 20, clock=clock)
        backend = Backend[CacheStore]("memory", store, _fake_time(clock))
    else:
        client = redis_client()
        store = RedisCacheStore(client, prefix=prefix, breaker=RedisBreaker(client, timeout=5.0))
        backend = Backend[CacheStore]("redis", store, asyncio.sleep)
    yield backend
    await store.aclose()


PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"


# ---- backends ----


@dataclass
class Databases:
    """Makes fresh, empty databases of either kind; PostgreSQL ones are dropped at the end."""

    folder: Path
    made: list[str]

    async def fresh(self, kind: str) -> str:
        if kind == "sqlite":
            return database_url(f"sqlite:///{self.folder / uuid.uuid4().hex}.db", self.folder)
        name = f"prismgate_test_{uuid.uuid4().hex[:16]}"
        admin = await _pg_admin()
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        self.made.append(name)
        return database_url(f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}", self.folder)


async def _pg_admin() -> asyncpg.Connection:
    return await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")


@pytest.fixture(scope="module")
async def databases(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Databases]:
    made = Databases(tmp_path_factory.mktemp("sql"), [])
    yield made
    if made.made:
        admin = await _pg_admin()
        try:
            for name in made.made:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
async def migrated(request: pytest.FixtureRequest, databases: Databases) -> str:
    """One migrated database per backend, shared by the module's contract tests."""
    url = await databases.fresh(request.param)
    await upgrade(url)
    return url


@dataclass
class SqlBackend:
    """The stores under test, and their engine for looking behind them."""

    name: str
    url: str
    engine: AsyncEngine
    keys: SqlKeyStore
    spend: SqlSpendLog


@pytest.fixture
async def sql(migrated: str) -> AsyncIterator[SqlBackend]:
    engine = open_engine(migrated)
    async with engine.begin() as connection:  # every test starts from empty tables
        for table in reversed(metadata.sorted_tables):
            await connection.execute(sa.delete(table))
    shared = SharedEngine(engine)
    backend = SqlBackend(
        engine.dialect.name, migrated, engine, SqlKeyStore(shared), SqlSpendLog(shared)
    )
    yield backend
    await backend.keys.aclose()
    await backend.spend.aclose()


async def migrate(url: str, revision: str, *, down: bool = False) -> None:
    """Bring the database at `url` up (or `down`) to schema `revision`."""

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)

    engine = open_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run)
    finally:
        await engine.dispose()


async def schema_differences(url: str) -> list[Any]:
    """How the database at `url` differs from the schema the stores are written against."""
    engine = open_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await engine.dispose()
