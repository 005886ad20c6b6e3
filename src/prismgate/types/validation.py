"""Turning caller data into typed requests, with errors that name the field."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from prismgate.errors import BadRequestError

__all__ = ["MAX_JSON_DEPTH", "check_json_depth", "convert_request", "plain_validation_error"]

T = TypeVar("T")

_DOLLAR_PATH = re.compile(r"`\$\.?([^`]*)`")

# Deeper than any real request; decoders and the code that walks the result recurse.
MAX_JSON_DEPTH = 64
# Every byte but the four brackets and the quote, for bytes.translate(None, delete=...).
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_ONE_BRACKET = bytes.maketrans(b"{}", b"[]")
_STRING = re.compile(rb'"[^"]*"')
_ESCAPED = re.compile(rb'\\[\\"]')


def check_json_depth(
    raw: bytes | str, *, what: str, param: str | None = None, limit: int = MAX_JSON_DEPTH
) -> None:
    """A 400 when the JSON text `raw` nests arrays and objects deeper than `limit`,
    checked before it is decoded. `what` names it for the caller ("the request body").

    Everything runs at C speed: a body with few brackets (an image request with megabytes
    of base64) costs a few memchr scans; only a body with many brackets gets the exact
    scan, which ignores brackets inside strings.
    """
    data = raw.encode() if isinstance(raw, str) else raw
    if _bracket_count_at_most(data, limit) or _depth_at_most(data, limit):
        return
    raise BadRequestError(
        f"{what} nests arrays and objects more than {limit} levels deep; send a flatter "
        "JSON document",
        param=param,
        code="json_too_deep",
    )


def _bracket_count_at_most(data: bytes, limit: int) -> bool:
    """At most `limit` opening brackets in all (so no deeper nesting is possible)."""
    seen = 0
    for bracket in (b"[", b"{"):
        at = data.find(bracket)
        while at >= 0:
            seen += 1
            if seen > limit:
                return False
            at = data.find(bracket, at + 1)
    return True


def _depth_at_most(data: bytes, limit: int) -> bool:
    """The exact check: escapes and strings removed, then the innermost `[]` pairs peeled
    one level per round. Unbalanced text also fails (it is not valid JSON either).

    Strings must go before counting: brackets inside them could hide real nesting, not
    only add to it (`["]]]", [[[...]]], "[[["]`).
    """
    # In JSON a backslash always escapes the next character: drop escaped backslashes and
    # escaped quotes, so that every quote left opens or closes a string.
    if b"\\" in data:
        data = _ESCAPED.sub(b"", data)
    skeleton = _STRING.sub(b"", data.translate(None, _NOT_STRUCTURE)).translate(_ONE_BRACKET)
    for _ in range(limit):
        if not skeleton:
            return True
        skeleton = skeleton.replace(b"[]", b"")
    return not skeleton


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
        if detail == "Expected `array` of length >= 1":
            detail = "must hold at least one item"
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
