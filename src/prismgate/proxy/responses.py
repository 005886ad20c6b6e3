"""Response helpers: JSON bodies encoded once, OpenAI error bodies for every failure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from starlette.responses import Response

from prismgate.errors import PrismgateError
from prismgate.rate_limit_headers import raw_rate_limit_headers
from prismgate.types.meta import CallMeta

__all__ = [
    "error_response",
    "json_response",
    "served_headers",
]

_encoder = msgspec.json.Encoder()


def json_response(
    content: Any,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    *,
    raw_headers: Sequence[tuple[bytes, bytes]] = (),
) -> Response:
    """A JSON response; `bytes` are sent as they are (precomputed or relayed bodies).
    `raw_headers`: more headers, encoded already (lower-case names, latin-1)."""
    body = content if isinstance(content, bytes) else _encoder.encode(content)
    response = Response(body, status_code=status, headers=headers, media_type="application/json")
    if raw_headers:
        response.raw_headers.extend(raw_headers)
    return response


def error_response(error: PrismgateError) -> Response:
    """The OpenAI error body for `error`, with its status and headers."""
    return json_response(
        error.wire_body(), status=error.status_code, headers=error.response_headers()
    )


def served_headers(meta: CallMeta) -> list[tuple[bytes, bytes]]:
    """Response headers saying how a call was served: provider, cost, what the gateway
    changed (Portkey's names where Portkey has one), and the caller's rate limits. Encoded
    here, their names once: every answer carries them, and Starlette would lower-case and
    encode each name and value again."""
    headers = [
        (b"x-portkey-provider", meta.provider.encode("latin-1")),
        (b"x-portkey-cache-status", (meta.cache_status or "DISABLED").encode("latin-1")),
        (b"x-portkey-retry-attempt-count", b"%d" % meta.retries),
    ]
    if meta.attempts:
        headers.append((b"x-prismgate-attempts", ", ".join(meta.attempts).encode("latin-1")))
    if meta.path:
        headers.append((b"x-portkey-last-used-option-index", meta.path.encode("latin-1")))
    if meta.response_cost is not None:
        headers.append((b"x-prismgate-response-cost", b"%.6f" % meta.response_cost))
    if meta.filtered:
        headers.append((b"x-prismgate-filtered", b"%d" % meta.filtered))
    if meta.adjusted:
        headers.append((b"x-prismgate-adjusted", ", ".join(meta.adjusted).encode("latin-1")))
    if meta.dropped_params:
        dropped = ", ".join(meta.dropped_params).encode("latin-1")
        headers.append((b"x-prismgate-dropped-params", dropped))
    if meta.rate_limits:
        headers.extend(raw_rate_limit_headers(meta.rate_limits))
    return headers
