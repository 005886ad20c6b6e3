"""Names of stored images and the signed, expiring links to them.

Base64-only providers answer with image bytes; a caller who asked for URLs gets links to
the proxy's `/v1/images/files/{name}`, signed with HMAC-SHA256 and valid for
`url_ttl_seconds` (an hour by default, as OpenAI's are). An altered or expired link is
refused. Images are named by their content, the same in every image store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

__all__ = ["FILES_PATH", "SignedLinks", "image_name", "is_image_name", "media_type_of"]

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
_MEDIA_TYPES = {extension: media for media, extension in _EXTENSIONS.items()}
FILES_PATH = "/v1/images/files/"
# An `expires` a link can carry: ASCII digits only (str.isdigit also takes "²" and Arabic-Indic
# digits), and few enough to be a time (int() refuses more than 4,300 digits).
_EXPIRES = re.compile(r"[0-9]{1,12}")
# A signature this module makes: 43 URL-safe base64 characters (an unpadded SHA-256).
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{43}")


def image_name(data: bytes, media_type: str) -> str:
    """The name an image is stored under: `<sha256>.<ext>` (storing twice is free)."""
    return f"{hashlib.sha256(data).hexdigest()}.{_EXTENSIONS.get(media_type, 'bin')}"


def media_type_of(name: str) -> str:
    """The media type a stored image's name says."""
    return _MEDIA_TYPES.get(name.partition(".")[2], "application/octet-stream")


def is_image_name(name: str) -> bool:
    """A name an image store makes (`<sha256>.<ext>`), never a path."""
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
        """None when the link is good; otherwise why it is refused. Any part a caller
        may have altered (non-ASCII, huge, malformed) is refused, never an error."""
        if (
            not _EXPIRES.fullmatch(expires)
            or not _SIGNATURE.fullmatch(signature)
            or not is_image_name(name)
            or not hmac.compare_digest(
                signature.encode(), self._signature(name, int(expires)).encode()
            )
        ):
            return "this image link is not valid; use the link exactly as it was given"
        if int(expires) < (now if now is not None else time.time()):
            return "this image link has expired; generate the image again for a fresh link"
        return None

    def _signature(self, name: str, expires: int) -> str:
        digest = hmac.new(self._key, f"{name}:{expires}".encode(), "sha256").digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
