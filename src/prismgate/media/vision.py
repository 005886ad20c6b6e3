"""Image parts of a chat request, made ready for providers that take image URLs
(the OpenAI family): data URLs carry their true type and fit the provider's limits,
and prismgate's own `format` field is never forwarded."""

from __future__ import annotations

import base64

import msgspec

from prismgate.errors import BadRequestError
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

__all__ = ["prepare_url_images"]


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
    if url.startswith("gs://"):
        raise BadRequestError(
            f"image {number}: gs:// URLs work only with Vertex AI models; send an https URL "
            "or a data URL",
            param="image_url",
            code="invalid_image_url",
        )
    data_url = parse_data_url(url)
    if data_url is None:  # a remote URL: the provider fetches it
        return ImageURL(url=url, detail=image.detail)
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
