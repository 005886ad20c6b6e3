"""The checks a loaded config passes before anything is served (`load_config` runs them),
and what a reloaded one may not change (`restart_only_changes`)."""

from __future__ import annotations

import importlib.util
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from prismgate.config_keys import closest
from prismgate.errors import ConfigError

if TYPE_CHECKING:
    from prismgate.config import Config, GroupAlias

__all__ = [
    "S3_EXTRA_MISSING",
    "check_aliases",
    "check_backends",
    "check_callback_settings",
    "check_fallbacks",
    "check_metrics_access",
    "check_routing",
    "restart_only_changes",
]


# What a running gateway cannot take from a reloaded config: it built its stores, server,
# logs and callbacks from them. Everything else (the model list, routing, retries and
# timeouts, virtual keys, Portkey configs, environment variables) is reloaded.
_RESTART_ONLY_LITELLM = (
    "cache", "cache_params", "require_auth_for_metrics_endpoint", "json_logs", "callbacks",
    "success_callback", "failure_callback",
)  # fmt: skip


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """The settings `new` changes that take effect only when the gateway restarts."""
    changed = [
        f"general_settings.{name}"
        for name in old.general_settings.__struct_fields__
        if getattr(old.general_settings, name) != getattr(new.general_settings, name)
    ]
    changed += [
        f"litellm_settings.{name}"
        for name in _RESTART_ONLY_LITELLM
        if getattr(old.litellm_settings, name) != getattr(new.litellm_settings, name)
    ]
    if old.callback_settings != new.callback_settings:
        changed.append("callback_settings")
    return changed


# LiteLLM's strategies that prismgate does not have: named as such, not "corrected".
_LITELLM_ONLY_STRATEGIES = frozenset({"cost-based-routing"})


def check_routing(config: Config) -> None:
    """The routing strategy is one prismgate has, and every alias and fallback names a
    model group."""
    from prismgate.routing.strategies import STRATEGIES

    router = config.router_settings
    strategy = router.routing_strategy
    if strategy not in STRATEGIES:
        near = None if strategy in _LITELLM_ONLY_STRATEGIES else closest(strategy, STRATEGIES)
        hint = f"did you mean {near!r}? " if near else ""
        raise ConfigError(
            f"router_settings.routing_strategy: unknown strategy {strategy!r}; "
            f"{hint}prismgate has {', '.join(STRATEGIES)}"
        )
    groups = {entry.model_name for entry in config.model_list}
    check_aliases(groups, router.model_group_alias)
    tables: dict[str, Mapping[str, Sequence[str]]] = {
        f"{kind}[{index}]": entry
        for kind in ("fallbacks", "content_policy_fallbacks")
        for index, entry in enumerate(getattr(router, kind))
    }
    tables["default_fallbacks"] = {"": router.default_fallbacks}
    check_fallbacks(groups, tables)


def check_aliases(groups: Collection[str], aliases: Mapping[str, str | GroupAlias]) -> None:
    """A ConfigError naming the first `model_group_alias` whose target is not one of
    `groups` (the model_list's model names), with the group it most likely meant."""
    for alias, target in aliases.items():
        group = target if isinstance(target, str) else target.model
        if group not in groups:
            raise ConfigError(
                f"router_settings.model_group_alias.{alias}: {group!r} is not a model_name "
                f"in model_list{_did_you_mean(group, groups)}"
            )


def check_fallbacks(
    groups: Collection[str], tables: Mapping[str, Mapping[str, Sequence[str]]]
) -> None:
    """A ConfigError naming the first fallback, source or target, that is not one of
    `groups`, with the group it most likely meant. `tables` are keyed by where the config
    holds them (`fallbacks[0]`, `default_fallbacks`); each maps a group to its fallbacks
    (`""` to `default_fallbacks`, which have no source group)."""
    for where, table in tables.items():
        for source, targets in table.items():
            for name in (source, *targets):
                if name and name not in groups:
                    raise ConfigError(
                        f"router_settings.{where}: {name!r} is not a model_name in "
                        f"model_list{_did_you_mean(name, groups)}"
                    )


def _did_you_mean(name: str, groups: Collection[str]) -> str:
    near = closest(name, groups)
    return f"; did you mean {near!r}?" if near else ""


# The backends each store setting has code behind; anything else fails at load time,
# never at the first request.
_CACHE_TYPES = ("local", "redis")
_IMAGE_STORE_TYPES = ("local", "s3")
S3_EXTRA_MISSING = (
    "general_settings.image_store.type: s3 needs aiobotocore, which is not installed: "
    "pip install 'prismgate[s3]'"
)


def check_backends(config: Config) -> None:
    """A ConfigError for a store backend this version has no code for, or whose library
    is not installed."""
    store = config.general_settings.image_store
    if store.type not in _IMAGE_STORE_TYPES:
        raise ConfigError(
            f"general_settings.image_store.type: {store.type!r} is not available in this "
            f"version; use {' or '.join(repr(t) for t in _IMAGE_STORE_TYPES)}"
        )
    if store.type == "s3" and importlib.util.find_spec("aiobotocore") is None:
        raise ConfigError(S3_EXTRA_MISSING)
    cache_type = config.litellm_settings.cache_params.get("type", "local")
    if cache_type not in _CACHE_TYPES:
        raise ConfigError(
            f"litellm_settings.cache_params.type: {cache_type!r} is not supported; use "
            f"{' or '.join(repr(t) for t in _CACHE_TYPES)}"
        )


def check_callback_settings(config: Config, environ: Mapping[str, str]) -> None:
    """A ConfigError for a callback prismgate does not have, or one set up wrong."""
    settings = config.litellm_settings
    named = settings.callbacks or settings.success_callback or settings.failure_callback
    if named or config.callback_settings:
        # Imported only for a config that names callbacks: most do not.
        from prismgate.observability.callbacks import check_callbacks

        check_callbacks(config, environ)


def check_metrics_access(config: Config) -> None:
    """LiteLLM's switch for a key on /metrics cannot go with metrics that are open."""
    if (
        config.litellm_settings.require_auth_for_metrics_endpoint
        and config.general_settings.metrics_access == "open"
    ):
        raise ConfigError(
            "litellm_settings.require_auth_for_metrics_endpoint asks for a key on /metrics, "
            "and general_settings.metrics_access: open opens it; keep one of them"
        )
