"""Response helpers: JSON bodies encoded once, OpenAI error bodies for every failure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.responses import Response

from prismgate.errors import PrismgateError

__all__ = ["error_response", "json_response"]

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
        headers["retry-after"] = str(max(1, round(error.retry_after)))
    return json_response(error.body(), status=error.status_code, headers=headers)
