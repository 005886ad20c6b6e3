"""Model names → deployments: the config's model groups, or `provider/model` directly."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

import msgspec

from prismgate.catalog import Catalog, ModelInfo, merge_model_info
from prismgate.config import Config, LiteLLMParams, ModelEntry, check_aliases
from prismgate.errors import BadRequestError, ConfigError, NotFoundError, PrismgateError
from prismgate.providers import get_provider, is_provider, provider_names
from prismgate.providers.base import Deployment
from prismgate.routing.strategies import Candidate

__all__ = ["CallerOverrides", "DeploymentResolver", "split_model"]


@dataclasses.dataclass(frozen=True, slots=True)
class CallerOverrides:
    """Where to send a call, as an SDK caller may say it (never taken from a proxy client)."""

    api_key: str | None = None
    api_base: str | None = None
    api_version: str | None = None
    custom_llm_provider: str | None = None
    # LiteLLM's per-call `model_info`: what this model can do, over the catalog's word.
    model_info: ModelInfo | None = None
    # Provider settings of a deployment the caller describes itself (Portkey's provider
    # option headers in direct mode: the caller's own account, region, project).
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def split_model(
    name: str, catalog: Catalog, custom_llm_provider: str | None = None
) -> tuple[str, str]:
    """`"<provider>/org/model"` → `("<provider>", "org/model")`; a bare catalogued name
    gets the provider the catalog lists for it."""
    if custom_llm_provider:
        if not is_provider(custom_llm_provider):
            raise BadRequestError(
                f"unknown provider {custom_llm_provider!r}; known: {', '.join(provider_names())}",
                param="custom_llm_provider",
            )
        return custom_llm_provider, name.removeprefix(custom_llm_provider + "/")
    prefix, _, rest = name.partition("/")
    if rest and is_provider(prefix):
        return prefix, rest
    info = catalog.lookup(name)
    if info is not None and info.provider is not None:
        return info.provider, name
    raise BadRequestError(
        f"cannot tell which provider serves {name!r}: name it as provider/model "
        f"(for example openai/{name}); providers: {', '.join(provider_names())}",
        param="model",
        code="model_not_found",
    )


class DeploymentResolver:
    """Finds the deployment for a model name. Built once from the config."""

    def __init__(self, config: Config, catalog: Catalog, *, direct_models: bool = True) -> None:
        self._catalog = catalog
        # Without a model_list, `provider/model` names are served directly (the SDK); the
        # proxy turns this off, so it serves exactly the configured model groups.
        self._direct_models = direct_models
        # Resolved once: a call only looks its group up.
        groups: dict[str, list[tuple[ModelEntry, Deployment]]] = {}
        candidates: dict[str, list[Candidate]] = {}
        for index, entry in enumerate(config.model_list):
            try:
                deployment = self._from_entry(entry)
            except PrismgateError as error:
                raise ConfigError(
                    f"model_list[{index}].litellm_params.model: {error.message}"
                ) from None
            try:  # the settings' types, checked once here rather than on a call
                get_provider(deployment.provider).typed_settings(deployment.settings)
            except PrismgateError as error:
                raise ConfigError(
                    f"model_list[{index}].litellm_params.{error.param}: {error.message}"
                ) from None
            groups.setdefault(entry.model_name, []).append((entry, deployment))
            candidates.setdefault(entry.model_name, []).append(_candidate(entry, deployment, index))
        self._groups = {name: tuple(pairs) for name, pairs in groups.items()}
        self._group_deployments = {
            name: tuple(deployment for _, deployment in pairs) for name, pairs in groups.items()
        }
        self.candidates: Mapping[str, tuple[Candidate, ...]] = {
            name: tuple(group) for name, group in candidates.items()
        }
        self._aliases, self.hidden_aliases = _aliases(config, self._groups)

    def group_of(self, name: str) -> str:
        """The model group a public name (or `model_group_alias`) stands for."""
        return self._aliases.get(name, name)

    @property
    def aliases(self) -> Mapping[str, str]:
        """`model_group_alias`: public alias → model group."""
        return self._aliases

    @property
    def groups(self) -> list[str]:
        """The public model names (model groups) the config serves, in config order."""
        return list(self._groups)

    def deployments_of(self, group: str) -> tuple[tuple[ModelEntry, Deployment], ...]:
        """Each config entry of `group` with the deployment it resolves to."""
        return self._groups[group]

    def group_deployments(self, group: str) -> tuple[Deployment, ...]:
        """The deployments of `group`, in config order (KeyError: no such group)."""
        return self._group_deployments[group]

    def resolve(self, name: str, overrides: CallerOverrides | None = None) -> Deployment:
        """The deployment for `name` (a group's first: what it is, not where a call goes;
        the router picks per call). With a model_list, only its groups are served."""
        group = self._groups.get(self._aliases.get(name, name))
        if group is not None:
            deployment = group[0][1]
        elif self._groups or not self._direct_models:
            raise NotFoundError(
                f"model {name!r} is not served here; available models: "
                f"{', '.join(sorted(self._groups)) or '(none configured)'}",
                param="model",
                code="model_not_found",
            )
        else:
            return self.direct(name, overrides)
        return _with_overrides(deployment, overrides) if overrides else deployment

    def direct(self, name: str, overrides: CallerOverrides | None = None) -> Deployment:
        """A deployment from the caller's own provider and credentials, ignoring the
        model_list (Portkey's direct-provider mode)."""
        custom = overrides.custom_llm_provider if overrides else None
        provider, model = split_model(name, self._catalog, custom)
        deployment = Deployment(
            provider=provider, model=model, info=self._info(provider, model, None)
        )
        return _with_overrides(deployment, overrides) if overrides else deployment

    def with_overrides(self, deployment: Deployment, overrides: CallerOverrides) -> Deployment:
        """`deployment` as an SDK caller pointed it (key, base, version, model_info)."""
        return _with_overrides(deployment, overrides)

    def _from_entry(self, entry: ModelEntry) -> Deployment:
        return self.from_params(entry.litellm_params, entry.model_info)

    def from_params(self, params: LiteLLMParams, model_info: ModelInfo | None = None) -> Deployment:
        """The deployment `litellm_params` describe (a model_list entry, a virtual key)."""
        provider, model = split_model(params.model, self._catalog, params.custom_llm_provider)
        return Deployment(
            provider=provider,
            model=model,
            api_key=params.api_key,
            api_base=params.api_base,
            api_version=params.api_version,
            timeout=params.timeout,
            connect_timeout=params.connect_timeout,
            drop_params=params.drop_params,
            settings=params.settings,
            params=params.provider_params,
            info=self._info(provider, model, model_info),
        )

    def _info(self, provider: str, model: str, override: ModelInfo | None) -> ModelInfo | None:
        base_model = override.base_model if override and override.base_model else model
        found = self._catalog.lookup(base_model, provider)
        if found is None:
            # Described from another provider's entry (`mock/dall-e-3`): that provider's
            # shutdown is not this one's.
            found = get_provider(provider).uncatalogued_info(base_model, self._catalog)
            if found is not None and found.shutdown_date is not None:
                found = msgspec.structs.replace(found, shutdown_date=None, replacement=None)
        return merge_model_info(found, override)


def _candidate(entry: ModelEntry, deployment: Deployment, index: int) -> Candidate:
    params = entry.litellm_params
    label = f"model_list[{index}]"
    return Candidate(
        # The same config gives the same ids on every instance, so Redis state is shared.
        id=f"{entry.model_name}|{label}|{deployment.provider}/{deployment.model}",
        label=label,
        group=entry.model_name,
        deployment=deployment,
        weight=params.weight,
        rpm=params.rpm,
        tpm=params.tpm,
        safe_to_retry=params.safe_to_retry,
    )


def _aliases(config: Config, groups: Collection[str]) -> tuple[dict[str, str], frozenset[str]]:
    """`model_group_alias` as alias → group, and the aliases marked hidden."""
    aliases: dict[str, str] = {}
    hidden: set[str] = set()
    check_aliases(groups, config.router_settings.model_group_alias)
    for alias, target in config.router_settings.model_group_alias.items():
        aliases[alias] = target if isinstance(target, str) else target.model
        if not isinstance(target, str) and target.hidden:
            hidden.add(alias)
    return aliases, frozenset(hidden)


def _with_overrides(deployment: Deployment, overrides: CallerOverrides) -> Deployment:
    return dataclasses.replace(
        deployment,
        api_key=overrides.api_key or deployment.api_key,
        api_base=overrides.api_base or deployment.api_base,
        api_version=overrides.api_version or deployment.api_version,
        settings={**deployment.settings, **overrides.settings},
        info=merge_model_info(deployment.info, overrides.model_info),
    )
