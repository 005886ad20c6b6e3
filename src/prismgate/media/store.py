"""Images kept for `response_format=url`, and the signed, expiring links to them.

Base64-only providers answer with image bytes; a caller who asked for URLs gets links to
the proxy's `/v1/images/files/{name}`, signed with HMAC-SHA256 and valid for
`url_ttl_seconds` (an hour by default, as OpenAI's are). An altered or expired link is
refused. The signing key comes from the master key, or from a key file in the store
directory, so every worker of one deployment accepts every other worker's links.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from prismgate.config import ImageStoreSettings

__all__ = ["ImageStore", "SignedLinks", "StoredImage"]

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
_MEDIA_TYPES = {extension: media for media, extension in _EXTENSIONS.items()}
FILES_PATH = "/v1/images/files/"


@dataclass(frozen=True, slots=True)
class StoredImage:
    """An image read back from the store."""

    data: bytes
    media_type: str


class ImageStore:
    """A local directory of images, named by their content (so storing twice is free)."""

    def __init__(self, settings: ImageStoreSettings) -> None:
        self._root = Path(settings.path)

    async def put(self, data: bytes, media_type: str) -> str:
        """Store `data`; its name (`<sha256>.<ext>`) is what links point at."""
        name = f"{hashlib.sha256(data).hexdigest()}.{_EXTENSIONS.get(media_type, 'bin')}"
        await asyncio.to_thread(self._write, name, data)
        return name

    async def exists(self, name: str) -> bool:
        """Whether the image called `name` is here (another instance's store may hold
        images this one lacks)."""
        if not _is_own_name(name):
            return False
        return await asyncio.to_thread((self._root / name).is_file)

    async def get(self, name: str) -> StoredImage | None:
        """The image called `name`, or None."""
        if not _is_own_name(name):
            return None  # only names this store made: never a path from a caller
        extension = name.partition(".")[2]
        path = self._root / name
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        return StoredImage(data, _MEDIA_TYPES.get(extension, "application/octet-stream"))

    def _write(self, name: str, data: bytes) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        path = self._root / name
        if path.exists():
            return
        partial = path.with_suffix(f".{secrets.token_hex(4)}.part")
        partial.write_bytes(data)
        partial.replace(path)  # atomic: a reader never sees half an image

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


def _is_own_name(name: str) -> bool:
    """A name this store makes (`<sha256>.<ext>`), never a path."""
    stem, _, extension = name.partition(".")
    return (
        len(stem) == 64
        and all(c in "0123456789abcdef" for c in stem)
        and extension in (*_MEDIA_TYPES, "bin")
    )


class SignedLinks:
    """Makes and checks `…/v1/images/files/{name}?expires=…&signature=…` links."""

    def __init__(self, key: bytes, ttl_seconds: int) -> None:
        self._key = key
        self._ttl = ttl_seconds

    def link(self, base_url: str, name: str, *, now: float | None = None) -> str:
        """A link to `name` under `base_url`, valid for the configured time."""
        expires = int((now if now is not None else time.time()) + self._ttl)
        return (
            f"{base_url.rstrip('/')}{FILES_PATH}{name}"
            f"?expires={expires}&signature={self._signature(name, expires)}"
        )

    def check(
        self, name: str, expires: str, signature: str, *, now: float | None = None
    ) -> str | None:
        """None when the link is good; otherwise why it is refused."""
        if not expires.isdigit() or not hmac.compare_digest(
            signature.encode(), self._signature(name, int(expires)).encode()
        ):
            return "this image link is not valid"
        if int(expires) < (now if now is not None else time.time()):
            return "this image link has expired; generate the image again for a fresh link"
        return None

    def _signature(self, name: str, expires: int) -> str:
        digest = hmac.new(self._key, f"{name}:{expires}".encode(), "sha256").digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
