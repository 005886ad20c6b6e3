"""Schema migrations, run from code at startup: `upgrade(url)`, `current_revision(url)`.

Several instances may start together against one database: the migration runs under a
lock, so one of them migrates and the others find the schema current and do nothing. On
PostgreSQL the lock is an advisory lock held by the migrating transaction; on SQLite it is
a file lock beside the database (`<db>.migrate.lock`), on top of the write lock that the
migrating transaction's `BEGIN IMMEDIATE` takes. The whole migration is one transaction
on both (their DDL is transactional): it applies completely or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from prismgate.storage.sql.engine import is_sqlite, open_engine, reader, sqlite_path

if sys.platform != "win32":
    import fcntl

__all__ = [
    "MIGRATIONS",
    "MIGRATION_LOCK_ID",
    "alembic_config",
    "current_revision",
    "head_revision",
    "upgrade",
]

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
MIGRATION_LOCK_ID = 0x7072_6973_6D67_6174  # "prismgat" in ASCII: PostgreSQL's advisory lock
_LOCK_POLL = 0.05  # seconds between tries for the SQLite migration file lock


def alembic_config() -> Config:
    """An Alembic config for prismgate's migrations (no `alembic.ini` needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest revision of the schema."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None  # the initial revision ships with the package
    return head


async def upgrade(url: str) -> None:
    """Bring the database at `url` (from `database_url`) to the newest schema revision.
    Safe when several processes or tasks call it at once; a no-op when it is current."""
    engine = open_engine(url)
    try:
        async with _file_lock(sqlite_path(url)), engine.begin() as connection:
            if not is_sqlite(engine):
                # Released when this transaction ends, whatever happens to the connection.
                lock = sa.func.pg_advisory_xact_lock(sa.literal(MIGRATION_LOCK_ID, sa.BigInteger))
                await connection.execute(sa.select(lock))
            await connection.run_sync(_upgrade)
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    """The schema revision of the database at `url`; None when it has none yet."""
    engine = open_engine(url)
    try:
        async with reader(engine).connect() as connection:
            return await connection.run_sync(_current)
    finally:
        await engine.dispose()


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    # env.py runs on this connection, inside its transaction, under its lock.
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


@contextlib.asynccontextmanager
async def _file_lock(database: Path | None) -> AsyncIterator[None]:
    if database is None or sys.platform == "win32":
        yield  # PostgreSQL (its own lock), or no flock: BEGIN IMMEDIATE alone serialises
        return
    path = database.with_name(database.name + ".migrate.lock")
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # flock locks belong to the open file, so tasks of one process exclude each other
        # too; polling, not a blocking call in a thread, keeps the wait cancellable.
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(_LOCK_POLL)
        yield
    finally:
        os.close(descriptor)  # closing the file releases its lock
