"""Revision 0002 (the console's record on spend-log rows) on SQLite and the real
PostgreSQL: a database at 0001 with rows in it is upgraded, its rows read back with no
kept images and no details, new rows keep theirs, the filters the console uses work,
the schema is exactly what the stores are written against, and it downgrades."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from prismgate.storage import SpendQuery
from prismgate.storage.records import KeptImage, SpendRow
from prismgate.storage.sql import SqlSpendLog, open_engine, upgrade
from prismgate.storage.sql.migrate import current_revision, head_revision
from tests.storage.conftest import Databases, migrate, schema_differences

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_revision_0002_adds_the_console_record(kind: str, databases: Databases) -> None:
    url = await databases.fresh(kind)
    await migrate(url, "0001")
    engine = open_engine(url)
    try:
        async with engine.begin() as connection:
            # A row as revision 0001 wrote it (only its columns).
            await connection.execute(
                sa.text(
                    "INSERT INTO spend_logs (request_id, started_at, ended_at, day, call_type, "
                    "status_code, images, prompt_tokens, completion_tokens, total_tokens, "
                    "spend, latency_ms, upstream_ms, attempts, adjustments, metadata) VALUES "
                    "('old', :t, :t, '2026-01-01', 'image_generation', 200, 1, 0, 0, 0, 0, "
                    "1.0, 0.0, '[]', '[]', '{}')"
                ),
                {"t": NOW},
            )
    finally:
        await engine.dispose()
    await upgrade(url)
    assert await current_revision(url) == head_revision()

    log = SqlSpendLog(open_engine(url))
    try:
        kept = KeptImage(name="a" * 64 + ".png", width=8, height=8, size_bytes=99)
        new = SpendRow(
            request_id="new",
            started_at=NOW + 5,
            ended_at=NOW + 6,
            call_type="image_generation",
            status_code=200,
            kept_images=(kept,),
            details={"request": {"prompt": "p"}, "sent": []},
        )
        await log.write([new])
        (old,) = await log.rows(SpendQuery(request_id="old"))
        assert old.kept_images == () and old.details is None
        assert await log.rows(SpendQuery(request_id="new", with_details=True)) == [new]
        # The details are read only when asked for: they may be tens of KB a row.
        (bare,) = await log.rows(SpendQuery(request_id="new"))
        assert bare.details is None and bare.kept_images == (kept,)
        gallery = await log.rows(SpendQuery(with_kept_images=True))
        assert [row.request_id for row in gallery] == ["new"]
        assert [row.request_id for row in await log.rows(SpendQuery(ended_after=NOW + 1))] == [
            "new"
        ]
        older = await log.rows(SpendQuery(before=(new.started_at, new.request_id)))
        assert [row.request_id for row in older] == ["old"]
    finally:
        await log.aclose()

    assert await schema_differences(url) == []

    await migrate(url, "0001", down=True)
    assert await current_revision(url) == "0001"
    engine = open_engine(url)
    try:
        async with engine.connect() as connection:
            columns = await connection.run_sync(
                lambda sync: {c["name"] for c in sa.inspect(sync).get_columns("spend_logs")}
            )
            assert "kept_images" not in columns and "details" not in columns
    finally:
        await engine.dispose()
