"""The image store on a real directory: its cap, its sweep, and link checking."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prismgate.config import ImageStoreSettings
from prismgate.errors import InsufficientStorageError
from prismgate.media.links import SignedLinks
from prismgate.storage.local_images import LocalImageStore as ImageStore


def store(path: Path, **settings: object) -> ImageStore:
    return ImageStore(ImageStoreSettings(path=str(path), **settings))  # type: ignore[arg-type]


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_concurrent_puts_never_pass_the_cap(tmp_path: Path) -> None:
    images = store(tmp_path, max_bytes=10_000)

    async def put_all() -> list[str | BaseException]:
        puts = [images.put(bytes([n]) * 1000, "image/png") for n in range(30)]
        try:
            return await asyncio.gather(*puts, return_exceptions=True)
        finally:
            await images.aclose()

    results = asyncio.run(put_all())
    assert sum(isinstance(r, str) for r in results) == 10
    assert all(isinstance(r, str | InsufficientStorageError) for r in results)
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) == 10_000


def test_the_sweep_removes_expired_images_only(tmp_path: Path) -> None:
    images = store(tmp_path, url_ttl_seconds=60, expiry_margin_seconds=30)
    key = images.signing_key(None)

    async def scenario() -> tuple[str, str, int]:
        old = await images.put(b"old" * 100, "image/png")
        young = await images.put(b"young" * 100, "image/png")
        age(tmp_path / old, 91)
        age(tmp_path / young, 89)
        (tmp_path / "notes.txt").write_text("not the store's")
        age(tmp_path / "notes.txt", 10_000)
        age(tmp_path / ".signing-key", 10_000)
        (tmp_path / f"{'0' * 64}.abcd1234.part").write_bytes(b"half")
        age(tmp_path / f"{'0' * 64}.abcd1234.part", 10_000)
        used = await images.sweep()
        await images.aclose()
        return old, young, used

    old, young, used = asyncio.run(scenario())
    names = {p.name for p in tmp_path.iterdir()}
    assert old not in names
    assert names == {young, "notes.txt", ".signing-key"}
    assert used == 500
    assert images.signing_key(None) == key  # the key file outlives every sweep


def test_a_reused_image_is_kept_for_its_new_link(tmp_path: Path) -> None:
    images = store(tmp_path, url_ttl_seconds=60, expiry_margin_seconds=0)

    async def scenario() -> str:
        name = await images.put(b"same" * 100, "image/png")
        age(tmp_path / name, 59)
        assert await images.exists(name)  # a cache hit links to it again
        await images.put(b"same" * 100, "image/png")  # or the same image comes back
        await images.sweep()
        await images.aclose()
        return name

    name = asyncio.run(scenario())
    assert (tmp_path / name).exists()
    assert time.time() - (tmp_path / name).stat().st_mtime < 5


def test_the_sweeper_runs_on_its_own_and_stops_on_aclose(tmp_path: Path) -> None:
    images = store(
        tmp_path, url_ttl_seconds=1, expiry_margin_seconds=0, sweep_interval_seconds=0.05
    )

    async def scenario() -> None:
        name = await images.put(b"x" * 100, "image/png")
        age(tmp_path / name, 5)
        for _ in range(100):
            if not (tmp_path / name).exists():
                break
            await asyncio.sleep(0.02)
        assert not (tmp_path / name).exists()
        await images.aclose()
        tasks = [t for t in asyncio.all_tasks() if t.get_name() == "image-store-sweep"]
        assert tasks == []

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "settings",
    [
        {"max_bytes": 0},
        {"url_ttl_seconds": 0},
        {"expiry_margin_seconds": -1},
        {"sweep_interval_seconds": 0},
    ],
)
def test_settings_out_of_range_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ImageStoreSettings(**settings)  # type: ignore[arg-type]


LINKS = SignedLinks(b"k" * 32, 3600)
NAME = "a" * 64 + ".png"


@given(name=st.text(), expires=st.text(), signature=st.text())
def test_any_link_part_is_refused_not_raised(name: str, expires: str, signature: str) -> None:
    assert LINKS.check(name, expires, signature) is not None


@given(expires=st.text(st.characters(categories=["Nd", "No"]), min_size=1) | st.just("9" * 5000))
def test_only_ascii_times_are_read(expires: str) -> None:
    # A signature made for the number those digits mean is still refused.
    try:
        meant = int(expires)
    except ValueError:
        meant = 1
    signature = LINKS.link("http://h", NAME, now=meant - 3600).rpartition("=")[2]
    if expires.isascii() and len(expires) <= 12:
        return
    assert LINKS.check(NAME, expires, signature) is not None


def test_a_good_link_is_accepted() -> None:
    link = LINKS.link("http://h", NAME, now=1_000)
    query = dict(part.split("=") for part in link.partition("?")[2].split("&"))
    assert LINKS.check(NAME, query["expires"], query["signature"], now=1_000) is None
    refusal = LINKS.check(NAME, query["expires"], query["signature"], now=10_000)
    assert refusal is not None and "expired" in refusal
