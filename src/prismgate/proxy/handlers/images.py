"""`POST /v1/images/generations`, `/v1/images/edits` and `/v1/images/variations` (and
their `/images/...` and Azure-style aliases)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from prismgate.call_options import CallOptions
from prismgate.errors import PrismgateError
from prismgate.image_streams import stream_fields
from prismgate.proxy.calls import decoded_call, image_form_call
from prismgate.proxy.responses import json_response, served_headers
from prismgate.proxy.state import ProxyState
from prismgate.types import (
    ImageEditRequest,
    ImageGenerationRequest,
    ImageResponse,
    ImageStreamEvent,
    ImageVariationRequest,
    Served,
)

__all__ = ["edits", "generations", "variations"]


async def generations(request: Request) -> Response:
    """Generate images with the model group named in the body (or the Azure-style path)."""
    state: ProxyState = request.app.state.proxy
    image_request, options = await decoded_call(request, ImageGenerationRequest, state)
    options, stream, partial_images = _streaming(options)
    if stream:
        return await _streamed(state, image_request, options, partial_images)
    return _answer(await state.gateway.image_generation(image_request, options))


async def edits(request: Request) -> Response:
    """Edit images: a multipart form (`image` or `image[]`, `mask`, `prompt`, ...), or JSON
    with `images: [{image_url}]`."""
    state: ProxyState = request.app.state.proxy
    edit, options = await image_form_call(request, ImageEditRequest, state)
    options, stream, partial_images = _streaming(options)
    if stream:
        return await _streamed(state, edit, options, partial_images)
    return _answer(await state.gateway.image_edit(edit, options))


async def variations(request: Request) -> Response:
    """Variations of one image (a multipart form with `image`)."""
    state: ProxyState = request.app.state.proxy
    variation, options = await image_form_call(request, ImageVariationRequest, state)
    return _answer(await state.gateway.image_variation(variation, options))


def _answer(served: Served[ImageResponse]) -> Response:
    response = served.value
    return json_response(response.relayed_body or response, raw_headers=served_headers(served.meta))


# Event streams must reach the client as they are made, not buffered by a proxy between.
_STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _streaming(options: CallOptions) -> tuple[CallOptions, bool, int]:
    """`stream` and `partial_images` are the gateway's to act on, never the provider's:
    taken out of the request's other fields."""
    if "stream" not in options.extra and "partial_images" not in options.extra:
        return options, False, 0
    extra = dict(options.extra)
    stream, partial_images = stream_fields(extra)
    return dataclasses.replace(options, extra=extra), stream, partial_images


async def _streamed(
    state: ProxyState,
    request: ImageGenerationRequest | ImageEditRequest,
    options: CallOptions,
    partial_images: int,
) -> Response:
    """OpenAI's image events as server-sent events. The first is awaited before the
    answer starts, so a call that fails at once gets a plain error with its status."""
    events = state.gateway.image_stream(request, options, partial_images=partial_images)
    try:
        first = await anext(events)
    except BaseException:
        await events.aclose()
        raise
    return StreamingResponse(
        _sse(first, events), media_type="text/event-stream", headers=_STREAM_HEADERS
    )


async def _sse(
    first: ImageStreamEvent, rest: AsyncGenerator[ImageStreamEvent, None]
) -> AsyncIterator[bytes]:
    try:
        yield _event(first.type, msgspec.json.encode(first))
        async for event in rest:
            yield _event(event.type, msgspec.json.encode(event))
    except PrismgateError as error:  # after the first event: an error event ends it
        body = msgspec.json.encode({"type": "error", "error": error.error_detail()})
        yield _event("error", body)
    finally:
        await rest.aclose()


def _event(name: str, data: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"
