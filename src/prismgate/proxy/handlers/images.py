"""`POST /v1/images/generations`, `/v1/images/edits` and `/v1/images/variations` (and
their `/images/...` and Azure-style aliases)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from prismgate.proxy.calls import decoded_call, image_form_call
from prismgate.proxy.responses import json_response, served_headers
from prismgate.proxy.state import ProxyState
from prismgate.types import (
    ImageEditRequest,
    ImageGenerationRequest,
    ImageResponse,
    ImageVariationRequest,
    Served,
)

__all__ = ["edits", "generations", "variations"]


async def generations(request: Request) -> Response:
    """Generate images with the model group named in the body (or the Azure-style path)."""
    state: ProxyState = request.app.state.proxy
    image_request, options = await decoded_call(request, ImageGenerationRequest, state)
    return _answer(await state.gateway.image_generation(image_request, options))


async def edits(request: Request) -> Response:
    """Edit images: a multipart form (`image` or `image[]`, `mask`, `prompt`, ...), or JSON
    with `images: [{image_url}]`."""
    state: ProxyState = request.app.state.proxy
    edit, options = await image_form_call(request, ImageEditRequest, state)
    return _answer(await state.gateway.image_edit(edit, options))


async def variations(request: Request) -> Response:
    """Variations of one image (a multipart form with `image`)."""
    state: ProxyState = request.app.state.proxy
    variation, options = await image_form_call(request, ImageVariationRequest, state)
    return _answer(await state.gateway.image_variation(variation, options))


def _answer(served: Served[ImageResponse]) -> Response:
    response = served.value
    return json_response(response.relayed_body or response, headers=served_headers(served.meta))
