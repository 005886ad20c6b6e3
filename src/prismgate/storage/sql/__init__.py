"""The SQL backend of `KeyStore` and `SpendLog`: SQLite (embedded, the default) or
PostgreSQL, through SQLAlchemy Core (async) with Alembic migrations.

    url = database_url(general_settings.database_url, data_dir)
    keys, spend = await open_sql_stores(url)   # migrates first, then shares one engine
    ...
    await keys.aclose(); await spend.aclose()  # the engine goes with the last

| module | what |
|---|---|
| `engine.py` | URLs (LiteLLM's too), engines, SQLite pragmas and `BEGIN IMMEDIATE` |
| `schema.py` | the tables |
| `migrate.py` | `upgrade(url)` under a lock, `current_revision(url)` |
| `keys.py`, `budgets.py` | `SqlKeyStore`; reservations that hold across instances |
| `spend.py` | `SqlSpendLog` |
| `sqlite_writer.py` | the spend log's writer thread on SQLite |
| `periods.py` | `budget_duration` strings ("30s" ... "1mo") and when a period ends |
"""

from __future__ import annotations

from prismgate.storage.periods import next_reset, parse_duration
from prismgate.storage.sql.engine import SharedEngine, database_url, open_engine, safe_url
from prismgate.storage.sql.keys import SqlKeyStore
from prismgate.storage.sql.migrate import current_revision, head_revision, upgrade
from prismgate.storage.sql.spend import SqlSpendLog

__all__ = [
    "SharedEngine",
    "SqlKeyStore",
    "SqlSpendLog",
    "current_revision",
    "database_url",
    "head_revision",
    "next_reset",
    "open_engine",
    "open_sql_stores",
    "parse_duration",
    "safe_url",
    "upgrade",
]


async def open_sql_stores(url: str, *, migrate: bool = True) -> tuple[SqlKeyStore, SqlSpendLog]:
    """The key store and the spend log for `url` (from `database_url`), on one shared
    engine; the schema is brought to the newest revision first unless `migrate` is False.
    Close both: the engine is disposed of with the last."""
    if migrate:
        await upgrade(url)
    shared = SharedEngine(open_engine(url))
    return SqlKeyStore(shared), SqlSpendLog(shared)
