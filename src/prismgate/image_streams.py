"""Image generations and edits as a stream of events, for every provider.

A streamed call is the same call as any other (routing, checks, limits, spend, cache,
the one observer point): it runs as a task, and this module turns what it reports into
OpenAI's events. Previews the provider sends while it works (OpenAI's `partial_images`,
relayed as they arrive) become `…partial_image` events; when the call ends, each image
becomes a `…completed` event. A provider that makes no previews still streams: its
images arrive as completed events, so a client can always ask for a stream.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator, Awaitable, Callable

import msgspec

from prismgate.call_options import CallOptions
from prismgate.errors import BadRequestError
from prismgate.types import (
    ImageCompletedEvent,
    ImageObject,
    ImagePartialEvent,
    ImageResponse,
    ImageStreamEvent,
    PartialImage,
    Served,
)

__all__ = ["MAX_PARTIAL_IMAGES", "image_events", "stream_fields"]

# OpenAI's bounds on `partial_images`.
MAX_PARTIAL_IMAGES = 3

RunCall = Callable[[CallOptions], Awaitable[Served[ImageResponse]]]
FetchImage = Callable[[str], Awaitable[bytes]]


def stream_fields(fields: dict[str, object]) -> tuple[bool, int]:
    """Takes `stream` and `partial_images` out of a request's other fields: whether the
    caller asked for a stream, and how many previews an image. A 400 names a bad value."""
    stream = _form_value(fields.pop("stream", None))
    partial = _form_value(fields.pop("partial_images", None))
    if stream is not None and not isinstance(stream, bool):
        raise BadRequestError("stream must be true or false", param="stream", code="invalid_type")
    if partial is not None and (
        isinstance(partial, bool)
        or not isinstance(partial, int)
        or not 0 <= partial <= MAX_PARTIAL_IMAGES
    ):
        raise BadRequestError(
            f"partial_images must be an integer from 0 to {MAX_PARTIAL_IMAGES}",
            param="partial_images",
            code="invalid_value",
        )
    if partial and not stream:
        raise BadRequestError(
            "partial_images needs stream: true", param="partial_images", code="invalid_value"
        )
    return bool(stream), partial or 0


def _form_value(value: object) -> object:
    # A multipart form (an edit) sends every value as text: "true", "2".
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered.isdigit():
            return int(lowered)
    return value


async def image_events(
    operation: str,
    run: RunCall,
    options: CallOptions,
    *,
    partial_images: int,
    image_bytes: FetchImage,
) -> AsyncGenerator[ImageStreamEvent, None]:
    """The events of one streamed call (`operation`: "image_generation" or "image_edit").

    `run(options)` makes the call; `image_bytes` reads an image the provider answered
    with as a link. Leaving early cancels the call. An error is raised where it happens:
    before the first event, the caller can still answer with a plain error.
    """
    previews: asyncio.Queue[PartialImage] = asyncio.Queue()
    streamed = dataclasses.replace(
        options, on_partial=previews.put_nowait, partial_images=partial_images, relay=False
    )
    call = asyncio.ensure_future(run(streamed))
    try:
        while not call.done() or not previews.empty():
            if previews.empty():
                waiting = asyncio.ensure_future(previews.get())
                await asyncio.wait({call, waiting}, return_when=asyncio.FIRST_COMPLETED)
                if not waiting.done():
                    waiting.cancel()
                    continue
                preview = waiting.result()
            else:
                preview = previews.get_nowait()
            yield _partial_event(operation, preview)
        answer = call.result().value
        last = len(answer.data) - 1
        for index, image in enumerate(answer.data):
            completed = await _completed_event(operation, answer, image, image_bytes)
            # The call's usage once, on its last image: summed events add up right.
            yield completed if index == last else msgspec.structs.replace(completed, usage=None)
    finally:
        if not call.done():
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await call


def _partial_event(operation: str, preview: PartialImage) -> ImagePartialEvent:
    return ImagePartialEvent(
        type=f"{operation}.partial_image",
        b64_json=preview.b64_json,
        partial_image_index=preview.partial_image_index,
        created_at=int(time.time()),
        size=preview.size,
        quality=preview.quality,
        background=preview.background,
        output_format=preview.output_format,
    )


async def _completed_event(
    operation: str, answer: ImageResponse, image: ImageObject, image_bytes: FetchImage
) -> ImageCompletedEvent:
    b64_json = image.b64_json
    if b64_json is None:  # answered as a link (a provider's, or the image store's)
        b64_json = base64.b64encode(await image_bytes(image.url or "")).decode()
    return ImageCompletedEvent(
        type=f"{operation}.completed",
        b64_json=b64_json,
        created_at=answer.created or int(time.time()),
        size=answer.size,
        quality=answer.quality,
        background=answer.background,
        output_format=answer.output_format,
        usage=answer.usage,
    )
