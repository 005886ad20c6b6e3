"""Images sent to be edited or varied, in every form a caller hands them over.

The SDK takes what the openai client takes (bytes, a path, a binary file object, or a
`(filename, content[, type])` tuple); the proxy takes multipart files. Either way the
type comes from the bytes, and anything that is not an image is a 400 naming the field.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from prismgate.errors import BadRequestError
from prismgate.media.formats import sniff_image_type
from prismgate.types import InputImage

__all__ = ["ImageHeader", "image_header", "input_image", "input_images"]

_PIL_MEDIA_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What an input image's header says: its format, dimensions and transparency."""

    media_type: str
    width: int
    height: int
    alpha: bool


def image_header(
    image: InputImage, *, param: str = "image", which: str = "the image"
) -> ImageHeader:
    """Read from the header only (no pixels are decoded); a 400 naming `param` when the
    bytes are not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(image.data)) as opened:
            kind = opened.format or "unknown"
            media_type = _PIL_MEDIA_TYPES.get(kind, f"image/{kind.lower()}")
            alpha = opened.mode in ("RGBA", "LA", "PA") or "transparency" in opened.info
            return ImageHeader(media_type, opened.width, opened.height, alpha)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise BadRequestError(
            f"{which} is not an image that can be read; send a PNG, WebP or JPEG file",
            param=param,
            code="invalid_image",
        ) from None


def input_image(value: Any, *, param: str = "image", filename: str | None = None) -> InputImage:
    """One caller image as an `InputImage`; a 400 naming `param` when it is not one."""
    if isinstance(value, InputImage):
        return value
    if isinstance(value, tuple) and 2 <= len(value) <= 3:
        return input_image(value[1], param=param, filename=value[0])
    if isinstance(value, str | os.PathLike):
        path = Path(value)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BadRequestError(
                f"{param}: cannot read {str(path)!r} ({exc.strerror})", param=param
            ) from None
        return _checked(data, param, filename or path.name)
    if isinstance(value, bytes | bytearray | memoryview):
        return _checked(bytes(value), param, filename)
    if hasattr(value, "read"):
        handle: IO[bytes] = value
        data = handle.read()
        name = filename or os.path.basename(str(getattr(handle, "name", ""))) or None
        if not isinstance(data, bytes):
            raise BadRequestError(f"{param}: open the file in binary mode ('rb')", param=param)
        return _checked(data, param, name)
    raise BadRequestError(
        f"{param} must be image bytes, a path, a binary file or a (filename, bytes) tuple; "
        f"got {type(value).__name__}",
        param=param,
    )


def input_images(value: Any, *, param: str = "image") -> list[InputImage]:
    """One image or a list of them (OpenAI's `image[]`), each checked."""
    if isinstance(value, list):
        if not value:
            raise BadRequestError(f"{param} must hold at least one image", param=param)
        return [input_image(item, param=param) for item in value]
    return [input_image(value, param=param)]


def _checked(data: bytes, param: str, filename: str | None) -> InputImage:
    media_type = sniff_image_type(data[:16])
    if media_type is None:
        raise BadRequestError(
            f"{param} is not an image prismgate can read; send PNG, JPEG, WebP or GIF",
            param=param,
            code="invalid_image",
        )
    return InputImage(data=data, media_type=media_type, filename=filename)
