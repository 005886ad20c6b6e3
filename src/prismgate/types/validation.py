"""Turning caller data into typed requests, with errors that name the field."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from prismgate.errors import BadRequestError

__all__ = ["convert_request", "plain_validation_error"]

T = TypeVar("T")

_DOLLAR_PATH = re.compile(r"`\$\.?([^`]*)`")


def plain_validation_error(exc: msgspec.ValidationError) -> tuple[str | None, str]:
    """msgspec's "Expected `int`, got `str` - at `$.n`" → `("n", "Expected `int`, got `str`")`."""
    message = str(exc)
    found = _DOLLAR_PATH.search(message)
    if not found:
        return None, message
    detail = message[: found.start()].removesuffix(" - at ").strip()
    return found.group(1) or None, detail


def convert_request(data: dict[str, Any], kind: type[T], *, strict: bool = True) -> T:
    """`data` as a `kind` Struct; a 400 naming the offending field when it does not fit.

    `strict=False` accepts numbers and booleans written as text (form fields).
    """
    try:
        return msgspec.convert(data, kind, strict=strict)
    except msgspec.ValidationError as exc:
        path, detail = plain_validation_error(exc)
        choices = _literal_choices(kind, path) if detail.startswith("Invalid enum") else None
        if choices:
            detail += f"; expected one of {', '.join(map(str, choices))}"
        where = f"{path}: " if path else ""
        raise BadRequestError(f"{where}{detail}", param=path, code="invalid_value") from None


def _literal_choices(kind: type[Any], field: str | None) -> tuple[Any, ...] | None:
    """The allowed values of a top-level Literal field, to tell the caller what fits."""
    info = msgspec.inspect.type_info(kind)
    if field is None or not isinstance(info, msgspec.inspect.StructType):
        return None
    for candidate in info.fields:
        if candidate.encode_name == field:
            options = getattr(candidate.type, "types", (candidate.type,))
            for option in options:
                if isinstance(option, msgspec.inspect.LiteralType):
                    return option.values
    return None
