"""The spend log's disk spool: rows wait on disk while the database is down, and are
written once when it is back; a shutdown while it is down leaves them for the next start;
the spool is bounded, and each file is replayed by one process only.

The database is a PostgreSQL server of this module's own (tests/postgres_server.py),
really stopped and started again; the calls are real gateway calls to `mock/` models."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from prismgate import Gateway, ImageGenerationRequest, load_config
from prismgate.gateway import CallOptions
from prismgate.spend import SpendRecorder
from prismgate.spool import SpendJournal, SpendSpool
from prismgate.storage import SpendQuery
from prismgate.storage.records import KeptImage, SpendRow
from prismgate.storage.sql import SqlSpendLog, database_url, open_engine, upgrade
from tests.postgres_server import PostgresServer, running_postgres


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own; a test that stops it starts it again."""
    with running_postgres() as server:
        yield server


@pytest.fixture
async def spend_log(postgres_server: PostgresServer, tmp_path: Path) -> AsyncIterator[SqlSpendLog]:
    name = f"spool_{uuid.uuid4().hex[:12]}"
    url = database_url(await asyncio.to_thread(postgres_server.create_database, name), tmp_path)
    await upgrade(url)
    log = SqlSpendLog(open_engine(url))
    yield log
    if not postgres_server.running:
        postgres_server.start()
    await log.aclose()


def gateway(recorder: SpendRecorder) -> Gateway:
    config = load_config(
        {
            "model_list": [{"model_name": "otters", "litellm_params": {"model": "mock/otters"}}],
            # Rows only: the console's records (tests/test_call_records.py) are not the
            # spool's concern, and would keep images in the default folder.
            "general_settings": {"console": {"keep_images": False, "keep_request_details": False}},
        },
        environ={},
    )
    return Gateway(config, observers=(recorder,))


async def call(served: Gateway, *request_ids: str) -> None:
    for request_id in request_ids:
        request = ImageGenerationRequest(prompt="an otter", model="otters", size="256x256")
        await served.image_generation(request, CallOptions(request_id=request_id))


async def stored(log: SqlSpendLog) -> list[str]:
    return [row.request_id for row in await log.rows(SpendQuery(limit=10_000))]


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def spool_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("spool-*.jsonl"))


async def test_rows_wait_in_the_spool_while_the_database_is_down_and_are_written_once(
    spend_log: SqlSpendLog, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    recorder = SpendRecorder(spend_log, spool_folder=tmp_path / "spool", interval=0.05)
    recorder.start()
    spool = recorder.spool
    assert spool is not None
    async with gateway(recorder) as served:
        await call(served, *(f"before-{i}" for i in range(10)))
        await until(lambda: _count_is(spend_log, 10))

        await asyncio.to_thread(postgres_server.stop)
        await call(served, *(f"during-{i}" for i in range(30)))

        async def spooled() -> bool:  # the failed write moved the queue to disk
            files = spool_files(tmp_path / "spool")
            return len(files) == 1 and len(files[0].read_bytes().splitlines()) == 30

        await until(spooled)
        assert spool.waiting > 0

        await asyncio.to_thread(postgres_server.start)
        await call(served, *(f"after-{i}" for i in range(5)))
        await until(lambda: _count_is(spend_log, 45))
    await recorder.aclose()

    ids = await stored(spend_log)
    assert sorted(ids) == sorted(
        [f"before-{i}" for i in range(10)]
        + [f"during-{i}" for i in range(30)]
        + [f"after-{i}" for i in range(5)]
    )
    assert spool.waiting == 0 and spool_files(tmp_path / "spool") == []  # removed once written


async def test_a_shutdown_while_the_database_is_down_leaves_the_rows_to_the_next_start(
    spend_log: SqlSpendLog,
    postgres_server: PostgresServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = tmp_path / "spool"
    first = SpendRecorder(spend_log, spool_folder=folder, interval=60)  # writes only at close
    first.start()
    async with gateway(first) as served:
        await call(served, *(f"r{i}" for i in range(25)))
    await asyncio.to_thread(postgres_server.stop)
    with caplog.at_level(logging.WARNING, logger="prismgate"):
        await first.aclose()
    assert "wait in the spool for the next start" in caplog.text
    [file] = spool_files(folder)
    assert len(file.read_bytes().splitlines()) == 25

    await asyncio.to_thread(postgres_server.start)
    second = SpendRecorder(spend_log, spool_folder=folder, interval=0.05)
    second.start()  # adopts the file the first one left, and replays it
    await until(lambda: _count_is(spend_log, 25))
    await until(lambda: _no_files(folder))
    await second.aclose()
    assert sorted(await stored(spend_log)) == sorted(f"r{i}" for i in range(25))


async def _count_is(log: SqlSpendLog, count: int) -> bool:
    try:
        return len(await stored(log)) == count
    except OSError:
        return False


async def _no_files(folder: Path) -> bool:
    return not spool_files(folder)


def rows(count: int, prefix: str = "r") -> list[SpendRow]:
    return [
        SpendRow(
            request_id=f"{prefix}{i}",
            started_at=1_700_000_000.0 + i,
            ended_at=1_700_000_001.0 + i,
            call_type="image_generation",
            status_code=200,
            prompt="an otter",
        )
        for i in range(count)
    ]


def test_the_spool_is_bounded_and_drops_rows_past_it_with_a_logged_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    some = rows(8)
    line = len(line_of(some[0]))
    spool = SpendSpool(tmp_path, max_bytes=5 * line + line // 2)  # room for five rows
    with caplog.at_level(logging.ERROR, logger="prismgate"):
        assert spool.append(some[:3]) == 0
        assert spool.append(some[3:]) == 3
    assert "3 rows dropped (3 in all)" in caplog.text
    batch = spool.peek(100)
    assert batch is not None
    assert [row.request_id for row in batch.rows] == ["r0", "r1", "r2", "r3", "r4"]
    spool.take(batch)
    assert spool.waiting == 0 and spool.peek(100) is None
    assert spool.append(some[5:]) == 0  # written rows make room again
    spool.close()


def test_a_spool_file_is_adopted_by_one_process_only_and_never_while_its_owner_lives(
    tmp_path: Path,
) -> None:
    owner = SpendSpool(tmp_path)
    owner.append(rows(3))
    assert SpendSpool(tmp_path).adopt() == 0  # its owner holds the lock
    owner.close()  # ends with rows not written: the file stays
    assert len(spool_files(tmp_path)) == 1

    starters = [SpendSpool(tmp_path) for _ in range(4)]
    counts: list[int] = []
    threads = [threading.Thread(target=lambda s=s: counts.append(s.adopt())) for s in starters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(counts) == [0, 0, 0, 1]
    [adopter] = [starter for starter in starters if starter.waiting]
    batch = adopter.peek(100)
    assert batch is not None and [row.request_id for row in batch.rows] == ["r0", "r1", "r2"]
    adopter.take(batch)
    assert spool_files(tmp_path) == []  # replayed: removed, so no one replays it again
    for starter in starters:
        starter.close()


def test_a_row_cut_short_by_a_crash_is_skipped_with_a_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    whole = b"".join(line_of(row) for row in rows(2))
    (tmp_path / "spool-1-dead.jsonl").write_bytes(whole + b'{"request_id": "r2", "sta')
    spool = SpendSpool(tmp_path)
    assert spool.adopt() == 1
    with caplog.at_level(logging.WARNING, logger="prismgate"):
        batch = spool.peek(100)
    assert batch is not None and [row.request_id for row in batch.rows] == ["r0", "r1"]
    assert "ends in a part row" in caplog.text
    spool.take(batch)
    assert spool.peek(100) is None and spool_files(tmp_path) == []
    spool.close()


def line_of(row: SpendRow) -> bytes:
    """A row as the spool writes it: one JSON line."""
    return msgspec.json.encode(row) + b"\n"


def frames(data: bytes) -> list[bytes]:
    """A journal's frames (each: its length in 4 bytes, little-endian, the row, a newline),
    up to the zeros after them."""
    found: list[bytes] = []
    at = 0
    while (size := int.from_bytes(data[at : at + 4], "little")) > 0:
        assert data[at + 4 + size] == ord("\n")
        found.append(data[at + 4 : at + 4 + size])
        at += 4 + size + 1
    return found


def replay(folder: Path) -> list[SpendRow]:
    """What a starting process replays from `folder`."""
    spool = SpendSpool(folder)
    spool.adopt()
    replayed: list[SpendRow] = []
    while (batch := spool.peek(128)) is not None:
        replayed += batch.rows
        spool.take(batch)
    spool.close()
    return replayed


def test_journal_rows_replay_whole_even_those_messagepack_cannot_hold(tmp_path: Path) -> None:
    kept = KeptImage(name="a" * 64 + ".png", width=8, height=8, size_bytes=99)
    written = [
        *rows(2),
        SpendRow(
            "full", 1.5, 2.5, "image_edit", 502, "t" * 64, "alias", "team", "user", "end",
            images=2, spend=12_345, latency_ms=0.1, attempts=("a", "b"), adjustments=("n",),
            metadata={"tags": ["x"], "nested": {"f": 1.25, "none": None}},
            kept_images=(kept,), details={"request": {"prompt": "p"}},
        ),
        SpendRow("huge", 3.0, 4.0, "image_generation", 200, metadata={"id": 1 << 70}),
    ]  # fmt: skip
    journal = SpendJournal(tmp_path)
    journal.prepare()
    for row in written:
        journal.write(row)
    journal.close(keep=True)  # rows that could go nowhere: left for the next start
    [path] = tmp_path.glob("journal-*.msgpack")
    found = frames(path.read_bytes())
    assert len(found) == 4
    assert found[-1].startswith(b"{")  # past 64 bits: JSON
    assert not any(frame.startswith(b"{") for frame in found[:-1])
    assert replay(tmp_path) == written
    assert list(tmp_path.glob("journal-*")) == []


def test_a_journal_cut_short_or_of_an_earlier_release_is_replayed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = SpendJournal(tmp_path)
    journal.prepare()
    for row in rows(3, "new"):
        journal.write(row)
    journal.close(keep=True)
    [path] = tmp_path.glob("journal-*.msgpack")
    data = path.read_bytes().rstrip(b"\0")
    path.write_bytes(data[:-7])  # the last frame cut short by a crash
    os.utime(path, (time.time() - 60, time.time() - 60))  # the older file: replayed first
    # An earlier release's journal: lines of JSON.
    (tmp_path / "journal-1-old.jsonl").write_bytes(b"".join(map(line_of, rows(2, "old"))))
    with caplog.at_level(logging.WARNING, logger="prismgate"):
        replayed = [row.request_id for row in replay(tmp_path)]
    assert replayed == ["new0", "new1", "old0", "old1"]
    assert "a journal ends in a part row" in caplog.text
    assert list(tmp_path.glob("journal-*")) == []


def test_a_spool_file_left_half_made_is_removed_once_abandoned(tmp_path: Path) -> None:
    abandoned = tmp_path / ".spool-1-dead.jsonl.new"
    abandoned.touch()
    os.utime(abandoned, (time.time() - 3600, time.time() - 3600))
    fresh = tmp_path / ".spool-2-live.jsonl.new"  # being made right now, perhaps
    fresh.touch()
    spool = SpendSpool(tmp_path)
    spool.adopt()
    assert not abandoned.exists() and fresh.exists()
    spool.close()


async def test_queued_rows_are_written_ahead_and_a_clean_close_removes_the_journal(
    spend_log: SqlSpendLog, tmp_path: Path
) -> None:
    folder = tmp_path / "spool"
    recorder = SpendRecorder(spend_log, spool_folder=folder, interval=60)  # writes at close
    recorder.start()

    async def journaled() -> bool:  # what a SIGKILL now would leave for the next start
        # A journal is mapped ahead: its rows' frames, then zeros.
        found = [frame for path in folder.glob("journal-*.msgpack") for frame in
                 frames(path.read_bytes())]  # fmt: skip
        return len(found) == 3

    async with gateway(recorder) as served:
        await until(lambda: asyncio.sleep(0, bool(list(folder.glob("journal-*.msgpack")))))
        await call(served, "j1", "j2", "j3")
        await until(journaled)
    await recorder.aclose()
    assert sorted(await stored(spend_log)) == ["j1", "j2", "j3"]
    assert list(folder.glob("journal-*.msgpack")) == []


KILLED_WRITER = """
import os, signal, sys
from prismgate.spool import SpendJournal
from prismgate.storage.records import KeptImage, SpendRow
SpendJournal.MAP_BYTES = 4096  # a small mapping: the rows below make it grow
journal = SpendJournal(sys.argv[1])
journal.prepare()
for index in range(int(sys.argv[2])):
    row = SpendRow(request_id=f"k{index}", started_at=0.0, ended_at=1.0,
                   call_type="image_generation", status_code=200)
    journal.write(row)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_process_leaves_its_journaled_rows_to_the_next_start(tmp_path: Path) -> None:
    """The journal's rows are in a shared mapping, not written a row at a time: a process
    killed right after copying them leaves them all, grown past the first mapping, and
    the zeros after them are not read as rows."""
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path), "300"], check=False
    )
    assert killed.returncode == -signal.SIGKILL
    [journal] = tmp_path.glob("journal-*.msgpack")
    assert journal.stat().st_size > 4096
    spool = SpendSpool(tmp_path)
    assert spool.adopt() == 1
    replayed: list[str] = []
    while (batch := spool.peek(128)) is not None:
        replayed += [row.request_id for row in batch.rows]
        spool.take(batch)
    assert replayed == [f"k{index}" for index in range(300)]
    assert list(tmp_path.glob("journal-*.msgpack")) == []
    spool.close()


def test_the_journal_reuses_its_files_and_an_emptied_one_holds_no_rows(tmp_path: Path) -> None:
    journal = SpendJournal(tmp_path)
    made: set[Path] = set()
    for _ in range(6):  # the recorder's cycle: a batch is sealed, written, forgotten
        journal.prepare()
        sealed = journal.seal()
        for row in rows(3):  # queued while the batch is written
            journal.write(row)
        made |= set(tmp_path.glob("journal-*.msgpack"))
        journal.forget(sealed)
        for file in sealed:  # emptied in place: zeros, nothing a next start would replay
            assert file.file.path.read_bytes().strip(b"\0") == b""
    assert len(made) == 2  # a pair, made once: no file made or removed a batch
    for path in made:  # on blocks taken: a full disk is an OSError, never a SIGBUS
        assert path.stat().st_blocks * 512 >= SpendJournal.MAP_BYTES
    # Emptied files hold nothing a next start would replay; the journal lives: locked.
    assert SpendSpool(tmp_path).adopt() == 0
    journal.write(rows(1, prefix="last")[0])
    journal.close(keep=True)  # rows that could go nowhere: their file stays, empty ones go
    spool = SpendSpool(tmp_path)
    assert spool.adopt() == 1
    batch = spool.peek(100)
    # The rows queued since the last batch, then the last one: none of the batches.
    assert batch is not None and [row.request_id for row in batch.rows] == [
        "r0",
        "r1",
        "r2",
        "last0",
    ]
    assert len(list(tmp_path.glob("journal-*.msgpack"))) == 1
    spool.close()
