"""The rule every chat provider obeys, checked before any upstream call: a field the
provider has no meaning for (its `chat_unsupported`) is a 400 naming it, unless the
caller asked to drop unsupported parameters; then it is dropped and reported."""

from __future__ import annotations

import msgspec

from prismgate.errors import UnsupportedParamsError
from prismgate.types.chat import ChatCompletionRequest

__all__ = ["drop_or_refuse"]


def drop_or_refuse(
    request: ChatCompletionRequest, unsupported: frozenset[str], *, model: str, drop: bool
) -> tuple[ChatCompletionRequest, tuple[str, ...]]:
    """`request` without the fields in `unsupported` it sets (and their names), or an
    `UnsupportedParamsError` naming the first when `drop` is off."""
    present = sorted(name for name in unsupported if getattr(request, name) is not None)
    if not present:
        return request, ()
    if not drop:
        raise UnsupportedParamsError(
            f"{model} does not support {present[0]!r}. Remove it, or set drop_params=True "
            "to drop unsupported parameters.",
            param=present[0],
        )
    return msgspec.structs.replace(request, **dict.fromkeys(present)), tuple(present)
