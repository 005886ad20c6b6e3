"""The console's kept images in the local image store (a real folder): kept apart from
link images, hard-linked (never copied) from them, found by links, expired after the keep
period, held within their own byte budget without ever breaking a link, and written in
the threads they are given."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from prismgate.config import ImageStoreSettings
from prismgate.errors import InsufficientStorageError
from prismgate.storage.local_images import KEPT_FOLDER, LocalImageStore

DAY = 86_400.0


def store(path: Path, *, keep_days: float = 7, keep_max_bytes: int = 1 << 20) -> LocalImageStore:
    return LocalImageStore(
        ImageStoreSettings(path=str(path), url_ttl_seconds=60, expiry_margin_seconds=0),
        keep_seconds=keep_days * DAY,
        keep_max_bytes=keep_max_bytes,
    )


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def image(width: int, height: int = 0, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height or width), color).save(out, "PNG")
    return out.getvalue()


def test_a_kept_image_is_named_by_content_and_read_back_with_its_size(tmp_path: Path) -> None:
    images = store(tmp_path)
    data = image(40, 30)

    async def scenario() -> None:
        kept = await images.keep(data, "image/png")
        again = await images.keep(data, "image/png")
        assert kept == again  # kept once: the second keep only restarts its time
        assert (kept.width, kept.height, kept.size_bytes) == (40, 30, len(data))
        assert kept.name.endswith(".png")
        assert [p.name for p in (tmp_path / KEPT_FOLDER).iterdir()] == [kept.name]
        found = await images.get(kept.name)
        assert found is not None and found.data == data and found.media_type == "image/png"
        assert await images.exists(kept.name)
        await images.aclose()

    asyncio.run(scenario())


def same_file(one: Path, other: Path) -> bool:
    return one.stat().st_ino == other.stat().st_ino and one.stat().st_nlink == 2


def test_an_image_stored_for_a_link_is_linked_not_copied(tmp_path: Path) -> None:
    images = store(tmp_path)
    data = image(32)

    async def scenario() -> None:
        name = await images.put(data, "image/png")
        kept = await images.keep_stored(name)
        assert kept is not None and kept.name == name and kept.width == 32
        # One file with a name in each folder: the bytes are on disk once.
        assert same_file(tmp_path / name, tmp_path / KEPT_FOLDER / name)
        # The link still finds it, and a later url answer of the same image reuses it.
        found = await images.get(name)
        assert found is not None and found.data == data
        assert await images.put(data, "image/png") == name
        assert same_file(tmp_path / name, tmp_path / KEPT_FOLDER / name)
        # Keeping it again from its bytes writes nothing either.
        assert (await images.keep(data, "image/png")).name == name
        assert len(list((tmp_path / KEPT_FOLDER).iterdir())) == 1
        assert await images.keep_stored("0" * 64 + ".png") is None
        assert await images.keep_stored("../../etc/passwd") is None
        await images.aclose()

    asyncio.run(scenario())


def test_kept_images_expire_after_the_keep_period(tmp_path: Path) -> None:
    images = store(tmp_path, keep_days=2)

    async def scenario() -> None:
        old = (await images.keep(image(20, color=(1, 2, 3)), "image/png")).name
        young = (await images.keep(image(20, color=(4, 5, 6)), "image/png")).name
        link = await images.put(image(20, color=(7, 8, 9)), "image/png")
        age(tmp_path / KEPT_FOLDER / old, 2 * DAY + 5)
        age(tmp_path / KEPT_FOLDER / young, 2 * DAY - 60)
        # A link image is gone after its link's lifetime, a kept one only after the period.
        age(tmp_path / link, 61)
        await images.sweep()
        assert await images.get(old) is None
        assert await images.get(young) is not None
        assert await images.get(link) is None
        await images.aclose()

    asyncio.run(scenario())


def test_kept_images_stay_within_their_budget_oldest_first(tmp_path: Path) -> None:
    first, second, third = (image(64, color=(n, n, n)) for n in (10, 20, 30))
    budget = len(first) + len(second) + len(third) // 2
    images = store(tmp_path, keep_max_bytes=budget)

    async def scenario() -> None:
        a = (await images.keep(first, "image/png")).name
        age(tmp_path / KEPT_FOLDER / a, 30)
        b = (await images.keep(second, "image/png")).name
        c = (await images.keep(third, "image/png")).name
        assert await images.get(a) is None  # the oldest went to make room
        assert await images.get(b) is not None and await images.get(c) is not None
        used = sum(p.stat().st_size for p in (tmp_path / KEPT_FOLDER).iterdir())
        assert used <= budget
        # Link images have their own room: kept images never make a url answer fail.
        assert await images.put(image(64, color=(99, 1, 1)), "image/png")
        with pytest.raises(InsufficientStorageError, match="keep_images_max_bytes"):
            await images.keep(b"\x89PNG" + bytes(budget + 1), "image/png")
        await images.aclose()

    asyncio.run(scenario())


def test_making_room_for_kept_images_never_breaks_a_link(tmp_path: Path) -> None:
    linked_first, kept_first, linked_later, *fillers = (
        image(64, color=(n, 200, 9)) for n in range(1, 6)
    )
    images = store(tmp_path, keep_max_bytes=len(linked_first) * 2 + 10)  # two fit

    def kept() -> set[str]:
        return {path.name for path in (tmp_path / KEPT_FOLDER).iterdir()}

    async def scenario() -> None:
        # An image linked (a url answer), then kept; one kept, then linked (a url answer
        # of an image kept already).
        one = await images.put(linked_first, "image/png")
        assert await images.keep_stored(one) is not None
        two = (await images.keep(kept_first, "image/png")).name
        assert await images.put(kept_first, "image/png") == two
        for name in (one, two):
            age(tmp_path / KEPT_FOLDER / name, 30)  # the oldest kept images go first
        three = (await images.keep(linked_later, "image/png")).name
        assert kept() == {three}  # one and two went to make room ...
        # One kept, then found again for a new link (a cache hit), then made room for.
        assert await images.exists(three)
        age(tmp_path / KEPT_FOLDER / three, 30)
        for filler in fillers:
            await images.keep(filler, "image/png")
        assert three not in kept()
        # ... and each one a link was given out for still answers that link.
        for name, data in ((one, linked_first), (two, kept_first), (three, linked_later)):
            found = await images.get(name)
            assert found is not None and found.data == data, name
        # Once their links have expired, the link images go too.
        for name in (one, two, three):
            age(tmp_path / name, 61)
        await images.sweep()
        assert [await images.get(name) for name in (one, two, three)] == [None] * 3
        await images.aclose()

    asyncio.run(scenario())


def test_kept_images_are_written_in_the_threads_they_are_given(tmp_path: Path) -> None:
    images = store(tmp_path)
    seen: list[str] = []
    data = image(24)

    class Watched(ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            return super().submit(lambda: seen.append(threading.current_thread().name) or fn())

    async def scenario() -> None:
        with Watched(1, thread_name_prefix="console-records") as threads:
            name = await images.put(image(20), "image/png")
            assert await images.keep(data, "image/png", executor=threads)
            assert await images.keep_stored(name, executor=threads)
        await images.aclose()

    asyncio.run(scenario())
    assert len(seen) == 2 and all(name.startswith("console-records") for name in seen)
