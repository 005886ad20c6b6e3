"""The OpenAI error body: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import msgspec


class ErrorDetail(msgspec.Struct, kw_only=True):
    """The inside of an OpenAI error body. All four keys are always present."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(msgspec.Struct, kw_only=True):
    """What every failed call answers, on the proxy and in `PrismgateError.wire_body()`."""

    error: ErrorDetail
