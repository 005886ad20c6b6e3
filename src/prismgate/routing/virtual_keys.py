"""Virtual keys: a name standing for a provider and how to call it (Portkey's
`x-portkey-virtual-key`, and `virtual_key` in a Portkey config).

Two sources, looked up in this order: the config's `virtual_keys` (checked at startup),
then the ones an admin stored over the API (`identity/virtual_keys.py`, read through a
cache). A caller only names a key; what the key holds is the operator's (DESIGN.md §7).

What a virtual key may set is derived, never listed again: the deployment fields of
`litellm_params` that a deployment carries, and the settings its provider declares.

A stored key is made over the network, so it is held to what a caller's own provider key
is: calls made with it use only the credentials it holds, never the gateway's environment,
files or ambient identity (Application Default Credentials, an instance role).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from prismgate.config import Config, LiteLLMParams, sorted_params
from prismgate.errors import BadRequestError, ConfigError
from prismgate.providers import Setting, canonical_provider, get_provider, shown_settings
from prismgate.providers.base import Deployment

__all__ = [
    "StoredKeys",
    "VirtualKey",
    "VirtualKeys",
    "deployment_fields",
    "provider_setting_table",
    "secret_fields",
    "shown_fields",
    "virtual_key_params",
]

# Fields of litellm_params that a virtual key fixes itself (its provider; the model is
# the request's), or that are containers rather than settings.
_NOT_SETTABLE = frozenset({"model", "custom_llm_provider", "settings", "provider_params"})


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """A virtual key, ready to call: its provider and its `litellm_params`."""

    provider: str
    params: LiteLLMParams
    # Stored over the API (not in the config file): its calls use only its own
    # credentials, as a caller's own key's do.
    stored: bool = False
    # The secrets of a stored key, which the gateway's redactor does not know (the
    # config's it does): carried on the deployment, so every error of its calls is
    # cleared of them.
    secrets: tuple[str, ...] = field(default=(), repr=False)


class StoredKeys(Protocol):
    """Virtual keys kept in the key store (`identity.virtual_keys.StoredVirtualKeys`)."""

    async def resolve(self, name: str) -> VirtualKey | None:
        """The stored key called `name`, or None when there is none it can use."""
        ...


def deployment_fields() -> tuple[str, ...]:
    """The `litellm_params` fields a virtual key may set besides its provider's settings:
    those a deployment made from them carries (`DeploymentResolver.from_params`)."""
    carried = {item.name for item in dataclasses.fields(Deployment)}
    return tuple(
        name
        for name in LiteLLMParams.__struct_fields__
        if name in carried and name not in _NOT_SETTABLE
    )


def provider_setting_table(provider: str) -> dict[str, Setting]:
    """The settings `provider` declares, by name."""
    return {setting.name: setting for setting in get_provider(provider).settings}


def secret_fields(provider: str) -> frozenset[str]:
    """The fields of a virtual key of `provider` that are secrets: never shown."""
    table = provider_setting_table(provider)
    return frozenset({"api_key", *(name for name, s in table.items() if s.secret)})


def shown_fields(provider: str) -> frozenset[str]:
    """The fields of a virtual key of `provider` that its view may show: its deployment
    fields that are not secrets, and the settings its provider marks shown (a region, a
    project), as /model/info shows a deployment."""
    return frozenset({*deployment_fields(), *shown_settings(provider)} - secret_fields(provider))


def virtual_key_params(provider: str, fields: Mapping[str, Any], where: str) -> LiteLLMParams:
    """How to call `provider` with a virtual key's `fields`, sorted as `litellm_params`
    are (its declared settings under `settings`). A ConfigError naming `where` when they
    do not fit."""
    sorted_fields = sorted_params({**fields, "model": "", "custom_llm_provider": provider}, where)
    try:
        return msgspec.convert(sorted_fields, LiteLLMParams)
    except msgspec.ValidationError as error:
        raise ConfigError(f"{where}: {error}") from None


class VirtualKeys:
    """Resolves virtual key names: the config's first, then the stored ones."""

    def __init__(self, config: Config) -> None:
        self._keys: dict[str, VirtualKey] = {}
        self._stored: StoredKeys | None = None
        for name, raw in config.virtual_keys.items():
            fields = dict(raw)
            provider = canonical_provider(str(fields.pop("provider", "")))
            if provider is None:
                raise ConfigError(
                    f"virtual_keys.{name}.provider: name a provider, for example openai"
                )
            params = virtual_key_params(provider, fields, f"virtual_keys.{name}")
            self._keys[name] = VirtualKey(provider, params)

    def attach(self, stored: StoredKeys) -> None:
        """Resolve names the config does not define from `stored` (the proxy's key store,
        known only once it is open)."""
        self._stored = stored

    def __contains__(self, name: str) -> bool:
        return name in self._keys

    def names(self) -> list[str]:
        """The virtual keys the config defines."""
        return sorted(self._keys)

    def configured(self, name: str) -> VirtualKey | None:
        """The config's virtual key called `name`, if any."""
        return self._keys.get(name)

    async def resolve(self, name: str) -> VirtualKey:
        """The virtual key called `name`, or a 400. The names are the operator's: a caller
        is not shown them, nor told whether a name it cannot use exists (a stored key
        that does not open answers as an unknown name; the operator's log says why)."""
        found = self._keys.get(name)
        if found is None and self._stored is not None:
            found = await self._stored.resolve(name)
        if found is None:
            shown = name if len(name) <= 80 else name[:80] + "..."
            raise BadRequestError(
                f"the virtual key {shown!r} is not available here; use a virtual key this "
                "gateway's operator gave you",
                param="x-portkey-virtual-key",
            )
        return found
