"""The model listings: `/v1/models`, `/model/info`, `/model_group/info` (built at startup)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from prismgate.proxy.responses import json_response
from prismgate.proxy.state import ProxyState

__all__ = ["list_models", "model_group_info", "model_info"]


async def list_models(request: Request) -> Response:
    """The model groups, in OpenAI's list shape."""
    state: ProxyState = request.app.state.proxy
    return json_response(state.models_body)


async def model_info(request: Request) -> Response:
    """Every deployment with where it points and what it can do; never a secret."""
    state: ProxyState = request.app.state.proxy
    return json_response(state.model_info_body)


async def model_group_info(request: Request) -> Response:
    """Per model group: providers, limits, prices, vision, and the image capabilities."""
    state: ProxyState = request.app.state.proxy
    return json_response(state.group_info_body)
