"""The image store in a local folder (`general_settings.image_store.type: local`).

Images are kept for `response_format=url` answers behind signed links (`media/links.py`).
The signing key comes from the master key, or from a key file in the store directory, so
every worker of one deployment accepts every other worker's links.

The console's kept images (`general_settings.console.keep_images`) live in `kept/` below
the store's folder, with their own lifetime and byte budget, so that a week of kept
images never fills the room that `url` answers need. An image stored for a link and then
kept, or kept and then linked, has a name in both folders: a hard link, the same bytes on
disk, never written twice. Each folder removes only its own names, by its own rules, so
making room for kept images never takes an image whose link still works (the link's
name stays until the link has expired), and a link image never cuts a keep period short.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import TypeVar

from prismgate.config import ImageStoreSettings
from prismgate.errors import InsufficientStorageError
from prismgate.media.headers import read_dimensions
from prismgate.media.links import image_name, is_image_name, media_type_of
from prismgate.storage import KeptFile, StoredImage

__all__ = ["LocalImageStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")

KEPT_FOLDER = "kept"
# The kept images' folder may hold a week of images: it is swept at most this often.
_KEPT_SWEEP_SECONDS = 600.0
# Room made when the kept images pass their budget: down to this share of it, so that
# the oldest go a batch at a time, not one per kept image.
_KEPT_ROOM = 0.9
# Enough of a file to read its size from its header (a JPEG's may follow its EXIF).
_HEADER_BYTES = 128 * 1024


class LocalImageStore:
    """A local directory of images, named by their content (so storing twice is free),
    within `max_bytes` and kept until every link to them has expired.

    Disk work runs in worker threads, never on the event loop; the byte count is guarded
    by a thread lock. A sweep (every `sweep_interval_seconds`, and on a put that does not
    fit) removes images older than the link lifetime plus a margin, and recounts the
    directory, so images other workers of the same store wrote are counted too. The
    sweeper starts with the first use of the store and stops with `aclose()`.
    """

    def __init__(
        self,
        settings: ImageStoreSettings,
        *,
        keep_seconds: float = 7 * 86_400,
        keep_max_bytes: int = 1 << 30,
    ) -> None:
        self._root = Path(settings.path)
        self._max_bytes = settings.max_bytes
        self._max_age = settings.max_age_seconds
        self._sweep_every = settings.sweep_interval_seconds
        self._lock = threading.Lock()
        self._used: int | None = None  # bytes on disk as last counted; None: not yet
        self._sweeper: asyncio.Task[None] | None = None
        self._kept = self._root / KEPT_FOLDER
        # A kept image that was a link's too stays at least as long as the link works.
        self._keep_age = max(keep_seconds, self._max_age)
        self._keep_max = keep_max_bytes
        self._kept_used: int | None = None
        self._kept_swept = 0.0  # time.monotonic() of the last sweep of `kept/`

    async def put(self, data: bytes, media_type: str) -> str:
        """Store `data`; its name (`<sha256>.<ext>`) is what links point at. Raises
        `InsufficientStorageError` when it does not fit, even once expired images go."""
        self._start_sweeper()
        name = image_name(data, media_type)
        await asyncio.to_thread(self._write, name, data)
        return name

    async def exists(self, name: str) -> bool:
        """Whether the image called `name` is here (another instance's store may hold
        images this one lacks). A found image is kept for another link lifetime: the
        caller is about to link to it again."""
        self._start_sweeper()
        if not is_image_name(name):
            return False
        return await asyncio.to_thread(self._touch_either, name)

    async def get(self, name: str) -> StoredImage | None:
        """The image called `name` (stored for a link, or kept), or None."""
        if not is_image_name(name):
            return None  # only names this store made: never a path from a caller
        data = await asyncio.to_thread(self._read_either, name)
        return None if data is None else StoredImage(data, media_type_of(name))

    async def keep(
        self, data: bytes, media_type: str, *, executor: Executor | None = None
    ) -> KeptFile:
        """Keep `data` among the kept images for the keep period (linked, not written, if
        it is stored for a link); the oldest kept images go when the budget is passed.
        Raises `InsufficientStorageError` for an image larger than the whole budget. The
        disk work runs in `executor` (the console's own threads), else the default pool."""
        self._start_sweeper()
        return await _in(executor, functools.partial(self._keep, data, media_type))

    async def keep_stored(self, name: str, *, executor: Executor | None = None) -> KeptFile | None:
        """Keep the image stored for a link as `name` (linked, not copied); None when it
        is stored nowhere here. `executor` as for `keep`."""
        self._start_sweeper()
        if not is_image_name(name):
            return None
        return await _in(executor, functools.partial(self._keep_named, name))

    async def sweep(self) -> int:
        """Remove expired images (kept ones too) now; the bytes the store holds for links
        afterwards."""
        return await asyncio.to_thread(self._sweep_locked, True)

    async def ping(self) -> None:
        """The folder exists and this process may write in it."""
        await asyncio.to_thread(_writable, self._root)

    async def aclose(self) -> None:
        """Stop the sweeper (the images stay: other workers may link to them)."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None and not sweeper.done():
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await sweeper  # RuntimeError: its loop is another one, already closed

    def _start_sweeper(self) -> None:
        # Started on first use, in the loop that uses the store (a gateway is built
        # outside any loop); a sweeper whose loop has closed is replaced.
        sweeper = self._sweeper
        loop = asyncio.get_running_loop()
        if sweeper is not None and not sweeper.done() and sweeper.get_loop() is loop:
            return
        self._sweeper = loop.create_task(self._sweep_periodically(), name="image-store-sweep")

    async def _sweep_periodically(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self._sweep_locked, False)
            except OSError as error:  # a full or read-only disk: said, and tried again
                log.warning("image store sweep of %s failed: %s", self._root, error)
            await asyncio.sleep(self._sweep_every)

    def _write(self, name: str, data: bytes) -> None:
        with self._lock:
            self._root.mkdir(parents=True, exist_ok=True)
            path = self._root / name
            if _touch(path):
                return  # stored already: kept for the new link's lifetime
            used = self._room_for_link(len(data))
            if not _link_or_copy(self._kept / name, path):  # kept: the same bytes, linked
                partial = path.with_suffix(f".{secrets.token_hex(4)}.part")
                partial.write_bytes(data)
                partial.replace(path)  # atomic: a reader never sees half an image
            self._used = used + len(data)

    def _room_for_link(self, size: int) -> int:
        """The bytes link images use, once there is room for `size` more (expired ones
        swept if need be); `InsufficientStorageError` when there is none. Called with the
        lock held."""
        used = self._used if self._used is not None else self._sweep()
        if used + size > self._max_bytes:
            used = self._sweep()
        if used + size > self._max_bytes:
            raise _full(used, self._max_bytes)
        return used

    def _touch_either(self, name: str) -> bool:
        """Whether `name` is here; its link name is kept another link lifetime (made from
        the kept image's when it has none: a new link must outlive the keep budget)."""
        if _touch(self._root / name):
            return True
        kept = self._kept / name
        try:
            size = kept.stat().st_size
        except FileNotFoundError:
            return False
        with self._lock:
            try:
                used = self._room_for_link(size)
            except InsufficientStorageError:
                return False  # no room for a link: answered as not stored (stored again)
            if _link_or_copy(kept, self._root / name):
                self._used = used + size
                return True
        return False

    def _read_either(self, name: str) -> bytes | None:
        for folder in (self._root, self._kept):
            try:
                return (folder / name).read_bytes()
            except FileNotFoundError:
                continue
        return None

    def _keep(self, data: bytes, media_type: str) -> KeptFile:
        name = image_name(data, media_type)
        found = read_dimensions(data)
        kept = KeptFile(
            name,
            len(data),
            found.width if found else None,
            found.height if found else None,
        )
        with self._lock:
            if self._kept_already(name):
                return kept
            if len(data) > self._keep_max:
                raise InsufficientStorageError(
                    f"an image of {_amount(len(data))} is larger than all the room kept "
                    f"images have ({_amount(self._keep_max)}): raise "
                    "general_settings.console.keep_images_max_bytes",
                )
            self._make_room(len(data))
            self._kept.mkdir(parents=True, exist_ok=True)
            path = self._kept / name
            partial = path.with_suffix(f".{secrets.token_hex(4)}.part")
            partial.write_bytes(data)
            partial.replace(path)  # atomic: a reader never sees half an image
            self._kept_used = (self._kept_used or 0) + len(data)
        return kept

    def _keep_named(self, name: str) -> KeptFile | None:
        with self._lock:
            if not self._kept_already(name):
                return None
        path = self._kept / name
        try:
            with path.open("rb") as handle:
                head = handle.read(_HEADER_BYTES)
                size = os.fstat(handle.fileno()).st_size
        except FileNotFoundError:
            return None
        found = read_dimensions(head)
        return KeptFile(name, size, found.width if found else None, found.height if found else None)

    def _kept_already(self, name: str) -> bool:
        """Whether `name` is kept now: kept before (its time restarts), or stored for a
        link and linked into the kept images (the link's name stays, for the link's
        lifetime). Called with the lock held."""
        path = self._kept / name
        if _touch(path):
            return True
        stored = self._root / name
        try:
            size = stored.stat().st_size
        except FileNotFoundError:
            return False
        self._make_room(size)
        self._kept.mkdir(parents=True, exist_ok=True)
        if not _link_or_copy(stored, path):
            return False  # swept (or removed by another worker) meanwhile
        self._kept_used = (self._kept_used or 0) + size
        return True

    def _make_room(self, size: int) -> None:
        """Remove the oldest kept images until `size` more bytes fit in the budget.
        Called with the lock held."""
        used = self._kept_used if self._kept_used is not None else self._sweep_kept()
        if used + size <= self._keep_max:
            return
        entries = []
        for entry in _entries(self._kept):
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            entries.append((info.st_mtime, info.st_size, entry.path))
        entries.sort()
        target = int(self._keep_max * _KEPT_ROOM) - size
        used = sum(entry[1] for entry in entries)
        removed = 0
        for _, entry_size, path in entries:
            if used <= target:
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                used -= entry_size
                removed += 1
        self._kept_used = used
        log.info("kept images passed their budget: the %d oldest were removed", removed)

    def _sweep_locked(self, kept_too: bool) -> int:
        with self._lock:
            if kept_too or time.monotonic() - self._kept_swept >= _KEPT_SWEEP_SECONDS:
                self._sweep_kept()
            return self._sweep()

    def _sweep_kept(self) -> int:
        """Remove kept images older than the keep period, and count what stays. Called
        with the lock held."""
        self._kept_swept = time.monotonic()
        self._kept_used = _sweep_folder(self._kept, time.time() - self._keep_age)
        return self._kept_used

    def _sweep(self) -> int:
        """Remove images (and partial writes) older than the link lifetime plus the
        margin, and count what stays. Called with the lock held."""
        self._used = _sweep_folder(self._root, time.time() - self._max_age)
        return self._used

    def signing_key(self, master_key: str | None) -> bytes:
        """The HMAC key for links: derived from the master key, else a key file kept
        (owner-only) in the store directory and shared by every worker."""
        if master_key:
            return hmac.new(master_key.encode(), b"prismgate image links", "sha256").digest()
        self._root.mkdir(parents=True, exist_ok=True)
        key_file = self._root / ".signing-key"
        try:
            descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return key_file.read_bytes()
        key = secrets.token_bytes(32)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key)
        return key


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    """The store's files in `folder` (images and partial writes; never the signing key,
    a folder or anything that is not the store's)."""
    try:
        found = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    return [e for e in found if is_image_name(e.name) or e.name.endswith(".part")]


def _sweep_folder(folder: Path, oldest: float) -> int:
    """Remove the store's files in `folder` last touched before `oldest`; the bytes left."""
    used = 0
    for entry in _entries(folder):
        try:
            info = entry.stat(follow_symlinks=False)
            if info.st_mtime < oldest:
                os.unlink(entry.path)
            else:
                used += info.st_size
        except FileNotFoundError:
            continue  # another worker removed it first
    return used


def _link_or_copy(source: Path, target: Path) -> bool:
    """`target` made another name of `source` (a hard link: no bytes written), or a copy
    where the file system has no hard links, marked as just stored (both names share the
    time: each folder's rules only ever keep an image longer); False when `source` is not
    there."""
    partial = target.with_suffix(f".{secrets.token_hex(4)}.part")
    try:
        try:
            os.link(source, partial)
        except FileNotFoundError:
            return False
        except OSError:  # no hard links here (another file system, a FUSE mount, ...)
            shutil.copyfile(source, partial)
        os.utime(partial)
        partial.replace(target)  # atomic: a reader never sees half an image
    except FileNotFoundError:
        return False
    return True


async def _in(executor: Executor | None, work: Callable[[], T]) -> T:
    """`work()` in `executor`'s threads (the default pool's without one)."""
    return await asyncio.get_running_loop().run_in_executor(executor, work)


def _touch(path: Path) -> bool:
    """Mark `path` as just stored; False when it is not there."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def _full(used: int, max_bytes: int) -> InsufficientStorageError:
    return InsufficientStorageError(
        f"the image store is full ({_amount(used)} of {_amount(max_bytes)}); raise "
        "general_settings.image_store.max_bytes or ask for response_format=b64_json",
        param="response_format",
    )


def _amount(size: int) -> str:
    """`size` bytes as people read them (binary units, as max_bytes is usually given)."""
    if size < 1024:
        return f"{size} bytes"
    scaled = float(size)
    for unit in ("KB", "MB", "GB"):
        scaled /= 1024
        if scaled < 1024 or unit == "GB":
            break
    return f"{scaled:.1f} {unit}"


def _writable(folder: Path) -> None:
    """Raise unless `folder` is a directory this process may write in (a store that has
    not stored anything yet may still have to make it: its parent is checked then)."""
    target = folder if folder.exists() else folder.parent
    if not target.is_dir() or not os.access(target, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write in {target}")
