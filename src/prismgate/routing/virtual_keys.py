"""Virtual keys: a name standing for a provider and how to call it (Portkey's
`x-portkey-virtual-key`, and `virtual_key` in a Portkey config).

Two sources, looked up in this order: the config's `virtual_keys` (checked at startup),
then the ones an admin stored over the API (`identity/virtual_keys.py`, read through a
cache). A caller only names a key; what the key holds is the operator's (DESIGN.md §7).

What a virtual key may set is derived, never listed again: the deployment fields of
`litellm_params` that a deployment carries, and the settings its provider declares.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from prismgate.config import Config, LiteLLMParams, sorted_params
from prismgate.errors import BadRequestError, ConfigError, PrismgateError
from prismgate.observability.redaction import Redactor
from prismgate.providers import Setting, canonical_provider, get_provider
from prismgate.providers.base import Deployment

__all__ = [
    "StoredKeys",
    "VirtualKey",
    "VirtualKeys",
    "deployment_fields",
    "provider_setting_table",
    "redact_error",
    "secret_fields",
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
    # The secrets of a key stored over the API, which the gateway's redactor does not
    # know (the config's it does): removed from the errors of calls made with it.
    secrets: tuple[str, ...] = ()


class StoredKeys(Protocol):
    """Virtual keys kept in the key store (`identity.virtual_keys.StoredVirtualKeys`)."""

    async def resolve(self, name: str) -> VirtualKey | None:
        """The stored key called `name`, or None when there is none."""
        ...


def deployment_fields() -> tuple[str, ...]:
    """The `litellm_params` fields a virtual key may set besides its provider's settings:
    those a deployment made from them carries (`DeploymentResolver.from_params`)."""
    carried = {field.name for field in dataclasses.fields(Deployment)}
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


def virtual_key_params(provider: str, fields: Mapping[str, Any], where: str) -> LiteLLMParams:
    """How to call `provider` with a virtual key's `fields`, sorted as `litellm_params`
    are (its declared settings under `settings`). A ConfigError naming `where` when they
    do not fit."""
    sorted_fields = sorted_params({**fields, "model": "", "custom_llm_provider": provider}, where)
    try:
        return msgspec.convert(sorted_fields, LiteLLMParams)
    except msgspec.ValidationError as error:
        raise ConfigError(f"{where}: {error}") from None


def redact_error(error: PrismgateError, secrets: tuple[str, ...]) -> None:
    """Remove `secrets` from `error`'s messages, in place (an upstream that echoed a stored
    key; the gateway's own redactor knows only the config's)."""
    redact = Redactor(secrets)
    error.message = redact(error.message)
    error.args = (error.message, *error.args[1:])
    if error.upstream_message is not None:
        error.upstream_message = redact(error.upstream_message)


class VirtualKeys:
    """Resolves virtual key names: the config's first, then the stored ones."""

    def __init__(self, config: Config, stored: StoredKeys | None = None) -> None:
        self._keys: dict[str, VirtualKey] = {}
        self.stored = stored
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
        self.stored = stored

    def __contains__(self, name: str) -> bool:
        return name in self._keys

    def names(self) -> list[str]:
        """The virtual keys the config defines."""
        return sorted(self._keys)

    def configured(self, name: str) -> VirtualKey | None:
        """The config's virtual key called `name`, if any."""
        return self._keys.get(name)

    async def resolve(self, name: str) -> VirtualKey:
        """The virtual key called `name`, or a 400 (the names are the operator's: a
        caller is not shown them)."""
        found = self._keys.get(name)
        if found is None and self.stored is not None:
            found = await self.stored.resolve(name)
        if found is None:
            shown = name if len(name) <= 80 else name[:80] + "..."
            raise BadRequestError(
                f"unknown virtual key {shown!r}; use a virtual key this gateway's operator "
                "gave you",
                param="x-portkey-virtual-key",
            )
        return found
