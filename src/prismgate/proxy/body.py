"""Reading request bodies: the size limit counts bytes received, and JSON is decoded once."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request

from prismgate.errors import BadRequestError, RequestTooLargeError
from prismgate.types.validation import check_json_depth

__all__ = [
    "MANAGEMENT_BODY_BYTES",
    "decode_json_object",
    "management_body",
    "read_body",
    "too_large",
]

_decoder = msgspec.json.Decoder()
# The management API's bodies (keys, teams, virtual keys) are small; a service-account
# JSON is a few kilobytes: a megabyte is generous.
MANAGEMENT_BODY_BYTES = 1 << 20


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing it (413) as soon as more than `limit` bytes arrived.

    Content-Length is not trusted: a client can lie, or send chunks.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int) -> RequestTooLargeError:
    """The 413 for a body over `limit` bytes, saying how to get under it."""
    return RequestTooLargeError(
        f"the request body is larger than {limit // (1024 * 1024)} MiB; "
        "send a smaller request, or raise general_settings.max_request_size_mb"
    )


def decode_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; a 400 saying what is wrong otherwise."""
    if not body:
        raise BadRequestError("the request body is empty; send a JSON object")
    check_json_depth(body, what="the request body")
    try:
        data = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise BadRequestError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequestError("the request body must be a JSON object")
    return data


async def management_body(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """A management API request's body, a JSON object of at most `MANAGEMENT_BODY_BYTES`;
    with `optional`, an empty body is `{}`."""
    body = await read_body(request, MANAGEMENT_BODY_BYTES)
    return decode_json_object((body or b"{}") if optional else body)
