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
from dataclasses import dataclass
from typing import Literal

from prismgate.errors import BadRequestError
from prismgate.media.formats import sniff_image_type

__all__ = ["ImageLimits", "fit_image", "image_bytes_from_b64", "parse_data_url"]

Oversize = Literal["downscale", "reject"]
_PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF"}
# Beyond this an image is refused before decoding, whatever the provider allows.
MAX_DECODED_PIXELS = 80_000_000


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What a provider takes per image."""

    media_types: frozenset[str]
    max_bytes: int
    max_side: int | None = None
    # Remote URLs the provider fetches itself; others are fetched by the gateway (through
    # the safe fetcher) and sent inline.
    url_schemes: frozenset[str] = frozenset({"https"})


def parse_data_url(url: str) -> tuple[str, str] | None:
    """`data:image/png;base64,AAAA` → `("image/png", "AAAA")`; None for other URLs."""
    if not url.startswith("data:"):
        return None
    header, comma, payload = url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise BadRequestError(
            "image data URLs must be base64: data:image/png;base64,<data>",
            param="image_url",
            code="invalid_image",
        )
    return header[5 : -len(";base64")], payload


def decoded_length(b64: str) -> int:
    """The byte length of a base64 string, without decoding it."""
    return len(b64) * 3 // 4 - (2 if b64.endswith("==") else 1 if b64.endswith("=") else 0)


def image_bytes_from_b64(b64: str) -> bytes:
    """Decode base64 image data; a 400 when it is not valid base64."""
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError(
            "an image's base64 data is not valid", param="image_url", code="invalid_image"
        ) from None


def sniff_b64(b64: str) -> str | None:
    """The image type of base64 data, from its first bytes only."""
    head = b64[:32]
    try:
        return sniff_image_type(base64.b64decode(head[: len(head) - len(head) % 4]))
    except (binascii.Error, ValueError):
        return None


def fit_image(
    data: bytes, media_type: str, limits: ImageLimits, *, oversize: Oversize
) -> tuple[bytes, str]:
    """The image as the provider takes it: a type it accepts, within its size limits.

    A type it does not take is transcoded to PNG (or JPEG for photos too large as PNG);
    an image over its limits is downscaled keeping its aspect ratio, or refused with a 400
    when `oversize` is "reject".
    """
    fits_type = media_type in limits.media_types
    if fits_type and len(data) <= limits.max_bytes and limits.max_side is None:
        return data, media_type
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size  # read from the header; nothing decoded yet
        if width * height > MAX_DECODED_PIXELS:
            raise BadRequestError(
                f"an image is {width}x{height} pixels, more than this gateway decodes",
                param="image_url",
                code="image_too_large",
            )
        too_wide = limits.max_side is not None and max(width, height) > limits.max_side
        if fits_type and len(data) <= limits.max_bytes and not too_wide:
            return data, media_type
        if (too_wide or len(data) > limits.max_bytes) and oversize == "reject":
            raise BadRequestError(
                f"an image ({width}x{height}, {len(data)} bytes) is over this model's limits "
                f"({limits.max_bytes} bytes"
                + (f", {limits.max_side} px a side" if limits.max_side else "")
                + "); send a smaller image",
                param="image_url",
                code="image_too_large",
            )
        return _reencode(image, media_type, limits)


def _reencode(image: object, media_type: str, limits: ImageLimits) -> tuple[bytes, str]:
    from PIL import Image

    assert isinstance(image, Image.Image)
    target = media_type if media_type in limits.media_types else "image/png"
    if target not in limits.media_types:
        target = sorted(limits.media_types)[0]
    picture = image.convert("RGBA" if target in ("image/png", "image/webp") else "RGB")
    if limits.max_side is not None and max(picture.size) > limits.max_side:
        picture.thumbnail((limits.max_side, limits.max_side))
    for _ in range(8):  # shrink until it fits the byte limit
        buffer = io.BytesIO()
        picture.save(buffer, format=_PIL_FORMATS[target])
        if buffer.tell() <= limits.max_bytes:
            return buffer.getvalue(), target
        picture.thumbnail((int(picture.width * 0.75), int(picture.height * 0.75)))
    raise BadRequestError(
        "an image could not be made small enough for this model; send a smaller image",
        param="image_url",
        code="image_too_large",
    )
