"""Reading the management API's query parameters: a 400 naming the parameter when one is
not what it must be."""

from __future__ import annotations

from starlette.requests import Request

from prismgate.errors import BadRequestError

__all__ = ["int_query", "text_query"]

# Six digits: a page, a page size or a row limit, never a number Python must work to parse.
_MOST = 999_999


def text_query(request: Request, name: str, *, required: bool = False) -> str | None:
    """`?name=` as given (None when absent or empty); a 400 when `required` and missing."""
    value = request.query_params.get(name) or None
    if required and value is None:
        raise BadRequestError(f"add ?{name}=... to the URL", param=name)
    return value


def int_query(request: Request, name: str, default: int, *, most: int = _MOST) -> int:
    """`?name=` as a whole number from 0 to `most` (`default` when absent or empty)."""
    value = request.query_params.get(name)
    if not value:
        return default
    if not (value.isascii() and value.isdecimal()) or len(value) > 6 or int(value) > most:
        raise BadRequestError(f"{name} must be a whole number from 0 to {most}", param=name)
    return int(value)
