"""Model lookups over the catalog data file."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib import resources

import msgspec

from prismgate.catalog.model_info import ModelInfo

# Bedrock cross-region inference profiles prefix the base model id.
_REGION_PREFIXES = ("us.", "eu.", "apac.", "jp.", "au.", "ca.", "us-gov.", "global.")


class Catalog:
    """Immutable lookups by `provider/model`, or by a bare model name."""

    __slots__ = ("_by_bare_name", "_by_key")

    def __init__(self, entries: Mapping[str, ModelInfo]) -> None:
        self._by_key = dict(entries)
        bare: dict[str, str] = {}
        for key in entries:  # the data file lists a provider's own models first
            bare.setdefault(key.partition("/")[2], key)
        self._by_bare_name = bare

    def __len__(self) -> int:
        return len(self._by_key)

    def keys(self) -> list[str]:
        """Every catalogued `provider/model` key."""
        return list(self._by_key)

    def lookup(self, model: str, provider: str | None = None) -> ModelInfo | None:
        """The entry for `model` (`provider/model` or bare), or None if it is not catalogued.

        With `provider`, only that provider's entries are searched: `mock/dall-e-3` is not
        OpenAI's dall-e-3 (a deployment names its real model with `model_info.base_model`).
        """
        if provider is not None and not model.startswith(provider + "/"):
            model = f"{provider}/{model}"
        return self._find(model)

    def _find(self, name: str) -> ModelInfo | None:
        if (info := self._by_key.get(name)) is not None:
            return info
        provider, _, model = name.partition("/")
        if model:
            stripped = _strip_region(model)
            if (info := self._by_key.get(f"{provider}/{stripped}")) is not None:
                return info
            return None
        key = self._by_bare_name.get(_strip_region(name))
        return self._by_key[key] if key is not None else None


def _strip_region(model: str) -> str:
    for prefix in _REGION_PREFIXES:
        if model.startswith(prefix):
            return model[len(prefix) :]
    return model


def catalog_files() -> list[tuple[str, bytes]]:
    """(provider, its data file's bytes): `catalog/models/<provider>.json`, one per
    provider, in the registry's order (so a bare name finds OpenAI's dall-e-3 before
    Azure's, Vertex AI's Gemini before the Gemini API's)."""
    from prismgate.providers import registered_providers  # the registry imports the catalog

    folder = resources.files("prismgate.catalog").joinpath("models")
    found = {path.name.removesuffix(".json"): path for path in folder.iterdir()}
    order = [name for name in registered_providers() if name in found]
    order += sorted(set(found) - set(order))  # a file no provider claims: still read
    return [(name, found[name].read_bytes()) for name in order]


@functools.cache
def builtin_catalog() -> Catalog:
    """The catalog shipped with prismgate (read once; immutable)."""
    entries: dict[str, ModelInfo] = {}
    for _provider, data in catalog_files():
        entries.update(msgspec.json.decode(data, type=dict[str, ModelInfo]))
    return Catalog(entries)
