"""`POST /v1/chat/completions` (and its `/chat/...` and Azure-style aliases), streaming or not."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from prismgate.proxy.body import decode_json_object, read_body
from prismgate.proxy.calls import call_options
from prismgate.proxy.responses import json_response
from prismgate.proxy.state import ProxyState
from prismgate.types.chat import ChatCompletion, ChatCompletionRequest
from prismgate.types.validation import convert_request

__all__ = ["completions"]

_REQUEST_FIELDS = frozenset(ChatCompletionRequest.__struct_fields__)
# Event streams must reach the client as they are made, not buffered by a proxy between.
_STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def completions(request: Request) -> Response:
    """A chat completion with the model group named in the body (or the Azure-style path)."""
    state: ProxyState = request.app.state.proxy
    data = decode_json_object(await read_body(request, state.max_body_bytes))
    if (deployment := request.path_params.get("deployment")) is not None:
        data["model"] = deployment
    extra = {name: data.pop(name) for name in list(data) if name not in _REQUEST_FIELDS}
    chat_request = convert_request(data, ChatCompletionRequest)
    options = call_options(
        request,
        extra,
        allow_provider_keys=state.allow_client_provider_keys,
        allowed_hosts=state.allowed_hosts,
    )
    if chat_request.stream:
        events = await state.gateway.chat_completion_stream(chat_request, options)
        return StreamingResponse(events, media_type="text/event-stream", headers=_STREAM_HEADERS)
    completion = await state.gateway.chat_completion(chat_request, options)
    return json_response(completion, headers=_headers(completion))


def _headers(completion: ChatCompletion) -> dict[str, str]:
    meta = completion._hidden_params
    if meta is None:
        return {}
    headers = {"x-portkey-provider": meta.provider, "x-portkey-cache-status": "DISABLED"}
    if meta.response_cost is not None:
        headers["x-prismgate-response-cost"] = f"{meta.response_cost:.6f}"
    return headers
