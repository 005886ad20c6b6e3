"""Image parts of a chat request, made ready for a provider: every URL has a scheme that
may leave the gateway, remote images the provider would not fetch itself are fetched
(safely) and inlined, inline images carry their true type, fit the pixel budget and the
provider's limits, and prismgate's own `format` field is never forwarded.

Errors name the part (`messages[0].content[1].image_url`). Header checks run on the loop
(they read a few bytes); decoding, resizing and transcoding run in the `DecodePool`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

from prismgate.errors import BadRequestError
from prismgate.media.decoding import DecodePool
from prismgate.media.fetch import FetchedImage
from prismgate.media.headers import Dimensions, checked_dimensions, read_dimensions
from prismgate.media.images import (
    ImageLimits,
    Oversize,
    decoded_length,
    fit_image,
    image_bytes_from_b64,
    parse_data_url,
    sniff_b64,
)
from prismgate.types.chat import ChatCompletionRequest, ContentPart, ImagePart, ImageURL

__all__ = ["FetchImage", "ImageWork", "prepare_images"]

# (url, param) → the fetched image; a 400 naming `param` when it cannot be fetched.
FetchImage = Callable[[str, str], Awaitable[FetchedImage]]

# What may leave the gateway: links a provider fetches, inline data, and gs:// objects for
# the providers that read them. file:, ftp:, gopher: and the rest would make an upstream
# (or a self-hosted server next to secrets) read what the caller names.
_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):")
_REMOTE = frozenset({"http", "https"})
_DECODED_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# Base64 read for an image's header: a first look that holds the size of any PNG, GIF,
# WebP and most JPEGs, then enough for any header (JPEG's EXIF can push its size 64 KB in).
_FIRST_LOOK_CHARS = 4096
_HEAD_CHARS = 256 * 1024


@dataclass(frozen=True, slots=True)
class ImageWork:
    """What preparing images needs from the gateway: its decode pool and media settings."""

    pool: DecodePool
    max_pixels: int
    oversize: Oversize


async def prepare_images(
    request: ChatCompletionRequest,
    limits: ImageLimits | None,
    fetch: FetchImage,
    work: ImageWork,
) -> ChatCompletionRequest:
    """`request` with every image part in a form the provider takes; a 400 naming the part
    for any image that may not or cannot be sent."""
    if not request.has_images():
        return request
    messages = []
    for m, message in enumerate(request.messages):
        if not isinstance(message.content, list) or not message.image_parts():
            messages.append(message)
            continue
        content: list[ContentPart] = []
        for c, part in enumerate(message.content):
            if isinstance(part, ImagePart):
                param = f"messages[{m}].content[{c}].image_url"
                image = await _prepared(part.image, limits, fetch, work, param)
                content.append(ImagePart(image_url=image))
            else:
                content.append(part)
        messages.append(msgspec.structs.replace(message, content=content))
    return msgspec.structs.replace(request, messages=messages)


async def _prepared(
    image: ImageURL, limits: ImageLimits | None, fetch: FetchImage, work: ImageWork, param: str
) -> ImageURL:
    scheme, url = _checked_scheme(image.url, limits, param)
    if scheme == "gs":  # carries no type the gateway can read: the caller's `format` names it
        return ImageURL(url=url, detail=image.detail, format=image.format)
    if scheme == "data":
        return await _inline(image, url, limits, work, param)
    if scheme in (limits.url_schemes if limits else _REMOTE):  # the provider fetches it
        return ImageURL(url=url, detail=image.detail)
    fetched = await fetch(url, param)
    if fetched.media_type is None:
        raise BadRequestError(
            "the image URL did not lead to a PNG, JPEG, GIF or WebP image",
            param=param,
            code="invalid_image",
        )
    data = fetched.data
    return await _fitted(
        lambda: data,
        image.format or fetched.media_type,
        data[: _HEAD_CHARS * 3 // 4],
        image=image, limits=limits, work=work, param=param,
    )  # fmt: skip


async def _inline(
    image: ImageURL, url: str, limits: ImageLimits | None, work: ImageWork, param: str
) -> ImageURL:
    """A data URL with its true type, within the budget and the provider's limits."""
    parsed = parse_data_url(url, param=param)
    assert parsed is not None
    declared, payload = parsed
    sniffed = sniff_b64(payload)
    media_type = image.format or sniffed
    if media_type is None:
        raise BadRequestError(
            "the image is not a PNG, JPEG, GIF or WebP image (its first bytes say so, "
            "whatever its data URL declares)",
            param=param,
            code="invalid_image",
        )
    head = _head(payload, param) if sniffed in _DECODED_TYPES else b""
    if _untouched(media_type, head, payload, limits=limits, work=work, param=param):
        if media_type == declared and url is image.url:
            return ImageURL(url=url, detail=image.detail)  # already right: no copy
        return ImageURL(url=f"data:{media_type};base64,{payload}", detail=image.detail)

    def decoded() -> bytes:
        return image_bytes_from_b64(payload, param=param)

    return await _fitted(
        decoded, media_type, head, image=image, limits=limits, work=work, param=param
    )


def _checked_scheme(url: str, limits: ImageLimits | None, param: str) -> tuple[str, str]:
    """The URL's scheme (lower case) and the URL with it so; a 400 for any scheme that
    may not leave the gateway."""
    found = _SCHEME.match(url)
    scheme = found["scheme"].lower() if found else ""
    if scheme == "gs" and (limits is None or "gs" not in limits.url_schemes):
        raise BadRequestError(
            "gs:// URLs work only with Vertex AI models; send an https URL or a data URL",
            param=param,
            code="invalid_image_url",
        )
    slashes = url[len(scheme) + 1 : len(scheme) + 3] == "//"
    if scheme not in {*_REMOTE, "gs", "data"} or (scheme != "data" and not slashes):
        raise BadRequestError(
            "an image URL must be an https:// or http:// link or a data:image/...;base64 "
            "URL (file:, ftp: and other schemes are not sent to providers)",
            param=param,
            code="invalid_image_url",
        )
    if found and found["scheme"] != scheme:  # `HTTPS:` → `https:` (a copy, so only then)
        url = scheme + url[len(scheme) :]
    return scheme, url


def _head(payload: str, param: str) -> bytes:
    """The first bytes of base64 data, enough for the image's header: a few KB, or up to
    `_HEAD_CHARS` when the size is further in. Never the whole image (the hot path)."""
    head = _decoded_prefix(payload, _FIRST_LOOK_CHARS, param)
    if len(payload) > _FIRST_LOOK_CHARS and read_dimensions(head) is None:
        head = _decoded_prefix(payload, _HEAD_CHARS, param)
    return head


def _decoded_prefix(payload: str, chars: int, param: str) -> bytes:
    head = payload[:chars]
    try:
        return base64.b64decode(head[: len(head) - len(head) % 4], validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError(
            "the image's base64 data is not valid", param=param, code="invalid_image"
        ) from None


def _untouched(
    media_type: str,
    head: bytes,
    payload: str,
    *,
    limits: ImageLimits | None,
    work: ImageWork,
    param: str,
) -> bool:
    """Whether the image goes on as it is: within the budget (read from its header) and the
    provider's limits. False when it needs the decode pool, to be fitted or because its
    header lies beyond the first bytes."""
    size: Dimensions | None = None
    if head:
        if len(payload) > _HEAD_CHARS and read_dimensions(head) is None:
            return False  # the pool reads the whole header, then decides
        size = checked_dimensions(head, max_pixels=work.max_pixels, param=param)
    if limits is None:
        return True
    too_wide = (
        limits.max_side is not None
        and size is not None
        and max(size.width, size.height) > limits.max_side
    )
    return (
        media_type in limits.media_types
        and decoded_length(payload) <= limits.max_bytes
        and not too_wide
    )


async def _fitted(
    data: Callable[[], bytes],
    media_type: str,
    head: bytes,
    *,
    image: ImageURL,
    limits: ImageLimits | None,
    work: ImageWork,
    param: str,
) -> ImageURL:
    """The image fitted to the provider, in the pool; `data` is made there too (decoding a
    large base64 string is work as well)."""
    size = read_dimensions(head)
    if size is not None:
        checked_dimensions(head, max_pixels=work.max_pixels, param=param)
    any_limits = limits or ImageLimits(media_types=frozenset({media_type}), max_bytes=1 << 62)

    def fit() -> str:
        fitted, kind = fit_image(
            data(), media_type, any_limits, oversize=work.oversize,
            max_pixels=work.max_pixels, param=param, which="the image",
        )  # fmt: skip
        return f"data:{kind};base64,{base64.b64encode(fitted).decode()}"

    pixels = size.pixels if size is not None else work.max_pixels
    return ImageURL(url=await work.pool.run(pixels, fit), detail=image.detail)
