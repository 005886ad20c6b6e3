"""The console's record of a call, from the SDK gateway to the spend log (a real SQLite
database, a real image folder): the row waits for its record, a shutdown right after a
call still writes it whole, a record slower than the shutdown's wait or cancelled with its
loop still leaves its row, a recorder with too many records (or bytes) in hand writes rows
without them rather than wait, details too large are cut to size, and a gateway without a
spend recorder, or whose config keeps nothing, makes no record and starts no thread."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import msgspec
import pytest

from prismgate import Gateway, ImageGenerationRequest, load_config
from prismgate.call_records import MAX_DETAILS_BYTES
from prismgate.gateway import CallOptions
from prismgate.spend import SpendRecorder
from prismgate.storage import ImageStore, KeptFile, SpendQuery, StoredImage, open_stores
from prismgate.storage.sql import SqlSpendLog, database_url, open_engine, upgrade
from prismgate.types.chat import ChatCompletionRequest

RECORD_THREADS = "prismgate-records"


async def spend_log(folder: Path) -> SqlSpendLog:
    url = database_url(f"sqlite:///{folder / 'spend.db'}", folder)
    await upgrade(url)
    return SqlSpendLog(open_engine(url))


def config(folder: Path, **console: Any) -> Any:
    """A config whose console keeps images and request details (both off by default),
    unless `console` says otherwise."""
    console = {"keep_images": True, "keep_request_details": True, **console}
    return load_config(
        {
            "model_list": [{"model_name": "otters", "litellm_params": {"model": "mock/otters"}}],
            "general_settings": {"image_store": {"path": str(folder)}, "console": console},
        },
        environ={},
    )


async def generate(served: Gateway, request_id: str) -> None:
    request = ImageGenerationRequest(prompt="an otter", model="otters", size="64x64", n=2)
    await served.image_generation(request, CallOptions(request_id=request_id))


class StalledImages:
    """The real image store on a disk that stalls: keeping an image waits until
    `resume` is set (never, unless a test sets it)."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store
        self.resume = asyncio.Event()

    async def put(self, data: bytes, media_type: str) -> str:
        return await self.store.put(data, media_type)

    async def exists(self, name: str) -> bool:
        return await self.store.exists(name)

    async def get(self, name: str) -> StoredImage | None:
        return await self.store.get(name)

    async def keep(
        self, data: bytes, media_type: str, *, executor: Executor | None = None
    ) -> KeptFile:
        await self.resume.wait()
        return await self.store.keep(data, media_type, executor=executor)

    async def keep_stored(self, name: str, *, executor: Executor | None = None) -> KeptFile | None:
        await self.resume.wait()
        return await self.store.keep_stored(name, executor=executor)

    def signing_key(self, master_key: str | None) -> bytes:
        return self.store.signing_key(master_key)

    async def aclose(self) -> None:
        await self.store.aclose()


def stalled_gateway(folder: Path, recorder: SpendRecorder) -> Gateway:
    settings = config(folder)  # the defaults: images and details kept
    stores = open_stores(settings)
    stalled = dataclasses.replace(stores, images=StalledImages(stores.images))
    return Gateway(settings, stores=stalled, observers=(recorder,))


def record_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(RECORD_THREADS)]


async def test_a_shutdown_right_after_a_call_writes_its_row_whole(tmp_path: Path) -> None:
    log = await spend_log(tmp_path)
    recorder = SpendRecorder(log, interval=60)  # writes only when closed
    recorder.start()
    async with Gateway(config(tmp_path / "images"), observers=(recorder,)) as served:
        await generate(served, "r1")
        await recorder.aclose()  # the record is still being finished: it is waited for
    [row] = await log.rows(SpendQuery(with_details=True))
    assert [(image.role, image.index, image.width) for image in row.kept_images] == [
        ("output", 0, 64),
        ("output", 1, 64),
    ]
    assert row.details is not None and row.details["request"]["n"] == 2
    assert {path.name for path in (tmp_path / "images" / "kept").iterdir()} == {
        image.name for image in row.kept_images
    }
    await log.aclose()


async def test_too_many_records_at_once_are_written_without_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = await spend_log(tmp_path)
    recorder = SpendRecorder(log, interval=60, max_finishing=0)
    recorder.start()
    with caplog.at_level(logging.WARNING, logger="prismgate"):
        async with Gateway(config(tmp_path / "images"), observers=(recorder,)) as served:
            await generate(served, "r1")
            await recorder.aclose()
    [row] = await log.rows(SpendQuery(with_details=True))
    assert row.kept_images == () and row.details is None
    assert "without their console record" in caplog.text
    await log.aclose()


async def test_a_record_slower_than_the_shutdown_wait_leaves_its_row_bare(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = await spend_log(tmp_path)
    recorder = SpendRecorder(log, interval=60, finish_timeout=0.1)
    recorder.start()
    with caplog.at_level(logging.WARNING, logger="prismgate"):
        async with stalled_gateway(tmp_path / "images", recorder) as served:
            await generate(served, "slow")
            began = time.monotonic()
            await recorder.aclose()  # the record never finishes: its row goes without it
            assert time.monotonic() - began < 5
    [row] = await log.rows(SpendQuery(with_details=True))
    assert row.request_id == "slow" and row.images == 2
    assert row.kept_images == () and row.details is None
    assert "not finished within 0.1 s of shutdown" in caplog.text
    await log.aclose()


@pytest.mark.parametrize("begun", [True, False])
async def test_a_record_cancelled_as_its_loop_closes_leaves_its_row_bare(
    tmp_path: Path, begun: bool
) -> None:
    log = await spend_log(tmp_path)
    recorder = SpendRecorder(log, interval=60)
    recorder.start()
    async with stalled_gateway(tmp_path / "images", recorder) as served:
        await generate(served, "cut")
        if begun:
            await asyncio.sleep(0.05)  # the record is waiting on the stalled disk
        # What asyncio.run does as it ends: every other task is cancelled.
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await recorder.flush()
    [row] = await log.rows(SpendQuery(with_details=True))
    assert row.request_id == "cut" and row.kept_images == ()
    await log.aclose()


async def test_records_holding_too_many_bytes_are_written_without_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = await spend_log(tmp_path)
    recorder = SpendRecorder(log, interval=60, max_finishing_bytes=100)
    recorder.start()
    with caplog.at_level(logging.WARNING, logger="prismgate"):
        async with Gateway(config(tmp_path / "images"), observers=(recorder,)) as served:
            await generate(served, "big")  # two base64 PNGs: more than 100 bytes
            await served.chat_completion(
                msgspec.convert(
                    {"model": "otters", "messages": [{"role": "user", "content": "hi"}]},
                    ChatCompletionRequest,
                ),
                CallOptions(request_id="small"),
            )
            await recorder.aclose()
    rows = {row.request_id: row for row in await log.rows(SpendQuery(with_details=True))}
    assert rows["big"].details is None and rows["big"].kept_images == ()
    assert rows["small"].details is not None  # a chat's record holds no image
    assert "the records being finished hold too many bytes" in caplog.text
    await log.aclose()


async def test_only_a_gateway_with_a_spend_recorder_and_something_to_keep_makes_records(
    tmp_path: Path,
) -> None:
    log = await spend_log(tmp_path)
    others = set(record_threads())  # other gateways' in this process (a proxy of a fixture)
    # The SDK without a spend recorder (nowhere to keep a record): no keeper, no thread.
    async with Gateway(config(tmp_path / "images")) as plain:
        assert plain.reporting.keeper is None
        await generate(plain, "sdk")
        assert set(record_threads()) == others
    assert not (tmp_path / "images" / "kept").exists()
    # A recorder given at construction (the SDK), or added later (the proxy): a keeper,
    # keeping images and details as the config says; its threads end with the gateway.
    recorder = SpendRecorder(log, interval=60)
    async with Gateway(config(tmp_path / "images"), observers=(recorder,)) as given:
        keeper = given.reporting.keeper
        assert keeper is not None and keeper.keep_images and keeper.keep_details
    async with Gateway(config(tmp_path / "images")) as added:
        added.observers = (*added.observers, recorder)
        assert added.reporting.keeper is not None
        await generate(added, "proxy")
        await recorder.aclose()
        assert set(record_threads()) > others
    deadline = time.monotonic() + 5
    while set(record_threads()) - others:
        assert time.monotonic() < deadline, "the keeper's threads outlived the gateway"
        await asyncio.sleep(0.01)
    [row] = await log.rows(SpendQuery(with_details=True))
    assert row.request_id == "proxy" and len(row.kept_images) == 2
    # A config that keeps nothing (the default): no keeper, even with a recorder.
    off = config(tmp_path / "images", keep_images=False, keep_request_details=False)
    default = load_config({"model_list": [], "general_settings": {}}, environ={})
    for settings in (off, default):
        async with Gateway(settings, observers=(SpendRecorder(log),)) as nothing:
            assert nothing.reporting.keeper is None
    await log.aclose()


async def test_details_too_large_to_keep_are_cut_to_size(tmp_path: Path) -> None:
    log = await spend_log(tmp_path)
    recorder = SpendRecorder(log, interval=60)
    recorder.start()
    settings = config(tmp_path / "images", keep_request_details=True)
    long_chat = [
        {"role": "user", "content": f"{n}: " + "an otter swims. " * 250} for n in range(80)
    ]
    async with Gateway(settings, observers=(recorder,)) as served:
        request = msgspec.convert({"model": "otters", "messages": long_chat}, ChatCompletionRequest)
        await served.chat_completion(request, CallOptions(request_id="long"))
        await recorder.aclose()
    [row] = await log.rows(SpendQuery(with_details=True))
    assert row.details is not None
    assert len(msgspec.json.encode(row.details)) <= MAX_DETAILS_BYTES
    assert row.details["request"].endswith("KB: too large to keep>")
    assert row.details["answer"]["choices"]  # the smaller parts stay
    await log.aclose()
