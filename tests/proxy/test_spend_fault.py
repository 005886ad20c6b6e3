"""The spend log loses nothing when its PostgreSQL goes away: the real proxy under a load
of concurrent image calls, its database (a server of this module's own) stopped in the
middle and started again. Every request the clients sent has exactly one row."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from prismgate.storage import SpendQuery
from prismgate.storage.sql import SqlSpendLog, database_url, open_engine
from tests.postgres_server import PostgresServer, running_postgres
from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own; a test that stops it starts it again."""
    with running_postgres() as server:
        yield server


@pytest.fixture
async def database(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh database on the module's server; the server runs again after the test."""
    yield await asyncio.to_thread(postgres_server.create_database, f"fault_{uuid.uuid4().hex[:12]}")
    if not postgres_server.running:
        postgres_server.start()


def proxy_for(url: str, data_dir: Path) -> RunningProxy:
    general = {"master_key": MASTER_KEY, "database_url": url, "data_dir": str(data_dir)}
    return RunningProxy(
        {"model_list": [model("otters", "mock/otters")], "general_settings": general}
    )


def spooled_rows(data_dir: Path) -> int:
    return sum(
        len(path.read_bytes().splitlines()) for path in (data_dir / "spend-spool").glob("*.jsonl")
    )


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def stored_ids(url: str, tmp_path: Path) -> list[str]:
    """The request ids in the database, read straight from it (the proxies are gone)."""
    log = SqlSpendLog(open_engine(database_url(url, tmp_path)))
    try:
        return [row.request_id for row in await log.rows(SpendQuery(limit=10_000))]
    finally:
        await log.aclose()


class Load:
    """`total` image calls from `workers` concurrent clients, as a steady stream; the
    status of each answer, by the request id it carried. `gates` hold back the calls
    from a number on until an event is set."""

    def __init__(self, proxy: RunningProxy, key: str, total: int, workers: int = 8) -> None:
        self.proxy, self.key, self.total, self.workers = proxy, key, total, workers
        self.sent = 0
        self.answers: dict[str, int] = {}
        self.gates: list[tuple[int, asyncio.Event]] = []

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        body = {"model": "otters", "prompt": "an otter", "size": "256x256"}
        async with httpx.AsyncClient(base_url=self.proxy.base_url, timeout=30) as client:

            async def worker() -> None:
                while self.sent < self.total:
                    number, self.sent = self.sent, self.sent + 1
                    for first, event in self.gates:
                        if number >= first:
                            await event.wait()
                    answer = await client.post("/v1/images/generations", json=body, headers=headers)
                    self.answers[answer.headers["x-request-id"]] = answer.status_code
                    await asyncio.sleep(0.01)  # a steady stream, not one burst

            await asyncio.gather(*(worker() for _ in range(self.workers)))


async def test_a_database_restart_under_load_loses_no_spend_row_and_writes_none_twice(
    postgres_server: PostgresServer, database: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    proxy = proxy_for(database, data_dir).start()
    try:
        made = httpx.post(
            proxy.base_url + "/key/generate", json={"key_alias": "load"}, headers=ADMIN
        )
        load = Load(proxy, made.json()["key"], total=120)
        # Calls 45 to 89 come while the database is down, the last 30 once it is back.
        stopped, restarted = asyncio.Event(), asyncio.Event()
        load.gates = [(45, stopped), (90, restarted)]

        async def answered(count: int) -> bool:
            return len(load.answers) >= count

        async def spooled() -> bool:
            return spooled_rows(data_dir) > 0  # a write failed: rows are on disk

        async def outage() -> None:
            await until(lambda: answered(30))
            await asyncio.to_thread(postgres_server.stop)  # with calls under way
            stopped.set()
            await until(lambda: answered(90))
            await until(spooled)
            await asyncio.to_thread(postgres_server.start)
            restarted.set()

        await asyncio.gather(load.run(), outage())
    finally:
        proxy.stop()  # shutdown flushes the queue

    assert len(load.answers) == 120
    assert set(load.answers.values()) == {200}
    ids = await stored_ids(database, tmp_path)
    assert len(ids) == len(set(ids)) == 120  # none twice
    assert set(ids) == set(load.answers)  # none lost
    assert spooled_rows(data_dir) == 0  # the spool was written back, and removed


async def test_rows_spooled_at_a_shutdown_while_the_database_is_down_are_written_by_the_next_start(
    postgres_server: PostgresServer, database: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    first = proxy_for(database, data_dir).start()
    try:
        made = httpx.post(
            first.base_url + "/key/generate", json={"key_alias": "late"}, headers=ADMIN
        )
        load = Load(first, made.json()["key"], total=10, workers=2)
        await load.run()
        await asyncio.to_thread(postgres_server.stop)
        more = Load(first, made.json()["key"], total=20, workers=4)
        await more.run()
    finally:
        first.stop()  # the database is down: the queue goes to the spool
    assert spooled_rows(data_dir) > 0

    await asyncio.to_thread(postgres_server.start)
    second = proxy_for(database, data_dir).start()  # replays the spool it finds
    try:
        expected = {**load.answers, **more.answers}

        async def all_written() -> bool:  # read through the new proxy's /spend/logs
            async with httpx.AsyncClient(base_url=second.base_url, headers=ADMIN) as client:
                rows = (await client.get("/spend/logs")).json()
            return {row["request_id"] for row in rows} == set(expected)

        await until(all_written)
    finally:
        second.stop()
    ids = await stored_ids(database, tmp_path)
    assert sorted(ids) == sorted(expected)
    assert spooled_rows(data_dir) == 0
