"""`POST /v1/chat/completions` (and its `/chat/...` and Azure-style aliases), streaming or not."""

from __future__ import annotations

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from prismgate.proxy.calls import decoded_call
from prismgate.proxy.responses import json_response, served_headers
from prismgate.proxy.state import ProxyState
from prismgate.rate_limit_headers import rate_limit_headers
from prismgate.types.chat import ChatCompletionRequest

__all__ = ["completions"]

# Event streams must reach the client as they are made, not buffered by a proxy between.
_STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def completions(request: Request) -> Response:
    """A chat completion with the model group named in the body (or the Azure-style path)."""
    state: ProxyState = request.app.state.proxy
    chat_request, options = await decoded_call(request, ChatCompletionRequest, state)
    if chat_request.stream:
        streamed = await state.gateway.chat_completion_stream(chat_request, options)
        headers = {**_STREAM_HEADERS, **rate_limit_headers(streamed.meta.rate_limits)}
        stream = streamed.value
        # Closed after the answer, or (a client gone before it began) when collected.
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers=headers,
            background=BackgroundTask(stream.aclose),
        )
    served = await state.gateway.chat_completion(chat_request, options)
    return json_response(served.value, raw_headers=served_headers(served.meta))
