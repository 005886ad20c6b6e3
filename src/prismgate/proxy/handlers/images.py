"""`POST /v1/images/generations` (and its `/images/...` and Azure-style aliases)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from prismgate.proxy.calls import decoded_call
from prismgate.proxy.responses import json_response, served_headers
from prismgate.proxy.state import ProxyState
from prismgate.types import ImageGenerationRequest

__all__ = ["generations"]


async def generations(request: Request) -> Response:
    """Generate images with the model group named in the body (or the Azure-style path)."""
    state: ProxyState = request.app.state.proxy
    image_request, options = await decoded_call(request, ImageGenerationRequest, state)
    response = await state.gateway.image_generation(image_request, options)
    return json_response(
        response.relayed_body or response, headers=served_headers(response._hidden_params)
    )
