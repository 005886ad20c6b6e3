"""Images in chat answers: what chat models that draw (Gemini image models, OpenRouter's
image output) make, in `message.images` as `{"type": "image_url", "image_url": {"url"}}`.

Providers put data URLs there. A request's `image_response_format` chooses the delivery,
as `response_format` does for the images API: `b64_json` keeps the data URLs (the
default), `url` stores each image and links it by a signed URL. A streamed answer carries
data URLs in its deltas.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

import msgspec

from prismgate.call_options import CallOptions
from prismgate.errors import BadRequestError
from prismgate.types.chat import AnsweredImage, AnsweredImageURL, ChatChoice, ChatCompletion

__all__ = ["image_delivery", "linked_images"]


def image_delivery(options: CallOptions, *, streamed: bool) -> tuple[CallOptions, bool]:
    """The request's `image_response_format`, taken out of the provider parameters:
    whether the images are to be linked (`url`) rather than inline (`b64_json`)."""
    if "image_response_format" not in options.extra:
        return options, False
    extra = dict(options.extra)
    wanted = extra.pop("image_response_format")
    if wanted not in ("b64_json", "url"):
        raise BadRequestError(
            "image_response_format must be b64_json (images as data URLs in message.images) "
            "or url (signed links to the stored images)",
            param="image_response_format",
            code="invalid_value",
        )
    if wanted == "url" and streamed:
        raise BadRequestError(
            "image_response_format url needs a whole answer: a stream carries its images "
            "as data URLs; remove stream or ask for b64_json",
            param="image_response_format",
            code="invalid_value",
        )
    return dataclasses.replace(options, extra=extra), wanted == "url"


async def linked_images(
    completion: ChatCompletion, stored: Callable[[str], Awaitable[str]]
) -> ChatCompletion:
    """`completion` with each image replaced by `stored(its data URL)`, a link."""
    if not any(choice.message.images for choice in completion.choices):
        return completion
    return msgspec.structs.replace(
        completion, choices=[await _linked(choice, stored) for choice in completion.choices]
    )


async def _linked(choice: ChatChoice, stored: Callable[[str], Awaitable[str]]) -> ChatChoice:
    made = choice.message.images
    if isinstance(made, msgspec.UnsetType) or not made:
        return choice
    images = [
        AnsweredImage(image_url=AnsweredImageURL(url=await stored(image.image_url.url)))
        for image in made
    ]
    return msgspec.structs.replace(
        choice, message=msgspec.structs.replace(choice.message, images=images)
    )
