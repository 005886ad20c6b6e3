"""Image dimensions read straight from the header bytes, and the pixel budget they must fit.

This runs before Pillow sees an image: Pillow's WebP reader allocates its canvas when it
opens a file, and a PNG of a few hundred kilobytes may declare gigabytes of pixels. The
readers here only parse the few bytes that state the size (PNG IHDR, GIF screen and first
frame, JPEG SOF, WebP VP8/VP8L/VP8X), so they work on a prefix of the data and allocate
nothing. `checked_dimensions` is the one rule every image input goes through.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from prismgate.errors import BadRequestError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "PILLOW_FORMATS",
    "Dimensions",
    "checked_dimensions",
    "read_dimensions",
]

DEFAULT_MAX_PIXELS = 1 << 26  # general_settings.media.max_image_pixels' default
# The only decoders Pillow may use on a caller's bytes (never EPS, PSD, TGA guesses...).
PILLOW_FORMATS = ("PNG", "JPEG", "GIF", "WEBP")

_PNG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (C4 DHT, C8 JPG and CC DAC are not frames).
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})  # markers without a length


@dataclass(frozen=True, slots=True)
class Dimensions:
    """An image's format and the size its header declares."""

    media_type: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_dimensions(data: bytes) -> Dimensions | None:
    """The format and declared size of a PNG, JPEG, GIF or WebP image, from its first
    bytes; None when `data` is no such image or ends before its size is stated."""
    try:
        if data.startswith(_PNG):
            return _png(data)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return _gif(data)
        if data.startswith(b"\xff\xd8"):
            return _jpeg(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
    except (struct.error, IndexError):
        return None  # the header ends early
    return None


def checked_dimensions(
    data: bytes, *, max_pixels: int, param: str, which: str = "the image"
) -> Dimensions:
    """The rule for every image the gateway reads: a header it can read, declaring at most
    `max_pixels` pixels. Otherwise a 400 naming `param`, before anything is decoded."""
    found = read_dimensions(data)
    if found is None or found.width < 1 or found.height < 1:
        raise BadRequestError(
            f"{which} is not an image that can be read (its PNG, JPEG, GIF or WebP header is "
            "missing, truncated or corrupt); send the image file as it was saved",
            param=param,
            code="invalid_image",
        )
    if found.pixels > max_pixels:
        raise BadRequestError(
            f"{which} is {found.width}x{found.height} pixels ({found.pixels / 1e6:.1f} "
            f"megapixels); this gateway takes images of at most {max_pixels / 1e6:.1f} "
            "megapixels. Send a smaller image",
            param=param,
            code="image_too_large",
        )
    return found


def _png(data: bytes) -> Dimensions | None:
    if data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return Dimensions("image/png", width, height)


def _gif(data: bytes) -> Dimensions | None:
    """The logical screen, grown to hold the first frame (as Pillow does when it opens)."""
    width, height, flags = struct.unpack("<HHB", data[6:11])
    at = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while True:
        block = data[at]
        if block == 0x2C:  # the first image descriptor
            left, top, frame_width, frame_height = struct.unpack("<HHHH", data[at + 1 : at + 9])
            width, height = max(width, left + frame_width), max(height, top + frame_height)
            return Dimensions("image/gif", width, height)
        if block != 0x21:  # only extensions may come before it
            return None
        at += 2
        while (length := data[at]) != 0:  # the extension's sub-blocks
            at += length + 1
        at += 1


def _jpeg(data: bytes) -> Dimensions | None:
    at = 2
    while True:
        if data[at] != 0xFF:
            return None
        while data[at] == 0xFF:  # fill bytes
            at += 1
        marker = data[at]
        at += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan, and no frame yet
            return None
        (length,) = struct.unpack(">H", data[at : at + 2])
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[at + 3 : at + 7])
            return Dimensions("image/jpeg", width, height)
        if length < 2:
            return None
        at += length


def _webp(data: bytes) -> Dimensions | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", data[26:30])
        return Dimensions("image/webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            return None
        (bits,) = struct.unpack("<I", data[21:25])
        return Dimensions("image/webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        if len(data) < 30:
            return None
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return Dimensions("image/webp", width, height)
    return None
