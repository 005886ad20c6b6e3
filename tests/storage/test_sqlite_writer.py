"""The SQLite writer thread: a transaction commits whole or not at all, the writer goes
on after a failure, and closing it ends its thread."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path

import pytest

from prismgate.storage.sql.sqlite_writer import SqliteWriter

INSERT = "INSERT INTO t (id, name) VALUES (?, ?)"


def _table(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        db.commit()


def _names(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [name for (name,) in db.execute("SELECT name FROM t ORDER BY id")]


def _writer_threads() -> int:
    return sum(thread.name == "prismgate-sqlite-writer" for thread in threading.enumerate())


async def test_a_failed_statement_rolls_back_its_transaction_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.db"
    _table(path)
    writer = SqliteWriter(path)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            await writer.run([(INSERT, (1, "kept?")), (INSERT, (2, None))])
        assert _names(path) == []
        await writer.run([(INSERT, (1, "a")), (INSERT, (2, "b"))])
        assert _names(path) == ["a", "b"]
    finally:
        await writer.aclose()


async def test_transactions_from_many_tasks_are_all_written(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    _table(path)
    writer = SqliteWriter(path)
    try:
        await asyncio.gather(*(writer.run([(INSERT, (n, f"row {n}"))]) for n in range(50)))
    finally:
        await writer.aclose()
    assert len(_names(path)) == 50


async def test_closing_ends_the_thread_and_later_runs_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    _table(path)
    before = _writer_threads()
    writer = SqliteWriter(path)
    await writer.run([(INSERT, (1, "a"))])
    assert _writer_threads() == before + 1
    await writer.aclose()
    assert _writer_threads() == before
    with pytest.raises(RuntimeError):
        await writer.run([(INSERT, (2, "b"))])
    await writer.aclose()  # a second close does nothing


async def test_a_file_that_cannot_be_opened_fails_each_run_until_it_can(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "w.db"
    writer = SqliteWriter(path)
    try:
        with pytest.raises(sqlite3.OperationalError):
            await writer.run([(INSERT, (1, "a"))])
        path.parent.mkdir()
        _table(path)
        await writer.run([(INSERT, (1, "a"))])
        assert _names(path) == ["a"]
    finally:
        await writer.aclose()
