"""Revision 0003 on SQLite and the real PostgreSQL: the spend log's key, team and user
indexes keep only rows that name one, searches by them still use them, the schema is
what the stores are written against, and it downgrades to whole indexes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from prismgate.storage import SpendQuery
from prismgate.storage.records import SpendRow
from prismgate.storage.sql import SqlSpendLog, open_engine, upgrade
from prismgate.storage.sql.migrate import current_revision
from tests.storage.conftest import Databases, migrate, schema_differences

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
OWNERS = ("token", "team_id", "user_id")


async def _index_definitions(url: str, kind: str) -> dict[str, str]:
    """Each owner index's definition, as the database keeps it."""
    if kind == "sqlite":
        query = "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
    else:
        query = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'spend_logs'"
    engine = open_engine(url)
    try:
        async with engine.connect() as connection:
            found = {name: sql for name, sql in await connection.execute(sa.text(query))}
    finally:
        await engine.dispose()
    return {column: found[f"ix_spend_logs_{column}"] for column in OWNERS}


async def _plan(url: str, kind: str, column: str) -> str:
    """How the database finds the rows of one owner."""
    engine = open_engine(url)
    try:
        async with engine.connect() as connection:
            if kind == "sqlite":
                explain = (
                    f"EXPLAIN QUERY PLAN SELECT request_id FROM spend_logs WHERE {column} = :v"
                )
            else:  # a table this small is read whole unless that is ruled out
                await connection.execute(sa.text("SET enable_seqscan = off"))
                explain = f"EXPLAIN SELECT request_id FROM spend_logs WHERE {column} = :v"
            rows = (await connection.execute(sa.text(explain), {"v": "x"})).all()
    finally:
        await engine.dispose()
    return " ".join(str(value) for row in rows for value in row)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_revision_0003_indexes_only_rows_that_name_an_owner(
    kind: str, databases: Databases
) -> None:
    url = await databases.fresh(kind)
    await migrate(url, "0002")
    whole = await _index_definitions(url, kind)
    assert not any("IS NOT NULL" in definition for definition in whole.values()), whole
    log = SqlSpendLog(open_engine(url))
    try:  # rows written before the upgrade: one of a key, team and user; one of nobody
        owned = SpendRow(
            "owned", NOW, NOW + 1, "image_generation", 200, "t" * 64, None, "team", "user"
        )
        await log.write([owned, SpendRow("nobody's", NOW + 2, NOW + 3, "image_generation", 200)])
    finally:
        await log.aclose()

    await upgrade(url)
    assert await current_revision(url) == "0003"
    partial = await _index_definitions(url, kind)
    for column, definition in partial.items():
        assert f"{column} IS NOT NULL" in definition, definition
        assert f"ix_spend_logs_{column}" in await _plan(url, kind, column)
    log = SqlSpendLog(open_engine(url))
    try:
        for query in (
            SpendQuery(token="t" * 64),
            SpendQuery(team_id="team"),
            SpendQuery(user_id="user"),
        ):
            assert [row.request_id for row in await log.rows(query)] == ["owned"]
        assert len(await log.rows(SpendQuery())) == 2
    finally:
        await log.aclose()
    assert await schema_differences(url) == []

    await migrate(url, "0002", down=True)
    assert await current_revision(url) == "0002"
    assert await _index_definitions(url, kind) == whole
