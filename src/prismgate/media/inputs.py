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
from prismgate.media.headers import PILLOW_FORMATS, checked_dimensions
from prismgate.media.images import pillow
from prismgate.types import ImageEditRequest, ImageVariationRequest, InputImage
from prismgate.types.images import ImageRequest

__all__ = ["ImageHeader", "check_input_pixels", "image_header", "input_image", "input_images"]

# Nothing a provider is sent is larger (general_settings.media.max_image_pixels' ceiling).
_PILLOW_CEILING = 1 << 27

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
    bytes are not a readable image. Pillow opens it only once its declared size is known
    to be sane (its WebP reader allocates the canvas on opening)."""
    checked_dimensions(image.data, max_pixels=_PILLOW_CEILING, param=param, which=which)
    Image = pillow()
    try:
        with Image.open(io.BytesIO(image.data), formats=PILLOW_FORMATS) as opened:
            kind = opened.format or "unknown"
            media_type = _PIL_MEDIA_TYPES.get(kind, f"image/{kind.lower()}")
            alpha = opened.mode in ("RGBA", "LA", "PA") or "transparency" in opened.info
            return ImageHeader(media_type, opened.width, opened.height, alpha)
    except Exception:  # Pillow raises many kinds on hostile bytes; each means "unreadable"
        raise BadRequestError(
            f"{which} is not an image that can be read; send a PNG, WebP or JPEG file",
            param=param,
            code="invalid_image",
        ) from None


def check_input_pixels(request: ImageRequest, max_pixels: int) -> None:
    """Every input image of an edit or variation (and the mask) within `max_pixels`, read
    from the headers: a 400 naming the field before any provider decodes one."""
    if isinstance(request, ImageEditRequest):
        images, mask = request.image, request.mask
    elif isinstance(request, ImageVariationRequest):
        images, mask = [request.image], None
    else:
        return
    named = [(image, "image", f"image {i}") for i, image in enumerate(images, start=1)]
    if len(named) == 1:
        named = [(images[0], "image", "the image")]
    if mask is not None:
        named.append((mask, "mask", "the mask"))
    for image, param, which in named:
        if image.media_type in _PIL_MEDIA_TYPES.values():  # others are never decoded here
            checked_dimensions(image.data, max_pixels=max_pixels, param=param, which=which)


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
