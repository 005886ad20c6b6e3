"""The spend log's values on their way to the database (SQLite and the real PostgreSQL):
a row's fields go in the order the INSERT names them, empty lists and dicts and None
read back as they were, and None is stored as NULL (SQLite binds it through the adapter
`open_engine` registers)."""

from __future__ import annotations

import contextlib
import sqlite3

import sqlalchemy as sa

from prismgate.storage import SpendQuery
from prismgate.storage.records import SpendRow
from prismgate.storage.sql import open_engine
from tests.storage.conftest import SqlBackend as Backend

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _bare(request_id: str, started_at: float) -> SpendRow:
    """A failed call's row: every optional field left as it is by default."""
    return SpendRow(
        request_id=request_id,
        started_at=started_at,
        ended_at=started_at + 0.25,
        call_type="image_generation",
        status_code=429,
        error="rate_limit_exceeded",
    )


async def test_a_row_with_nothing_optional_reads_back_as_written(sql: Backend) -> None:
    bare = _bare("bare", NOW)
    full = SpendRow(
        request_id="full",
        started_at=NOW + 1,
        ended_at=NOW + 2,
        call_type="chat_completion",
        status_code=200,
        token="t" * 64,
        key_alias="ci",
        team_id="painters",
        user_id="ana",
        end_user="someone",
        model="gpt",
        model_group="chat",
        deployment="openai/gpt",
        provider="openai",
        api_base="https://api.openai.com/v1",
        prompt_tokens=3,
        completion_tokens=4,
        total_tokens=7,
        spend=123,
        cache_status="miss",
        latency_ms=2.5,
        upstream_ms=2.0,
        attempts=("openai/gpt=200",),
        adjustments=("size",),
        trace_id="trace",
        metadata={"team": "a", "n": 1},
        prompt="hello",
    )
    await sql.spend.write([bare, full])
    assert await sql.spend.rows(SpendQuery(request_id="bare")) == [bare]
    assert await sql.spend.rows(SpendQuery(request_id="full")) == [full]


async def test_none_is_stored_as_null_and_empty_json_as_its_text(sql: Backend) -> None:
    await sql.spend.write([_bare("bare", NOW)])
    query = sa.text(
        "SELECT team_id IS NULL, prompt IS NULL, cache_status IS NULL, "
        "CAST(attempts AS TEXT), CAST(adjustments AS TEXT), CAST(metadata AS TEXT) "
        "FROM spend_logs WHERE request_id = 'bare'"
    )
    async with sql.engine.connect() as connection:
        found = (await connection.execute(query)).one()
    # PostgreSQL shows its JSON columns as it keeps them: the same texts here.
    assert tuple(found) == (True, True, True, "[]", "[]", "{}")


async def test_sqlite_binds_none_through_an_adapter_that_stores_null(sql: Backend) -> None:
    if sql.name != "sqlite":
        return  # the adapter is the sqlite3 module's
    open_engine(sql.url)  # registers it (again: a second time changes nothing)
    adapter = sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)]
    assert adapter(None) is None
    with contextlib.closing(sqlite3.connect(":memory:")) as plain:
        stored = plain.execute("SELECT typeof(?), typeof(?), typeof(?)", (None, 0, "")).fetchone()
    assert stored == ("null", "integer", "text")


async def test_batches_of_every_statement_size_land_whole_in_order(sql: Backend) -> None:
    # 1 + 2 + ... : rows of each batch travel in statements of 1 to 256 rows; each row's
    # values must land in its own row, fields and `day` in their places.
    rows = [
        SpendRow(
            request_id=f"r{i:04}",
            started_at=NOW + 86_400 * (i % 3) + i,
            ended_at=NOW + 86_400 * (i % 3) + i + 1,
            call_type="image_generation",
            status_code=200 if i % 2 else 500,
            token=f"k{i % 5}",
            images=i,
            attempts=(f"d{i}=200",) if i % 2 else (),
            metadata={"i": str(i)} if i % 3 else {},
        )
        for i in range(300)
    ]
    for start, size in ((0, 1), (1, 7), (8, 33), (41, 259)):
        await sql.spend.write(rows[start : start + size])
    found = await sql.spend.rows(SpendQuery(limit=1000))
    assert sorted(found, key=lambda row: row.request_id) == rows
    totals = {total.group: total.requests for total in await sql.spend.totals(SpendQuery(), "day")}
    assert totals == {"2026-01-01": 100, "2026-01-02": 100, "2026-01-03": 100}
