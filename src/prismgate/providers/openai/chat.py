"""Chat completions over the OpenAI wire (OpenAI, Azure, xAI, OpenAI-compatible servers).

Image parts arrive already prepared by the gateway (true media types, within limits);
the body is OpenAI's own, so streamed answers are passed through as they come.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from prismgate.errors import unreadable_answer
from prismgate.providers.base import ChatCall, Credentials
from prismgate.providers.openai.wire import (
    HeadersFor,
    UrlFor,
    bearer,
    in_band_error,
    openai_error,
    v1_url,
)
from prismgate.transport import Transport, UpstreamRequest, UpstreamResponse
from prismgate.types.chat import ChatCompletion

__all__ = ["OpenAIChat"]


@dataclass(frozen=True, slots=True)
class OpenAIChat:
    """`POST …/chat/completions`, whole or streamed."""

    provider: str
    url: UrlFor = v1_url
    headers: HeadersFor = bearer
    model_in_body: Callable[[Credentials], bool] = lambda _credentials: True

    def _request(self, call: ChatCall, *, stream: bool) -> UpstreamRequest:
        body: dict[str, Any] = msgspec.to_builtins(call.request)
        if self.model_in_body(call.credentials):
            body["model"] = call.deployment.model
        else:
            del body["model"]
        body.update(call.extra)
        if stream:
            body["stream"] = True
        else:
            body.pop("stream", None)
        return UpstreamRequest(
            method="POST",
            url=self.url(call.credentials, call.deployment, "/chat/completions"),
            provider=self.provider,
            headers={
                **self.headers(call.credentials, call.settings),
                "Content-Type": "application/json",
            },
            body=msgspec.json.encode(body),
            timeout=call.timeout,
            connect_timeout=call.connect_timeout,
        )

    async def complete(self, call: ChatCall, http: Transport) -> ChatCompletion:
        """One whole answer, decoded (chat answers are small)."""
        response = await http.send(self._request(call, stream=False))
        if response.status >= 400:
            raise openai_error(self.provider, response, call.redact)
        try:
            return msgspec.json.decode(response.body, type=ChatCompletion)
        except msgspec.DecodeError as exc:
            if failed := in_band_error(self.provider, response, call.redact):
                raise failed from None
            raise unreadable_answer(
                self.provider, response.status, f"not a chat completion ({exc})"
            ) from exc

    async def stream(self, call: ChatCall, http: Transport) -> AsyncGenerator[bytes, None]:
        """The provider's own server-sent events, which are already OpenAI's."""
        async with http.stream(self._request(call, stream=True)) as upstream:
            if upstream.status >= 400:
                body = await upstream.read()
                failed = UpstreamResponse(upstream.status, upstream.headers, body)
                raise openai_error(self.provider, failed, call.redact)
            async for chunk in upstream.chunks():
                yield chunk
