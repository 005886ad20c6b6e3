"""The provider registry: a provider's name → the module that declares it, imported lazily."""

from __future__ import annotations

import functools
import importlib

from prismgate.providers.base import Provider, Setting

__all__ = [
    "Provider",
    "Setting",
    "canonical_provider",
    "get_provider",
    "is_provider",
    "provider_names",
    "provider_settings",
    "registered_providers",
    "shown_settings",
]

# name → (module, attribute). Modules load on first use, keeping `import prismgate` light.
_REGISTRY: dict[str, tuple[str, str]] = {
    "openai": ("prismgate.providers.openai", "OPENAI"),
    "azure": ("prismgate.providers.azure", "AZURE"),
    "xai": ("prismgate.providers.xai", "XAI"),
    "xinference": ("prismgate.providers.openai", "XINFERENCE"),
    "hosted_vllm": ("prismgate.providers.openai", "HOSTED_VLLM"),
    "mock": ("prismgate.providers.mock", "MOCK"),
    "anthropic": ("prismgate.providers.anthropic", "ANTHROPIC"),
    "vertex_ai": ("prismgate.providers.google", "VERTEX_AI"),
    "gemini": ("prismgate.providers.google", "GEMINI"),
    "bedrock": ("prismgate.providers.bedrock", "BEDROCK"),
    "stability": ("prismgate.providers.stability", "STABILITY"),
    "together_ai": ("prismgate.providers.together", "TOGETHER_AI"),
    "fireworks_ai": ("prismgate.providers.fireworks", "FIREWORKS_AI"),
    "fal_ai": ("prismgate.providers.fal", "FAL_AI"),
    "black_forest_labs": ("prismgate.providers.black_forest_labs", "BLACK_FOREST_LABS"),
    "replicate": ("prismgate.providers.replicate", "REPLICATE"),
    "recraft": ("prismgate.providers.recraft", "RECRAFT"),
    "byteplus": ("prismgate.providers.byteplus", "BYTEPLUS"),
    "openrouter": ("prismgate.providers.openrouter", "OPENROUTER"),
}


def canonical_provider(name: str) -> str | None:
    """Our name for a provider spelled `name` (ours, or one of its declared aliases), or
    None."""
    if name in _REGISTRY:
        return name
    return _aliases().get(name)


@functools.cache
def _aliases() -> dict[str, str]:
    # The other spellings providers declare (Portkey's `x-portkey-provider` values); this
    # imports every provider, once, the first time a name is not one of ours.
    return {alias: name for name in _REGISTRY for alias in get_provider(name).aliases}


def registered_providers() -> tuple[str, ...]:
    """Every provider prismgate knows, in the registry's order."""
    return tuple(_REGISTRY)


def provider_names() -> list[str]:
    """Every provider prismgate knows, by the prefix used in `provider/model`."""
    return sorted(_REGISTRY)


def is_provider(name: str) -> bool:
    """Whether `name` is a registered provider prefix."""
    return name in _REGISTRY


def get_provider(name: str) -> Provider:
    """The provider registered as `name` (KeyError if there is none)."""
    module, attribute = _REGISTRY[name]
    provider: Provider = getattr(importlib.import_module(module), attribute)
    return provider


def provider_settings() -> dict[str, Setting]:
    """Every setting any provider declares, by name (this imports every provider)."""
    declared: dict[str, Setting] = {}
    for name in _REGISTRY:
        for setting in get_provider(name).settings:
            declared.setdefault(setting.name, setting)
    return declared


def unsupported_settings() -> frozenset[str]:
    """Every provider's LiteLLM settings that prismgate does not act on (this imports
    every provider)."""
    return frozenset(
        name for provider in _REGISTRY for name in get_provider(provider).unsupported_settings
    )


def portkey_fields_instead() -> dict[str, str]:
    """Every provider's Portkey virtual-key fields prismgate does not take, with what to
    do instead (this imports every provider)."""
    return {
        field: instead
        for name in _REGISTRY
        for field, instead in get_provider(name).portkey_fields_instead.items()
    }


def shown_settings(provider: str) -> frozenset[str]:
    """The settings `provider` marks shown: where its deployments point (a region, a
    project), never who they are. /model/info and virtual-key views list only these."""
    return frozenset(setting.name for setting in get_provider(provider).settings if setting.shown)
