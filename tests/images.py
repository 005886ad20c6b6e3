"""Helpers to check images the gateway returns: decode them and read their real size."""

from __future__ import annotations

import base64
import io

from PIL import Image

from prismgate.types import ImageObject


def image_bytes(item: ImageObject) -> bytes:
    """The bytes of a returned image, from b64_json or a data URL."""
    if item.b64_json is not None:
        return base64.b64decode(item.b64_json)
    assert item.url is not None and item.url.startswith("data:"), item.url
    return base64.b64decode(item.url.partition(",")[2])


def opened(data: bytes) -> Image.Image:
    """The decoded image (fully loaded, so corrupt bytes fail here)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
