"""Response helpers: JSON bodies encoded once, OpenAI error bodies for every failure."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from starlette.responses import Response

from prismgate.errors import PrismgateError
from prismgate.identity.limits import wait_text
from prismgate.types.meta import CallMeta, RateLimitStatus

__all__ = [
    "error_response",
    "json_response",
    "rate_limit_headers",
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
    """The OpenAI error body for `error`, with its status (and Retry-After when known)."""
    headers = {}
    if error.retry_after is not None:
        # Rounded up: a client that waits this long finds the wait over.
        headers["retry-after"] = str(max(1, math.ceil(error.retry_after)))
    if not error.retryable:
        headers["x-should-retry"] = "false"
    if error.attempts:
        headers["x-prismgate-attempts"] = ", ".join(error.attempts)
        # Portkey's value: -1 when every retry was used and the call still failed.
        count = -1 if error.retries_exhausted else len(error.attempts) - 1
        headers["x-portkey-retry-attempt-count"] = str(count)
    if error.rate_limits:
        headers.update(rate_limit_headers(error.rate_limits))
    return json_response(error.body(), status=error.status_code, headers=headers)


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


def rate_limit_headers(statuses: Sequence[RateLimitStatus]) -> dict[str, str]:
    """OpenAI's rate-limit headers, `x-ratelimit-{limit,remaining,reset}-<unit>` for each
    limited unit (requests, tokens, and prismgate's images)."""
    headers = {}
    for status in statuses:
        headers[f"x-ratelimit-limit-{status.unit}"] = str(status.limit)
        headers[f"x-ratelimit-remaining-{status.unit}"] = str(status.remaining)
        headers[f"x-ratelimit-reset-{status.unit}"] = wait_text(status.reset)
    return headers
