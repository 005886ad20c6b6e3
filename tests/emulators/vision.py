"""Shared by the chat/vision emulators: image inspection and the deterministic reply.

Each emulator decodes the images it receives, checks the bytes against the declared
type the way its provider does, and answers with a text that says what arrived:

    I see 2 image(s): 64x64 image/png; 10x10 image/jpeg. You said: what is this?

so a test can assert that the images reached the provider intact. Tokens are
whitespace-separated words; an image costs what each provider's rules module says.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
from dataclasses import dataclass

from PIL import Image

# Magic numbers of the formats the providers accept.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}


def sniff(data: bytes) -> str | None:
    """The media type ``data`` really is, from its first bytes; ``None`` if unknown."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "image/heic" if data[8:12] in {b"heic", b"heix", b"hevc", b"hevx"} else "image/heif"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def matches(declared: str, data: bytes) -> bool:
    """Do ``data``'s magic bytes agree with the ``declared`` media type?"""
    real = sniff(data)
    if declared in ("image/heic", "image/heif"):
        return real in ("image/heic", "image/heif")
    return real == declared


def decode_base64(text: str, *, urlsafe: bool = False) -> bytes | None:
    """Strict base64 (``urlsafe`` also accepts ``-_``, as proto-JSON bytes do); ``None`` if bad."""
    if urlsafe:
        text = text.replace("-", "+").replace("_", "/")
        text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


class UnreadableImage(Exception):
    """Pillow could not read the image's header."""


def dimensions(data: bytes) -> tuple[int, int]:
    """Width and height from the image header (nothing is decoded)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError as error:
        raise UnreadableImage(str(error)) from None
    except Exception as error:  # Pillow raises many kinds for broken data
        raise UnreadableImage(str(error)) from None
    return width, height


@dataclass(frozen=True, slots=True)
class SeenImage:
    """One image an emulator accepted."""

    media_type: str  # as declared by the client
    width: int | None = None  # None when only a reference (URL, file id) was sent
    height: int | None = None
    size: int = 0  # bytes, decoded
    sha256: str = ""  # hex digest of the decoded bytes
    uri: str | None = None  # the reference, for images sent by URL / file id / bucket

    @classmethod
    def from_bytes(cls, media_type: str, data: bytes) -> SeenImage:
        width, height = dimensions(data)
        digest = hashlib.sha256(data).hexdigest()
        return cls(media_type, width, height, len(data), digest)

    def describe(self) -> str:
        if self.width is not None:
            return f"{self.width}x{self.height} {self.media_type}"
        return f"{self.media_type} at {self.uri}"


def reply_text(images: list[SeenImage], said: str) -> str:
    """The emulators' answer: what arrived, then the last thing the user said."""
    listing = "; ".join(image.describe() for image in images)
    head = f"I see {len(images)} image(s)" + (f": {listing}." if images else ".")
    return f"{head} You said: {said}" if said else head


def count_tokens(text: str) -> int:
    return len(text.split())


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    output_tokens: int
    stopped_by: str  # "end", "max_tokens" or "stop_sequence"
    stop_sequence: str | None = None


def finish(text: str, *, max_tokens: int | None, stop_sequences: list[str] | None) -> Reply:
    """Apply stop sequences (earliest match wins), then the output-token budget."""
    stopped_by, matched = "end", None
    hits = [(text.find(stop), stop) for stop in stop_sequences or [] if stop and stop in text]
    if hits:
        cut, matched = min(hits)
        text, stopped_by = text[:cut], "stop_sequence"
    words = list(re.finditer(r"\S+", text))
    if max_tokens is not None and len(words) > max_tokens:
        text = text[: words[max_tokens - 1].end()] if max_tokens > 0 else ""
        return Reply(text, max_tokens, "max_tokens")
    return Reply(text, len(words), stopped_by, matched)


def chunks(text: str, parts: int = 3) -> list[str]:
    """Split ``text`` at word boundaries into up to ``parts`` pieces that join back to it."""
    pieces = re.findall(r"\s*\S+\s*", text) or [text]
    size = -(-len(pieces) // parts)
    return ["".join(pieces[i : i + size]) for i in range(0, len(pieces), size)] or [text]
