"""Images inside chat messages: their real type, their limits, and the form a provider takes.

The media type comes from the bytes (magic numbers), never from a data-URL prefix or a
file extension; a caller's `format` overrides it. Pixel counts are read from the image
header before anything is decoded, so a decompression bomb is refused cheaply, and only
image formats are ever decoded.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from prismgate.errors import BadRequestError
from prismgate.media.formats import sniff_image_type
from prismgate.media.headers import DEFAULT_MAX_PIXELS, PILLOW_FORMATS, checked_dimensions

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = ["ImageLimits", "fit_image", "image_bytes_from_b64", "parse_data_url", "pillow"]

Oversize = Literal["downscale", "reject"]
_PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF"}
# Pillow refuses images over twice this by itself (general_settings' ceiling is 2**27).
_PILLOW_CEILING = 1 << 27
log = logging.getLogger("prismgate.media")


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What a provider takes per image."""

    media_types: frozenset[str]
    max_bytes: int
    max_side: int | None = None
    # Remote URLs the provider fetches itself; others are fetched by the gateway (through
    # the safe fetcher) and sent inline.
    url_schemes: frozenset[str] = frozenset({"https"})


def parse_data_url(url: str, *, param: str = "image_url") -> tuple[str, str] | None:
    """`data:image/png;base64,AAAA` → `("image/png", "AAAA")`; None for other URLs."""
    if not url.startswith("data:"):
        return None
    header, comma, payload = url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise BadRequestError(
            "image data URLs must be base64: data:image/png;base64,<data>",
            param=param,
            code="invalid_image",
        )
    return header[5 : -len(";base64")], payload


def decoded_length(b64: str) -> int:
    """The byte length of a base64 string, without decoding it."""
    return len(b64) * 3 // 4 - (2 if b64.endswith("==") else 1 if b64.endswith("=") else 0)


def image_bytes_from_b64(b64: str, *, param: str = "image_url") -> bytes:
    """Decode base64 image data; a 400 when it is not valid base64."""
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError(
            "an image's base64 data is not valid", param=param, code="invalid_image"
        ) from None


def sniff_b64(b64: str) -> str | None:
    """The image type of base64 data, from its first bytes only."""
    head = b64[:32]
    try:
        return sniff_image_type(base64.b64decode(head[: len(head) - len(head) % 4]))
    except (binascii.Error, ValueError):
        return None


def fit_image(
    data: bytes,
    media_type: str,
    limits: ImageLimits,
    *,
    oversize: Oversize,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    param: str = "image_url",
    which: str = "an image",
) -> tuple[bytes, str]:
    """The image as the provider takes it: a type it accepts, within its size limits.

    A type it does not take is transcoded to PNG (or JPEG for photos too large as PNG);
    an image over its limits is downscaled keeping its aspect ratio, or refused with a 400
    when `oversize` is "reject". Its header is checked against `max_pixels` first, and
    bytes that do not decode are a 400: this is CPU and memory work, run it in a
    `DecodePool`, never on the event loop.
    """
    fits_type = media_type in limits.media_types
    if media_type not in _PIL_FORMATS:  # a type the gateway never decodes (HEIC)
        if fits_type and len(data) <= limits.max_bytes:
            return data, media_type
        raise BadRequestError(
            f"{which} is {media_type}, which this model does not take and this gateway does "
            "not convert; send a PNG, JPEG, GIF or WebP image",
            param=param,
            code="invalid_image",
        )
    size = checked_dimensions(data, max_pixels=max_pixels, param=param, which=which)
    too_wide = limits.max_side is not None and max(size.width, size.height) > limits.max_side
    if fits_type and len(data) <= limits.max_bytes and not too_wide:
        return data, media_type
    if (too_wide or len(data) > limits.max_bytes) and oversize == "reject":
        raise BadRequestError(
            f"{which} ({size.width}x{size.height}, {len(data)} bytes) is over this model's "
            f"limits ({limits.max_bytes} bytes"
            + (f", {limits.max_side} px a side" if limits.max_side else "")
            + "); send a smaller image",
            param=param,
            code="image_too_large",
        )
    try:
        with pillow().open(io.BytesIO(data), formats=PILLOW_FORMATS) as image:
            return _reencode(image, media_type, limits, param, which)
    except BadRequestError:
        raise
    except Exception:  # Pillow raises many kinds on hostile bytes; each means "unreadable"
        log.debug("an image did not decode", exc_info=True)
        raise BadRequestError(
            f"{which} could not be decoded (its data is truncated or corrupt); send the "
            "image file as it was saved",
            param=param,
            code="invalid_image",
        ) from None


def pillow() -> ModuleType:
    """`PIL.Image`, with its own decompression-bomb guard never looser than ours (the
    explicit check above is the rule; this is the net under it, and it only tightens a
    setting the host application may share)."""
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > _PILLOW_CEILING:
        Image.MAX_IMAGE_PIXELS = _PILLOW_CEILING
    return Image


def _reencode(
    image: PILImage, media_type: str, limits: ImageLimits, param: str, which: str
) -> tuple[bytes, str]:
    target = media_type if media_type in limits.media_types else "image/png"
    if target not in limits.media_types:
        target = sorted(limits.media_types)[0]
    mode = "RGBA" if target in ("image/png", "image/webp") else "RGB"
    side = limits.max_side
    if side is not None and max(image.size) > side:
        image.draft(None, (side, side))  # a JPEG decodes at 1/2, 1/4 or 1/8 scale: less memory
    # Shrink before converting, so that the full-size copy is made in the smaller mode;
    # palette images convert first (resizing them would pick nearest pixels).
    picture = image.convert(mode) if image.mode in ("P", "1") else image
    if side is not None and max(picture.size) > side:
        picture.thumbnail((side, side))
    picture = picture.convert(mode)
    for _ in range(8):  # shrink until it fits the byte limit
        buffer = io.BytesIO()
        picture.save(buffer, format=_PIL_FORMATS[target])
        if buffer.tell() <= limits.max_bytes:
            return buffer.getvalue(), target
        picture.thumbnail((int(picture.width * 0.75), int(picture.height * 0.75)))
    raise BadRequestError(
        f"{which} could not be made small enough for this model; send a smaller image",
        param=param,
        code="image_too_large",
    )
