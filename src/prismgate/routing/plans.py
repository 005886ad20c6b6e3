"""Runs a Portkey config's plan: single, fallback, loadbalance and conditional branches
down to targets, each target with its own retries, timeout, overrides and cache.

A target is one of:
- a provider with the caller's key (`provider` + `api_key`: Portkey's direct mode, only
  for callers allowed to bring provider keys; only their credentials are used);
- a `virtual_key`: provider credentials kept by the gateway (`virtual_keys` in the config,
  or stored by an admin over the API; see `routing/virtual_keys.py`);
- neither: one of the gateway's model groups, named by `override_params.model` or the
  request's `model`, served with the group's strategy and cooldowns.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from prismgate.authority import CallerAuthority
from prismgate.errors import (
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    PrismgateError,
)
from prismgate.providers import canonical_provider
from prismgate.providers.base import Deployment
from prismgate.response_cache import CacheChoice
from prismgate.routing.deployments import CallerOverrides, DeploymentResolver
from prismgate.routing.portkey_config import (
    PROVIDER_OPTIONS,
    PlanBranch,
    PlanLeaf,
    PlanNode,
    choose_conditional,
    pick_weighted,
)
from prismgate.routing.router import AttemptLog, Outcome, Router, Target
from prismgate.routing.virtual_keys import VirtualKey, VirtualKeys
from prismgate.types.validation import convert_request

__all__ = [
    "Plan",
    "PlanRunner",
    "RunContext",
    "VirtualKeys",
    "leaves",
    "virtual_key_leaf",
    "with_overrides",
]

T = TypeVar("T")
PARAM = "x-portkey-config"


@dataclass(frozen=True, slots=True)
class Plan:
    """A parsed Portkey config for one call, and whose it is."""

    node: PlanNode
    # From the gateway's own `portkey_configs` (the operator's), not the caller's JSON.
    trusted: bool = False
    # The caller may bring provider keys and hosts (general_settings.allow_client_provider_keys).
    allow_provider_keys: bool = False


@dataclass(frozen=True, slots=True)
class RunContext:
    """What a plan needs to know of the call it routes."""

    model: str
    # Conditions read these: `metadata.<key>` and `params.<key>`.
    metadata: Mapping[str, Any]
    params: Mapping[str, Any]
    # The config came from the gateway's own file (not from the caller's header): its
    # keys, hosts and ambient credentials are the operator's.
    trusted: bool
    # The caller may bring provider keys and hosts (general_settings.allow_client_provider_keys).
    allow_provider_keys: bool
    idempotent: bool


@dataclass(slots=True)
class _Run:
    attempt: Callable[[Target], Awaitable[Any]]
    context: RunContext
    log: AttemptLog


class PlanRunner:
    """Executes Portkey plans on the gateway's router. Built once per gateway."""

    def __init__(
        self,
        router: Router,
        deployments: DeploymentResolver,
        virtual_keys: VirtualKeys,
        authority: CallerAuthority,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._router = router
        self._deployments = deployments
        self.virtual_keys = virtual_keys
        self._authority = authority
        self._rng = rng or random.Random()  # noqa: S311 (load spreading, not secrets)

    async def run(
        self, plan: PlanNode, attempt: Callable[[Target], Awaitable[T]], context: RunContext
    ) -> Outcome[T]:
        """Serve one call by `plan`. A failure raised from here carries its attempts.

        A caller's own config is checked whole before any target is called: its
        `override_params` may set request parameters only, and provider options belong
        only on targets that bring the caller's own provider key."""
        if not context.trusted:
            for leaf in leaves(plan):
                self._check_callers_leaf(leaf)
        run = _Run(attempt, context, AttemptLog())
        try:
            outcome: Outcome[T] = await self._node(plan, run)
        except PrismgateError as error:
            error.attempts = tuple(run.log.entries)
            raise
        return dataclasses.replace(
            outcome, attempts=tuple(run.log.entries), retries=run.log.retries
        )

    def _check_callers_leaf(self, leaf: PlanLeaf) -> None:
        self._authority.check(leaf.override_params, where=f"{PARAM}: {leaf.path}.override_params")
        if leaf.provider_options and (leaf.provider is None or leaf.api_key is None):
            option = next(iter(leaf.provider_options))
            raise BadRequestError(
                f"{PARAM}: {leaf.path} sets {option!r}, but provider options go only with "
                "your own provider key (provider and api_key); a virtual key or model group "
                "is configured by the gateway's operator",
                param=PARAM,
                code="setting_not_allowed",
            )

    async def _node(self, node: PlanNode, run: _Run) -> Outcome[Any]:
        if isinstance(node, PlanLeaf):
            return await self._leaf(node, run)
        if node.mode == "single":
            return await self._node(node.targets[0], run)
        if node.mode == "loadbalance":
            return await self._node(pick_weighted(node.targets, self._rng), run)
        if node.mode == "conditional":
            chosen = choose_conditional(
                node, metadata=run.context.metadata, params=run.context.params
            )
            return await self._node(chosen, run)
        return await self._fallback(node, run)

    async def _fallback(self, node: PlanBranch, run: _Run) -> Outcome[Any]:
        """Each target in turn, moving on when a failure's status is one of
        `on_status_codes` (any failure when none are given)."""
        codes = node.on_status_codes
        failure: PrismgateError | None = None
        for target in node.targets:
            try:
                return await self._node(target, run)
            except PrismgateError as error:
                failure = error
                if run.log.final or (codes is not None and error.status_code not in codes):
                    raise
        assert failure is not None  # a fallback branch has at least one target
        raise failure

    async def _leaf(self, leaf: PlanLeaf, run: _Run) -> Outcome[Any]:
        retry = leaf.retry
        cache = None
        if leaf.cache is not None:
            cache = CacheChoice(enabled=True, ttl=leaf.cache.max_age)
        overrides = dict(leaf.override_params)
        model = str(overrides.pop("model", None) or run.context.model)
        settings = {
            "timeout": leaf.request_timeout,
            "override_params": overrides,
            "cache": cache,
        }
        if leaf.provider is None and leaf.virtual_key is None:
            if leaf.provider_options:
                raise BadRequestError(
                    f"{PARAM}: {leaf.path} routes to model group {model!r}, whose deployments "
                    f"the gateway's config sets; {next(iter(leaf.provider_options))!r} applies "
                    "only to a target with a provider or virtual_key",
                    param=PARAM,
                )
            return await self._group(leaf, model, settings, run)
        # A stored virtual key is read (through its cache) before the target is built.
        key = None
        if leaf.virtual_key is not None:
            key = await self.virtual_keys.resolve(leaf.virtual_key)
        callers_own = not run.context.trusted and leaf.virtual_key is None
        target = Target(
            deployment=self._deployment(leaf, model, run.context, key),
            label=leaf.path or f"virtual_key:{leaf.virtual_key}",
            group=model,
            # A caller's own provider key, or a key stored over the API: only the
            # credentials it holds, never the gateway's environment or cloud identity.
            direct=callers_own or (key is not None and key.stored),
            # A caller's own provider target: every address it dials passes the rules.
            guarded=callers_own,
            timeout=leaf.request_timeout,
            override_params=overrides,
            cache=cache,
        )
        outcome = await self._router.run_target(
            target,
            run.attempt,
            retries=retry.attempts if retry else 0,
            idempotent=run.context.idempotent,
            on_status_codes=frozenset(retry.on_status_codes) if retry else None,
            use_retry_after=retry.use_retry_after_header if retry else False,
            log=run.log,
        )
        return dataclasses.replace(outcome, path=leaf.path or None)

    async def _group(
        self, leaf: PlanLeaf, model: str, settings: Mapping[str, Any], run: _Run
    ) -> Outcome[Any]:
        """A target that names one of the gateway's model groups."""
        group = self._deployments.group_of(model)
        if not self._router.serves(group):
            raise NotFoundError(
                f"{PARAM}: {leaf.path} routes to model {model!r}, which is not served here; "
                "name a model from /v1/models in override_params.model, or give the target "
                "a provider or virtual_key",
                param=PARAM,
                code="model_not_found",
            )

        async def attempt(target: Target) -> Any:
            return await run.attempt(dataclasses.replace(target, **settings))

        outcome = await self._router.run(
            group,
            attempt,
            idempotent=run.context.idempotent,
            num_retries=leaf.retry.attempts if leaf.retry else None,
            log=run.log,
        )
        return dataclasses.replace(outcome, path=leaf.path)

    def _deployment(
        self, leaf: PlanLeaf, model: str, context: RunContext, key: VirtualKey | None
    ) -> Deployment:
        """Where a provider or virtual-key target sends its call."""
        options = {PROVIDER_OPTIONS[k]: v for k, v in leaf.provider_options.items()}
        if key is not None:
            # Built as a model_list entry is: key, base, settings, timeouts and all; a saved
            # config's provider options (the operator's) over the key's own.
            params = msgspec.structs.replace(key.params, model=model)
            # A stored key's secrets ride on the deployment, for the call's redactor.
            deployment = dataclasses.replace(
                self._deployments.from_params(params), secrets=key.secrets
            )
            return _with_options(deployment, options)
        named = canonical_provider(leaf.provider or "")
        if named is None:
            raise BadRequestError(f"{PARAM}: {leaf.path}.provider: unknown provider", param=PARAM)
        if not context.trusted and not context.allow_provider_keys:
            raise PermissionDeniedError(
                f"{PARAM}: {leaf.path} names a provider with your own key, and this gateway "
                "does not take provider keys from callers; use a virtual_key or a model "
                "group, or set general_settings.allow_client_provider_keys: true",
                param=PARAM,
            )
        if not context.trusted and not leaf.api_key:
            raise BadRequestError(
                f"{PARAM}: {leaf.path} names provider {leaf.provider!r} without an api_key; "
                "give its api_key, or use a virtual_key",
                param=PARAM,
            )
        deployment = self._deployments.direct(
            model,
            CallerOverrides(
                api_key=leaf.api_key, api_base=leaf.custom_host, custom_llm_provider=named
            ),
        )
        return _with_options(deployment, options)


def _with_options(deployment: Deployment, options: Mapping[str, Any]) -> Deployment:
    """`deployment` with a Portkey target's provider options over its settings (an
    `api_version` option sets the deployment's own)."""
    if not options:
        return deployment
    settings = {**deployment.settings, **options}
    api_version = settings.pop("api_version", None) or deployment.api_version
    return dataclasses.replace(deployment, settings=settings, api_version=api_version)


def leaves(node: PlanNode) -> list[PlanLeaf]:
    """Every target of a plan, depth first."""
    if isinstance(node, PlanLeaf):
        return [node]
    return [leaf for child in node.targets for leaf in leaves(child)]


def virtual_key_leaf(name: str) -> PlanLeaf:
    """The plan of `x-portkey-virtual-key` alone: that key's provider, nothing else."""
    return PlanLeaf(
        path="",
        weight=1.0,
        name=None,
        provider=None,
        api_key=None,
        virtual_key=name,
        custom_host=None,
        override_params={},
        provider_options={},
        retry=None,
        cache=None,
        request_timeout=None,
    )


S = TypeVar("S", bound=msgspec.Struct)


def with_overrides(request: S, override_params: Mapping[str, Any]) -> tuple[S, dict[str, Any]]:
    """A Portkey target's `override_params` over the request: OpenAI fields replace the
    request's own (multipart edits included), the rest are provider parameters. `model`
    chose the target already."""
    if not override_params:
        return request, {}
    fields = request.__struct_fields__
    known = {k: v for k, v in override_params.items() if k in fields and k != "model"}
    extra = {k: v for k, v in override_params.items() if k not in fields}
    if known:
        request = convert_request(
            {**msgspec.structs.asdict(request), **known}, type(request), strict=False
        )
    return request, extra
