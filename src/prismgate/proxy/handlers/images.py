"""`POST /v1/images/generations` (and its `/images/...` and Azure-style aliases)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from prismgate.proxy.body import decode_json_object, read_body
from prismgate.proxy.calls import call_options
from prismgate.proxy.responses import json_response
from prismgate.proxy.state import ProxyState
from prismgate.types import ImageGenerationRequest, ImageResponse
from prismgate.types.validation import convert_request

__all__ = ["generations"]

_REQUEST_FIELDS = frozenset(ImageGenerationRequest.__struct_fields__)


async def generations(request: Request) -> Response:
    """Generate images with the model group named in the body (or the Azure-style path)."""
    state: ProxyState = request.app.state.proxy
    data = decode_json_object(await read_body(request, state.max_body_bytes))
    if (deployment := request.path_params.get("deployment")) is not None:
        data["model"] = deployment
    # Unknown fields are provider parameters (OpenAI SDK's extra_body lands here too).
    extra = {name: data.pop(name) for name in list(data) if name not in _REQUEST_FIELDS}
    image_request = convert_request(data, ImageGenerationRequest)
    options = call_options(
        request,
        extra,
        allow_provider_keys=state.allow_client_provider_keys,
        allowed_hosts=state.allowed_hosts,
    )
    response = await state.gateway.image_generation(image_request, options)
    return json_response(response.relayed_body or response, headers=_headers(response))


def _headers(response: ImageResponse) -> dict[str, str]:
    meta = response._hidden_params
    if meta is None:
        return {}
    headers = {"x-portkey-provider": meta.provider, "x-portkey-cache-status": "DISABLED"}
    if meta.response_cost is not None:
        headers["x-prismgate-response-cost"] = f"{meta.response_cost:.6f}"
    if meta.adjusted:
        headers["x-prismgate-adjusted"] = ", ".join(meta.adjusted)
    if meta.dropped_params:
        headers["x-prismgate-dropped-params"] = ", ".join(meta.dropped_params)
    return headers
