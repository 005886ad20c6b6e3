"""Image formats told from their bytes, never from a name or a declared type."""

from __future__ import annotations

import base64

__all__ = ["data_url", "sniff_image_type"]

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_image_type(head: bytes) -> str | None:
    """The MIME type of an image from its first bytes (16 are enough), or None."""
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1"):
        return "image/heic"
    return None


def data_url(b64_image: str) -> str:
    """A `data:` URL for a base64 image; the type is sniffed from the decoded head only."""
    head = base64.b64decode(b64_image[:24] + "=" * (-len(b64_image[:24]) % 4))
    mime = sniff_image_type(head) or "application/octet-stream"
    return f"data:{mime};base64,{b64_image}"
