"""Database URLs and engines: SQLite (embedded, the default) or PostgreSQL, both async.

SQLite connections run in WAL mode with a busy timeout, and every transaction that may
write starts with `BEGIN IMMEDIATE`: it takes the database's write lock up front, so
writers from several processes queue for it instead of failing with "database is locked"
half-way through. Reads run in a plain (deferred) transaction on `reader(engine)` and never
wait for writers.

A URL's password never appears in an error or a log line: `safe_url` hides it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

from sqlalchemy import TableClause, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from prismgate.errors import ConfigError

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DEFAULT_DATABASE_FILE",
    "EngineHold",
    "SharedEngine",
    "database_url",
    "dialect_insert",
    "is_sqlite",
    "open_engine",
    "reader",
    "safe_url",
    "sqlite_path",
    "sqlite_pragmas",
]

DEFAULT_DATABASE_FILE = "prismgate.db"
BUSY_TIMEOUT_MS = 5000  # how long a SQLite writer waits for the write lock

SQLITE_DRIVER = "sqlite+aiosqlite"
POSTGRES_DRIVER = "postgresql+asyncpg"
_SQLITE_SCHEMES = {"sqlite", SQLITE_DRIVER}
_POSTGRES_SCHEMES = {"postgres", "postgresql", POSTGRES_DRIVER}
_SUPPORTED = (
    "sqlite:///<path> (or sqlite+aiosqlite:///<path>), or "
    "postgresql://<user>:<password>@<host>:<port>/<database> "
    "(or postgres://, postgresql+asyncpg://)"
)
# Query parameters asyncpg takes (SQLAlchemy passes them on as connect arguments).
_POSTGRES_PARAMS = {
    "ssl",
    "timeout",
    "command_timeout",
    "statement_cache_size",
    "prepared_statement_cache_size",
    "target_session_attrs",
    "direct_tls",
    "krbsrvname",
    "gsslib",
}
_READ_ONLY = "prismgate_read_only"  # execution option: this transaction never writes


def database_url(configured: str | None, data_dir: str | os.PathLike[str]) -> str:
    """The async SQLAlchemy URL for `general_settings.database_url`.

    None (or ""): a SQLite file `prismgate.db` in `data_dir` (the folder is made).
    LiteLLM-style `postgresql://` and `postgres://` URLs use asyncpg (`sslmode` becomes
    asyncpg's `ssl`); `sqlite:///<path>` uses aiosqlite. Anything else is a `ConfigError`
    that lists what is supported."""
    if not configured:
        folder = Path(data_dir).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        return f"{SQLITE_DRIVER}:///{folder / DEFAULT_DATABASE_FILE}"
    url = _parse(configured)
    if url.drivername in _SQLITE_SCHEMES:
        if url.database in {None, "", ":memory:"}:
            raise ConfigError(
                "general_settings.database_url: an in-memory SQLite database is not shared "
                f"between connections; name a file instead. Supported: {_SUPPORTED}"
            )
        path = Path(str(url.database)).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return url.set(drivername=SQLITE_DRIVER, database=str(path)).render_as_string(
            hide_password=False
        )
    if url.drivername in _POSTGRES_SCHEMES:
        query = dict(url.query)
        if "sslmode" in query:
            query["ssl"] = query.pop("sslmode")
        unknown = sorted(set(query) - _POSTGRES_PARAMS)
        if unknown:
            raise ConfigError(
                f"general_settings.database_url: unsupported query parameter(s) "
                f"{', '.join(unknown)} in {safe_url(configured)}; supported: "
                f"sslmode, {', '.join(sorted(_POSTGRES_PARAMS))}"
            )
        return url.set(drivername=POSTGRES_DRIVER, query=query).render_as_string(
            hide_password=False
        )
    raise ConfigError(
        f"general_settings.database_url: {safe_url(configured)} is not a supported "
        f"database. Supported: {_SUPPORTED}"
    )


def safe_url(url: str | URL) -> str:
    """The URL with its password hidden and its query left out, fit for logs and errors."""
    try:
        # A query may carry secrets too (`?password=`, `?sslpassword=`).
        return _parse(url).set(query={}).render_as_string(hide_password=True)
    except ConfigError:
        return "<an unreadable database URL>"


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite URL; None for any other database."""
    parsed = _parse(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database).expanduser()


def open_engine(url: str) -> AsyncEngine:
    """An async engine for a URL from `database_url` (aiosqlite or asyncpg).

    SQLite gets WAL, a busy timeout, `synchronous=NORMAL`, foreign keys, and `BEGIN
    IMMEDIATE` for every transaction outside `reader(engine)`. Dispose of it when done."""
    parsed = _parse(url)
    if parsed.drivername == SQLITE_DRIVER:
        # Python 3.11's sqlite3 looks for an adapter for each None it binds, raising and
        # dropping an AttributeError on the way (~1,700 instructions a None; a spend-log
        # row binds about fifteen). With one registered for None it finds it at once:
        # an empty dict's `get`, a C call that gives None back, so NULL is still stored.
        sqlite3.register_adapter(type(None), cast("Callable[[None], None]", {}.get))
        engine = create_async_engine(parsed)
        event.listen(engine.sync_engine, "connect", _sqlite_connected)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    if parsed.drivername == POSTGRES_DRIVER:
        # Instances outlive database restarts: a dead pooled connection is replaced.
        return create_async_engine(parsed, pool_pre_ping=True)
    raise ConfigError(
        f"{safe_url(parsed)} is not an async database URL; pass it through database_url() "
        f"first. Supported: {_SUPPORTED}"
    )


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The same engine (same pool) for transactions that only read: on SQLite they begin
    deferred, so they never queue behind writers."""
    return engine.execution_options(**{_READ_ONLY: True})


def is_sqlite(engine: AsyncEngine) -> bool:
    """Whether the engine talks to SQLite (else PostgreSQL)."""
    return engine.dialect.name == "sqlite"


def dialect_insert(engine: AsyncEngine, table: TableClause) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into `table` in the engine's own dialect, which has `on_conflict_do_*`."""
    if is_sqlite(engine):
        return sqlite.insert(table)
    return postgresql.insert(table)


class SharedEngine:
    """An engine several stores use: it is disposed of when the last of them closes."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.writes = asyncio.Lock()  # see `EngineHold.begin`
        self._users = 0

    def join(self) -> AsyncEngine:
        """Count one more store using the engine; the engine."""
        self._users += 1
        return self.engine

    async def leave(self) -> None:
        """One store is done with the engine; the last one disposes of it."""
        self._users -= 1
        if self._users == 0:
            await self.engine.dispose()


class EngineHold:
    """A store's hold on its engine: its own (disposed of when the store closes) or a
    `SharedEngine` (left when the store closes)."""

    def __init__(self, engine: AsyncEngine | SharedEngine) -> None:
        if isinstance(engine, SharedEngine):
            self._shared: SharedEngine | None = engine
            self.engine = engine.join()
            self._writes = engine.writes
        else:
            self._shared = None
            self.engine = engine
            self._writes = asyncio.Lock()
        self._sqlite = is_sqlite(self.engine)
        self._closed = False

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that may write. On SQLite, this process's writers first take turns
        on an asyncio lock: they queue on the event loop instead of each polling SQLite's
        write lock with sleeps (the busy timeout is left for other processes)."""
        if self._sqlite:
            async with self._writes, self.engine.begin() as connection:
                yield connection
        else:
            async with self.engine.begin() as connection:
                yield connection

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """This process's turn to write (see `begin`), for a writer with a connection of
        its own (`SqliteWriter`)."""
        async with self._writes:
            yield

    async def release(self) -> None:
        """Let go of the engine (once: a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        if self._shared is not None:
            await self._shared.leave()
        else:
            await self.engine.dispose()


def _parse(url: str | URL) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        # Not chained: the parser's message may quote the URL, password and all.
        raise ConfigError(
            f"general_settings.database_url could not be read as a URL. Supported: {_SUPPORTED}"
        ) from None


def _sqlite_connected(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy, not the sqlite3 driver, starts transactions (see `_sqlite_begin`).
    dbapi_connection.isolation_level = None
    sqlite_pragmas(dbapi_connection)


def sqlite_pragmas(dbapi_connection: Any) -> None:
    """Set a new SQLite connection's pragmas: busy timeout, WAL, `synchronous=NORMAL`,
    foreign keys (aiosqlite's or stdlib sqlite3's connection)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")  # durable enough under WAL, much faster
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    read_only = connection.get_execution_options().get(_READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
