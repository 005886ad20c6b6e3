"""Image parts of a chat request, made ready for providers that take image URLs
(the OpenAI family): data URLs carry their true type and fit the provider's limits,
and prismgate's own `format` field is never forwarded."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

import msgspec

from prismgate.errors import BadRequestError
from prismgate.media.fetch import FetchedImage
from prismgate.media.images import (
    ImageLimits,
    Oversize,
    decoded_length,
    fit_image,
    image_bytes_from_b64,
    parse_data_url,
    sniff_b64,
)
from prismgate.types.chat import (
    ChatCompletionRequest,
    ChatMessage,
    ContentPart,
    ImagePart,
    ImageURL,
)

__all__ = ["inline_remote_images", "prepare_url_images"]

FetchImage = Callable[[str], Awaitable[FetchedImage]]


async def inline_remote_images(
    request: ChatCompletionRequest, limits: ImageLimits | None, fetch: FetchImage
) -> ChatCompletionRequest:
    """Remote images the provider would not fetch itself, fetched (safely) and inlined as
    data URLs; the others stay as they are."""
    schemes = limits.url_schemes if limits else frozenset({"https", "http"})

    def remote(part: ImagePart) -> bool:
        scheme = part.image.url.partition(":")[0].lower()
        return scheme in ("http", "https") and scheme not in schemes

    if not any(remote(p) for m in request.messages for p in m.image_parts()):
        return request
    messages = []
    for message in request.messages:
        if not isinstance(message.content, list) or not any(map(remote, message.image_parts())):
            messages.append(message)
            continue
        content: list[ContentPart] = []
        for part in message.content:
            if isinstance(part, ImagePart) and remote(part):
                fetched = await fetch(part.image.url)
                if fetched.media_type is None:
                    raise BadRequestError(
                        "an image URL did not lead to a PNG, JPEG, GIF or WebP image",
                        param="image_url",
                        code="invalid_image",
                    )
                inline = (
                    f"data:{fetched.media_type};base64,{base64.b64encode(fetched.data).decode()}"
                )
                image = part.image
                content.append(ImagePart(image_url=ImageURL(url=inline, detail=image.detail,
                                                            format=image.format)))  # fmt: skip
            else:
                content.append(part)
        messages.append(msgspec.structs.replace(message, content=content))
    return msgspec.structs.replace(request, messages=messages)


def prepare_url_images(
    request: ChatCompletionRequest, limits: ImageLimits | None, *, oversize: Oversize
) -> ChatCompletionRequest:
    """`request` with every image part in the form a URL-taking provider accepts."""
    if not request.has_images():
        return request
    number = 0

    def prepared(message: ChatMessage) -> ChatMessage:
        nonlocal number
        if not message.image_parts() or not isinstance(message.content, list):
            return message
        content: list[ContentPart] = []
        for part in message.content:
            if isinstance(part, ImagePart):
                number += 1
                image = _prepared_image(part.image, limits, oversize, number)
                content.append(ImagePart(image_url=image))
            else:
                content.append(part)
        return msgspec.structs.replace(message, content=content)

    return msgspec.structs.replace(request, messages=[prepared(m) for m in request.messages])


def _prepared_image(
    image: ImageURL, limits: ImageLimits | None, oversize: Oversize, number: int
) -> ImageURL:
    url = image.url
    if url.startswith("gs://") and (limits is None or "gs" not in limits.url_schemes):
        raise BadRequestError(
            f"image {number}: gs:// URLs work only with Vertex AI models; send an https URL "
            "or a data URL",
            param="image_url",
            code="invalid_image_url",
        )
    data_url = parse_data_url(url)
    if data_url is None:  # a remote URL: the provider fetches it
        # gs:// objects carry no type the gateway can read: the caller's `format` names it.
        media_type = image.format if url.startswith("gs://") else None
        return ImageURL(url=url, detail=image.detail, format=media_type)
    declared, payload = data_url
    media_type = image.format or sniff_b64(payload)
    if media_type is None:
        raise BadRequestError(
            f"image {number} is not a PNG, JPEG, GIF or WebP image (its first bytes say so, "
            f"whatever its data URL declares)",
            param="image_url",
            code="invalid_image",
        )
    fits = limits is None or (
        media_type in limits.media_types
        and decoded_length(payload) <= limits.max_bytes
        and limits.max_side is None
    )
    if not fits:
        assert limits is not None
        data, media_type = fit_image(
            image_bytes_from_b64(payload), media_type, limits, oversize=oversize
        )
        payload = base64.b64encode(data).decode()
    elif media_type == declared:
        return ImageURL(url=url, detail=image.detail)  # already right: no copy
    return ImageURL(url=f"data:{media_type};base64,{payload}", detail=image.detail)
