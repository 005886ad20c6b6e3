"""Response helpers: JSON bodies encoded once, OpenAI error bodies for every failure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.responses import Response

from prismgate.errors import PrismgateError
from prismgate.rate_limit_headers import rate_limit_headers
from prismgate.types.meta import CallMeta

__all__ = [
    "error_response",
    "json_response",
    "served_headers",
]

_encoder = msgspec.json.Encoder()


def json_response(
    content: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response; `bytes` are sent as they are (precomputed or relayed bodies)."""
    body = content if isinstance(content, bytes) else _encoder.encode(content)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def error_response(error: PrismgateError) -> Response:
    """The OpenAI error body for `error`, with its status and headers."""
    return json_response(
        error.wire_body(), status=error.status_code, headers=error.response_headers()
    )


def served_headers(meta: CallMeta) -> dict[str, str]:
    """Response headers saying how a call was served: provider, cost, and what the
    gateway changed (Portkey's names where Portkey has one)."""
    headers = {
        "x-portkey-provider": meta.provider,
        "x-portkey-cache-status": meta.cache_status or "DISABLED",
        "x-portkey-retry-attempt-count": str(meta.retries),
    }
    if meta.attempts:
        headers["x-prismgate-attempts"] = ", ".join(meta.attempts)
    if meta.path:
        headers["x-portkey-last-used-option-index"] = meta.path
    if meta.response_cost is not None:
        headers["x-prismgate-response-cost"] = f"{meta.response_cost:.6f}"
    if meta.filtered:
        headers["x-prismgate-filtered"] = str(meta.filtered)
    if meta.adjusted:
        headers["x-prismgate-adjusted"] = ", ".join(meta.adjusted)
    if meta.dropped_params:
        headers["x-prismgate-dropped-params"] = ", ".join(meta.dropped_params)
    if meta.rate_limits:
        headers.update(rate_limit_headers(meta.rate_limits))
    return headers
