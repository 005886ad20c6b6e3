"""The spend log on SQL (SQLite or PostgreSQL): one row per served request.

A batch is one INSERT that skips request ids already stored (`ON CONFLICT DO NOTHING`),
so replaying a batch after an outage writes each row once. Each row also keeps its UTC
`day`, computed when written, to group by without date functions that differ by database.

Rows are written at the rate calls are served, so the INSERTs are compiled once, in the
engine's own dialect, and each row goes to the driver as a plain tuple (JSON columns as
their text): SQLAlchemy's per-row parameter processing cost more than the rest of a
keyed call's accounting together (measured on SQLite: 62 µs of CPU a row, 30 µs so).

A batch goes as multi-row INSERTs of up to `ROWS_PER_STATEMENT` rows, not as an
executemany: Python's sqlite3 releases and retakes the GIL around every row it steps,
so an executemany in the writer thread queues behind the busy event loop once a row
(measured on 600-row batches beside a busy thread: 1.9 ms a row and 38 µs of CPU; as
100-row statements, 83 µs and 7 µs).

On SQLite a batch's INSERTs, built on the event loop, go whole to a writer thread of the
log's own (`sqlite_writer.py`): one hand-off a batch instead of aiosqlite's round trip
per step (12.5 -> 9 µs of CPU a row alone, ≈ 28 µs less a call in the bench at c=32).
PostgreSQL's go through the engine (asyncpg). Reads use the engine on both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from prismgate.storage import SpendGrouping, SpendQuery, SpendTotal
from prismgate.storage.records import SpendRow
from prismgate.storage.sql.engine import (
    EngineHold,
    SharedEngine,
    dialect_insert,
    reader,
    sqlite_path,
)
from prismgate.storage.sql.schema import spend_logs
from prismgate.storage.sql.sqlite_writer import SqliteWriter, Statement

__all__ = ["ROWS_PER_STATEMENT", "SqlSpendLog"]

# Rows in one INSERT: 256 rows of the log's 34 columns stay well under the bound
# parameters SQLite (32,766) and PostgreSQL (32,767) take in one statement.
ROWS_PER_STATEMENT = 256

_GROUPS: dict[SpendGrouping, sa.Column[Any]] = {
    "key": spend_logs.c.token,
    "team": spend_logs.c.team_id,
    "model": spend_logs.c.model_group,
    "day": spend_logs.c.day,
}


class SqlSpendLog:
    """The spend log in a SQL database (see `SpendLog`).

    Made from an engine it owns (disposed of by `aclose`) or a `SharedEngine`."""

    def __init__(self, engine: AsyncEngine | SharedEngine) -> None:
        self._hold = EngineHold(engine)
        self._engine = self._hold.engine
        self._reader = reader(self._engine)
        # The INSERT names its columns in the order of a row's fields, `day` before the JSON
        # ones (last in a row): a row's values go in as its fields come (`astuple`).
        fields = SpendRow.__struct_fields__
        json = tuple(
            column.name for column in spend_logs.columns if isinstance(column.type, sa.JSON)
        )
        plain = len(fields) - len(json)
        if fields[plain:] != json or json[0] != "attempts":
            raise RuntimeError(f"a spend row's JSON fields are not last, attempts first: {fields}")
        columns = [*fields[:plain], "day", *json]
        single = (
            dialect_insert(self._engine, sa.table(spend_logs.name, *map(sa.column, columns)))
            .values({name: sa.bindparam(name) for name in columns})
            .on_conflict_do_nothing(index_elements=[spend_logs.c.request_id.name])
            .compile(dialect=self._engine.dialect)
        )
        if list(single.positiontup or ()) != columns:
            raise RuntimeError(f"the spend log's INSERT binds {single.positiontup}, not {columns}")
        self._values = _RowValues(plain)
        self._statements = _MultiRow(single.string, len(columns), _EMPTY_REST_TEXT)
        # SQLite: batches go to a thread of their own in one hand-off (sqlite_writer.py).
        path = sqlite_path(self._engine.url)
        self._writer = None if path is None else SqliteWriter(path)

    async def write(self, rows: Sequence[SpendRow]) -> None:
        """Add rows in one transaction; a row whose request id is already there is skipped."""
        if not rows:
            return
        unique = {row.request_id: row for row in rows}  # one statement may not repeat a key
        statements = self._inserts(list(unique.values()))
        if self._writer is not None:
            async with self._hold.writing():
                await self._writer.run(statements)
            return
        async with self._hold.begin() as connection:
            for sql, values in statements:
                await connection.exec_driver_sql(sql, tuple(values))

    def _inserts(self, batch: list[SpendRow]) -> list[Statement]:
        """The multi-row INSERTs that write `batch`, with their values: the usual rows
        (empty JSON columns after `attempts`) in statements that write those as
        constants, the others in statements that bind every column."""
        usual: list[Any] = []
        other: list[Any] = []
        extend = self._values.extend
        for row in batch:
            extend(usual, other, row)
        statements: list[Statement] = []
        for flat, is_usual in ((usual, True), (other, False)):
            width = self._statements.width(usual=is_usual)
            rows = len(flat) // width
            start = 0
            while start < rows:
                count = _chunk(rows - start)
                values = flat[start * width : (start + count) * width]
                statements.append((self._statements(count, usual=is_usual), values))
                start += count
        return statements

    async def rows(self, query: SpendQuery) -> list[SpendRow]:
        """Rows matching `query`, newest first (`start` <= started_at < `end`)."""
        columns = _WITH_DETAILS if query.with_details else _WITHOUT_DETAILS
        select = (
            sa.select(*columns)
            .where(*_matching(query))
            .order_by(spend_logs.c.started_at.desc(), spend_logs.c.request_id.desc())
            .offset(query.offset)
            .limit(query.limit)
        )
        async with self._reader.connect() as connection:
            found = await connection.execute(select)
            return [_row(row) for row in found.mappings()]

    async def totals(self, query: SpendQuery, by: SpendGrouping) -> list[SpendTotal]:
        """Spend matching `query` per key (its token), team, model group or UTC day,
        largest first."""
        group = _GROUPS[by]
        spend = sa.func.coalesce(sa.func.sum(spend_logs.c.spend), 0)
        select = (
            sa.select(
                group.label("group"),
                spend.label("spend"),
                sa.func.count().label("requests"),
                sa.func.coalesce(sa.func.sum(spend_logs.c.images), 0).label("images"),
                sa.func.coalesce(sa.func.sum(spend_logs.c.total_tokens), 0).label("tokens"),
            )
            .where(*_matching(query))
            .group_by(group)
            .order_by(spend.desc(), group.asc().nulls_last())
            .offset(query.offset)
            .limit(query.limit)
        )
        async with self._reader.connect() as connection:
            found = await connection.execute(select)
            # PostgreSQL sums BIGINTs as NUMERIC: int() brings them back to whole nanos.
            return [
                SpendTotal(
                    group=row.group,
                    spend=int(row.spend),
                    requests=int(row.requests),
                    images=int(row.images),
                    total_tokens=int(row.tokens),
                )
                for row in found
            ]

    async def aclose(self) -> None:
        """Release the connections (the engine too, unless it is shared and still used)."""
        try:
            if self._writer is not None:
                await self._writer.aclose()
        finally:
            await self._hold.release()


def _matching(query: SpendQuery) -> list[sa.ColumnElement[bool]]:
    which: list[sa.ColumnElement[bool]] = []
    for column, wanted in (
        (spend_logs.c.token, query.token),
        (spend_logs.c.user_id, query.user_id),
        (spend_logs.c.team_id, query.team_id),
        (spend_logs.c.request_id, query.request_id),
        (spend_logs.c.key_alias, query.key_alias),
        (spend_logs.c.status_code, query.status_code),
    ):
        if wanted is not None:
            which.append(column == wanted)
    if query.start is not None:
        which.append(spend_logs.c.started_at >= query.start)
    if query.end is not None:
        which.append(spend_logs.c.started_at < query.end)
    which.extend(_console_filters(query))
    return which


def _console_filters(query: SpendQuery) -> list[sa.ColumnElement[bool]]:
    """The console's filters: a model group, failures, calls that ended since, older than
    a row, and rows that kept images."""
    which: list[sa.ColumnElement[bool]] = []
    if query.model_group is not None:
        # A call that failed before a group served it names only the model it asked for.
        group = spend_logs.c.model_group
        which.append(
            sa.or_(
                group == query.model_group,
                sa.and_(group.is_(None), spend_logs.c.model == query.model_group),
            )
        )
    if query.failed is not None:
        status = spend_logs.c.status_code
        which.append(status >= 400 if query.failed else status < 400)
    if query.ended_after is not None:
        which.append(spend_logs.c.ended_at > query.ended_after)
    if query.before is not None:
        started, request_id = query.before
        which.append(
            sa.or_(
                spend_logs.c.started_at < started,
                sa.and_(spend_logs.c.started_at == started, spend_logs.c.request_id < request_id),
            )
        )
    if query.with_kept_images:
        # Written by msgspec, so an empty list is always exactly `[]`.
        which.append(sa.cast(spend_logs.c.kept_images, sa.Text) != "[]")
    return which


class _RowValues:
    """Rows' column values, as the spend log's INSERTs bind them, appended to a flat
    list: a row's fields but the JSON ones, then the computed `day`, then the JSON
    fields' text. A usual row's empty JSON fields after `attempts` are not bound: its
    statement writes them as constants (`_MultiRow`), four text values fewer a row for
    the SQLite writer to copy."""

    def __init__(self, plain: int) -> None:
        self._plain = plain  # the fields before the JSON ones
        self._days: dict[int, str] = {}  # UTC day number -> YYYY-MM-DD; rows come in order
        self._attempts: dict[tuple[str, ...], str] = {}  # attempts -> text: few, repeated

    def extend(self, usual: list[Any], other: list[Any], row: SpendRow) -> None:
        """Append `row`'s values to `usual` (a usual row's: through `attempts`) or to
        `other` (every column's)."""
        values = _fields(row)
        plain = self._plain
        attempts = values[plain]
        is_usual = values[plain + 1 :] == _EMPTY_REST and type(attempts) is tuple
        flat = usual if is_usual else other
        flat += values[:plain]
        day = self._days.get(int(row.started_at // 86_400))
        flat.append(day if day is not None else self._new_day(row.started_at))
        if not is_usual:
            flat += [_json_text(value) for value in values[plain:]]
            return
        text = self._attempts.get(attempts)
        if text is None:
            if len(self._attempts) >= 256:  # deployments and paths are few: a bound anyway
                self._attempts.clear()
            text = self._attempts[attempts] = _json_text(attempts)
        flat.append(text)

    def _new_day(self, timestamp: float) -> str:
        if len(self._days) > 8:  # a long-lived log: keep only the days in use
            self._days.clear()
        day = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
        self._days[int(timestamp // 86_400)] = day
        return day


def _json_text(value: Any) -> str:
    """A JSON column's text (`None` as JSON's null, as SQLAlchemy's JSON type writes it)."""
    return _encode(value).decode()


_encode = msgspec.json.encode
_fields = msgspec.structs.astuple
# A row's usual JSON values after `attempts` (no adjustments, metadata, kept images or
# details), and their text.
_EMPTY_REST: tuple[Any, ...] = ((), {}, (), None)
_EMPTY_REST_TEXT = tuple(_json_text(value) for value in _EMPTY_REST)


class _MultiRow:
    """The single-row INSERT repeated for several rows, made from its compiled text
    (compiling a 256-row INSERT costs SQLAlchemy over 100 ms; this, well under 1 ms).
    Numbered parameters (PostgreSQL's `$n`) are numbered on; `?` needs nothing.

    A usual row's statement has the text of the usual empty JSON values after `attempts`
    in place of their last parameters (`constants`)."""

    _PARAMETER = re.compile(r"\?|\$\d+")

    def __init__(self, single: str, columns: int, constants: tuple[str, ...]) -> None:
        values = single.index(" VALUES (") + len(" VALUES ")
        conflict = single.rindex(" ON CONFLICT ")
        self._head, row, self._tail = single[:values], single[values:conflict], single[conflict:]
        self._parts = self._PARAMETER.split(row)  # the text around the row's parameters
        if len(self._parts) != columns + 1:
            raise RuntimeError(f"the spend log's INSERT row has not {columns} parameters: {row}")
        self._numbered = "$" in row
        self._columns = columns
        self._constants = [_sql_text(text) for text in constants]
        self._made: dict[tuple[int, bool], str] = {}

    def width(self, *, usual: bool) -> int:
        """The parameters a row binds in a `usual` row's statement, or in the other one."""
        return self._columns - len(self._constants) if usual else self._columns

    def __call__(self, rows: int, *, usual: bool) -> str:
        statement = self._made.get((rows, usual))
        if statement is None:
            width = self.width(usual=usual)
            groups = ", ".join(self._row(n * width, usual=usual) for n in range(rows))
            statement = self._made[rows, usual] = f"{self._head}{groups}{self._tail}"
        return statement

    def _row(self, offset: int, *, usual: bool) -> str:
        """One row's group, its parameters numbered on from `offset`."""
        width = self.width(usual=usual)
        marks = [f"${offset + n + 1}" if self._numbered else "?" for n in range(width)]
        marks += self._constants if usual else ()
        pairs = zip(self._parts[:-1], marks, strict=True)
        return "".join(part + mark for part, mark in pairs) + self._parts[-1]


def _sql_text(text: str) -> str:
    """`text` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _chunk(remaining: int) -> int:
    """Rows in the next statement: ROWS_PER_STATEMENT, else the largest power of two that
    fits, so that a batch of any size is written with at most nine distinct statements."""
    if remaining >= ROWS_PER_STATEMENT:
        return ROWS_PER_STATEMENT
    return 1 << (remaining.bit_length() - 1)


# A row's columns but `day` (derived); the details, large, only when asked for.
_WITH_DETAILS = tuple(column for column in spend_logs.columns if column.name != "day")
_WITHOUT_DETAILS = tuple(column for column in _WITH_DETAILS if column.name != "details")


def _row(row: RowMapping) -> SpendRow:
    return msgspec.convert({str(name): value for name, value in row.items()}, SpendRow)
