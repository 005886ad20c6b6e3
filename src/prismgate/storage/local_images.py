"""The image store in a local folder (`general_settings.image_store.type: local`).

Images are kept for `response_format=url` answers behind signed links (`media/links.py`).
The signing key comes from the master key, or from a key file in the store directory, so
every worker of one deployment accepts every other worker's links.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
import threading
import time
from pathlib import Path

from prismgate.config import ImageStoreSettings
from prismgate.errors import InsufficientStorageError
from prismgate.media.links import image_name, is_image_name, media_type_of
from prismgate.storage import StoredImage

__all__ = ["LocalImageStore"]

log = logging.getLogger(__name__)


class LocalImageStore:
    """A local directory of images, named by their content (so storing twice is free),
    within `max_bytes` and kept until every link to them has expired.

    Disk work runs in worker threads, never on the event loop; the byte count is guarded
    by a thread lock. A sweep (every `sweep_interval_seconds`, and on a put that does not
    fit) removes images older than the link lifetime plus a margin, and recounts the
    directory, so images other workers of the same store wrote are counted too. The
    sweeper starts with the first use of the store and stops with `aclose()`.
    """

    def __init__(self, settings: ImageStoreSettings) -> None:
        self._root = Path(settings.path)
        self._max_bytes = settings.max_bytes
        self._max_age = settings.max_age_seconds
        self._sweep_every = settings.sweep_interval_seconds
        self._lock = threading.Lock()
        self._used: int | None = None  # bytes on disk as last counted; None: not yet
        self._sweeper: asyncio.Task[None] | None = None

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
        return await asyncio.to_thread(_touch, self._root / name)

    async def get(self, name: str) -> StoredImage | None:
        """The image called `name`, or None."""
        if not is_image_name(name):
            return None  # only names this store made: never a path from a caller
        path = self._root / name
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        return StoredImage(data, media_type_of(name))

    async def sweep(self) -> int:
        """Remove expired images now; the bytes the store holds afterwards."""
        return await asyncio.to_thread(self._sweep_locked)

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
                await self.sweep()
            except OSError as error:  # a full or read-only disk: said, and tried again
                log.warning("image store sweep of %s failed: %s", self._root, error)
            await asyncio.sleep(self._sweep_every)

    def _write(self, name: str, data: bytes) -> None:
        with self._lock:
            self._root.mkdir(parents=True, exist_ok=True)
            path = self._root / name
            if _touch(path):
                return  # stored already: kept for the new link's lifetime
            used = self._used if self._used is not None else self._sweep()
            if used + len(data) > self._max_bytes:
                used = self._sweep()
            if used + len(data) > self._max_bytes:
                raise _full(used, self._max_bytes)
            partial = path.with_suffix(f".{secrets.token_hex(4)}.part")
            partial.write_bytes(data)
            partial.replace(path)  # atomic: a reader never sees half an image
            self._used = used + len(data)

    def _sweep_locked(self) -> int:
        with self._lock:
            return self._sweep()

    def _sweep(self) -> int:
        """Remove images (and partial writes) older than the link lifetime plus the
        margin, and count what stays. Called with the lock held."""
        oldest = time.time() - self._max_age
        used = 0
        try:
            entries = list(os.scandir(self._root))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if not (is_image_name(entry.name) or entry.name.endswith(".part")):
                continue  # the signing key, and anything that is not ours
            try:
                info = entry.stat(follow_symlinks=False)
                if info.st_mtime < oldest:
                    os.unlink(entry.path)
                else:
                    used += info.st_size
            except FileNotFoundError:
                continue  # another worker removed it first
        self._used = used
        return used

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
