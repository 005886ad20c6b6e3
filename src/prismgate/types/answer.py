"""What an answer object can do besides carry its fields: the habits of LiteLLM's and
OpenAI's response objects, so code written against either keeps working.

    response["data"][0]["url"]         item access, as LiteLLM's objects allow
    response.get("usage")              with a default
    dict(response)                     (field, value) pairs, as pydantic iterates
    response.model_dump()              every OpenAI field as plain data (pydantic's form)
    response.model_dump_json()         the same as JSON text
    response.json()                    LiteLLM's name for model_dump()
    response.to_dict(), .to_json()     the wire form, as the openai client's objects give it
    repr(response)                     short: base64 and data URLs are cut, not printed

Everything here runs when it is called; answers are plain msgspec Structs and no
conversion happens while one is being served. `_hidden_params` (how the call was served)
is readable by item access but is never part of a dump: it is not an OpenAI field.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import msgspec

__all__ = ["AnswerObject", "plain"]

# Strings longer than this are shortened in a repr (a 1024x1024 PNG is ~2 MB of base64).
REPR_MAX_CHARS = 120
_REPR_HEAD_CHARS = 48

# Readable by item access although they are not fields.
_EXTRA_KEYS = frozenset({"_hidden_params"})


def plain(value: Any, *, exclude_none: bool = False) -> Any:
    """`value` as plain data (dicts, lists, str, numbers, None) with every field of every
    Struct in it, defaults included, as pydantic's `model_dump()` gives them."""
    if isinstance(value, msgspec.Struct):
        out: dict[str, Any] = {}
        config = value.__struct_config__
        if isinstance(config.tag_field, str):
            out[config.tag_field] = config.tag
        for name in value.__struct_fields__:
            item = getattr(value, name)
            if (item is None and exclude_none) or item is msgspec.UNSET:
                continue  # UNSET: a field of ours that is not OpenAI's, with nothing in it
            out[name] = plain(item, exclude_none=exclude_none)
        return out
    if isinstance(value, list | tuple):
        return [plain(item, exclude_none=exclude_none) for item in value]
    if isinstance(value, dict):
        return {
            key: plain(item, exclude_none=exclude_none)
            for key, item in value.items()
            if not (item is None and exclude_none)
        }
    return value


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def _short(value: Any) -> str:
    """The repr of one field value, long strings cut to their start and their length."""
    if _is_long(value):
        return f"{value[:_REPR_HEAD_CHARS]!r}… ({len(value):,} chars)"
    if isinstance(value, list) and any(isinstance(v, str | AnswerObject) for v in value):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return repr(value)


class AnswerObject:
    """Mixin for the answer Structs (listed first in their bases, so its `__repr__`
    replaces msgspec's). It has no state: every method works from the fields."""

    __slots__ = ()
    if TYPE_CHECKING:
        __struct_fields__: ClassVar[tuple[str, ...]]

    # -- item access (LiteLLM's objects) -------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        if key in self.__struct_fields__:
            return getattr(self, key)
        if key in _EXTRA_KEYS and hasattr(self, key):  # `_hidden_params`: top-level answers
            return getattr(self, key)
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self.__struct_fields__:
            raise KeyError(key)
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return key in self.__struct_fields__ or (
            key in _EXTRA_KEYS and getattr(self, str(key), None) is not None
        )

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        """`(field, value)` pairs, as iterating a pydantic model gives (`dict(answer)`)."""
        for name in self.__struct_fields__:
            yield name, getattr(self, name)

    def get(self, key: str, default: Any = None) -> Any:
        """dict-style access with a default, for code written against LiteLLM's objects."""
        try:
            return self[key]
        except KeyError:
            return default

    # -- pydantic's and openai's dump methods --------------------------------------------

    def model_dump(
        self,
        *,
        mode: Literal["python", "json"] = "python",
        include: Collection[str] | None = None,
        exclude: Collection[str] | None = None,
        exclude_none: bool = False,
        exclude_unset: bool = False,
    ) -> dict[str, Any]:
        """Every field as plain data, `None` included, as pydantic's `model_dump()` gives
        an OpenAI object. `include` / `exclude` name top-level fields to keep or leave
        out; `exclude_unset=True` gives the wire form (`to_dict()`). `mode` is accepted
        for pydantic's signature: every value is JSON data already."""
        if mode not in ("python", "json"):
            raise ValueError(f"mode must be 'python' or 'json', not {mode!r}")
        if exclude_unset:
            dumped = self.to_dict(exclude_none=exclude_none)
        else:
            dumped = plain(self, exclude_none=exclude_none)
        if include is not None or exclude is not None:
            dumped = {
                name: value
                for name, value in dumped.items()
                if (include is None or name in include) and (exclude is None or name not in exclude)
            }
        return dumped

    def model_dump_json(self, *, indent: int | None = None, **options: Any) -> str:
        """`model_dump(**options)` as JSON text (compact, or indented by `indent` spaces)."""
        encoded = msgspec.json.encode(self.model_dump(**options))
        if indent is not None:
            encoded = msgspec.json.format(encoded, indent=indent)
        return encoded.decode()

    def json(self, **kwargs: Any) -> dict[str, Any]:
        """LiteLLM's name for `model_dump()` (a dict, not text, as in LiteLLM)."""
        return self.model_dump(**kwargs)

    def to_dict(
        self,
        *,
        mode: Literal["python", "json"] = "python",
        exclude_none: bool = False,
        exclude_unset: bool = True,
    ) -> dict[str, Any]:
        """The answer as plain data in its wire form (what the proxy sends), as the openai
        client's `to_dict()` gives the fields the answer carried. `exclude_unset=False`
        gives every field, as `model_dump()`."""
        if not exclude_unset:
            return self.model_dump(mode=mode, exclude_none=exclude_none)
        dumped: dict[str, Any] = msgspec.to_builtins(self)
        return _without_none(dumped) if exclude_none else dumped

    def to_json(self, *, indent: int | None = 2, **options: Any) -> str:
        """`to_dict(**options)` as JSON text, indented by 2 spaces unless `indent` says
        otherwise (the openai client's default)."""
        encoded = msgspec.json.encode(self.to_dict(**options))
        if indent is not None:
            encoded = msgspec.json.format(encoded, indent=indent)
        return encoded.decode()

    # -- a repr a person can read ----------------------------------------------------------

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={_short(value)}" for name, value in self if value is not None)
        return f"{type(self).__name__}({fields})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        """For rich's pretty printer: the fields `repr` shows, long strings shortened."""
        return [
            (name, _Shown(_short(value)) if _is_long(value) else value)
            for name, value in self
            if value is not None
        ]


def _is_long(value: Any) -> bool:
    return isinstance(value, str) and len(value) > REPR_MAX_CHARS


class _Shown:
    """A value rich prints as the given text."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text
