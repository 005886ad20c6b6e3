"""Small, deterministic, real images for the provider emulators.

Every image is a solid background colour derived from ``seed`` plus two
rectangles, so two seeds give visibly different pictures while encoding stays
cheap (a 1024x1024 PNG takes about a millisecond).
"""

from __future__ import annotations

import io
from functools import lru_cache

from PIL import Image, ImageDraw

# Pillow format name and save options per output format. The options favour speed:
# PNGs are palette images (one byte per pixel) and webp is lossless unless a quality is given.
_ENCODERS: dict[str, tuple[str, dict[str, object]]] = {
    "png": ("PNG", {"compress_level": 1}),
    "jpeg": ("JPEG", {"quality": 85}),
    "jpg": ("JPEG", {"quality": 85}),
    "webp": ("WEBP", {"lossless": True, "method": 0}),
}

MIME_TYPES: dict[str, str] = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "webp": "image/webp",
}


def _colour(seed: int, salt: int) -> tuple[int, int, int]:
    """A deterministic RGB colour for ``seed``; ``salt`` picks a different one."""
    base = (seed * 2654435761 + salt * 40503) & 0xFFFFFF
    return (base >> 16) & 0xFF, (base >> 8) & 0xFF, base & 0xFF


@lru_cache(maxsize=128)
def make_image(
    width: int,
    height: int,
    fmt: str = "png",
    seed: int = 0,
    *,
    transparent: bool = False,
    quality: int | None = None,
) -> bytes:
    """Encode a ``width`` x ``height`` image as ``fmt`` (png, jpeg/jpg or webp).

    With ``transparent`` (png/webp only) the background is fully transparent and
    only the rectangles are opaque. ``quality`` sets the jpeg/webp quality; webp
    without it is lossless.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    try:
        pil_format, options = _ENCODERS[fmt.lower()]
    except KeyError:
        raise ValueError(f"unsupported image format: {fmt!r}") from None

    # A three-colour palette image: index 0 is the background, 1 and 2 the rectangles.
    image = Image.new("P", (width, height), 0)
    image.putpalette([channel for salt in range(3) for channel in _colour(seed, salt)])
    draw = ImageDraw.Draw(image)
    draw.rectangle((width // 8, height // 8, width // 2, height // 2), fill=1)
    draw.rectangle(
        (width // 2, height // 2, width - 1 - width // 8, height - 1 - height // 8), fill=2
    )

    save_options = dict(options)
    with_alpha = transparent and pil_format != "JPEG"
    if pil_format == "PNG":
        if with_alpha:
            save_options["transparency"] = 0
    else:
        if with_alpha:
            image.info["transparency"] = 0
        image = image.convert("RGBA" if with_alpha else "RGB")
        if quality is not None:
            save_options["quality"] = max(1, min(quality, 100))
            save_options.pop("lossless", None)
    buffer = io.BytesIO()
    image.save(buffer, format=pil_format, **save_options)
    return buffer.getvalue()
