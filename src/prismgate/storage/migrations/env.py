"""Alembic's environment for prismgate's schema.

`prismgate.storage.sql.migrate` runs it on a connection it already holds (and has locked),
passed in `config.attributes["connection"]`. Run by hand (to write a new revision), it
opens its own connection to `-x url=<url>` or the config's `sqlalchemy.url`.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from prismgate.storage.sql.engine import database_url, open_engine
from prismgate.storage.sql.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters a table by copying it: later revisions need batch operations there.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_at(url: str) -> None:
    engine = open_engine(database_url(url, "."))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _main() -> None:
    given = context.config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("name the database: -x url=<url>, or the sqlalchemy.url option")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(_run_at(url))


_main()
