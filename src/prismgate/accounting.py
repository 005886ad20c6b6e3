"""A call's budget on the request path: its price bound, held before it is routed, the
bound of an attempt's deployment held before that attempt goes upstream when it is
dearer, and the real cost paid after (a stream's when it is closed). The ledger behind
it is `identity.budgets.Budgets`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from prismgate.cost import chat_price_bound, image_price_bound
from prismgate.errors import PrismgateError
from prismgate.identity.budgets import Budgets, Hold
from prismgate.identity.principal import Principal
from prismgate.providers.base import Deployment
from prismgate.routing.deployments import CallerOverrides, DeploymentResolver
from prismgate.routing.router import Target
from prismgate.storage.records import Nanos, nanos
from prismgate.streaming import RelayedStream
from prismgate.types import (
    ImageEditRequest,
    ImageGenerationRequest,
    ImageVariationRequest,
    Served,
)
from prismgate.types.chat import ChatCompletionRequest

__all__ = ["candidates", "deployment_bound", "within_budget"]

A = TypeVar("A")
Attempt = Callable[[Target], Awaitable[Served[A]]]
_IMAGE_REQUESTS = (ImageGenerationRequest, ImageEditRequest, ImageVariationRequest)


async def within_budget(
    budgets: Budgets | None,
    principal: Principal,
    request: msgspec.Struct,
    *,
    candidates: Callable[[], list[Deployment]],
    attempt: Attempt[A],
    route: Callable[[Attempt[A]], Awaitable[Served[A]]],
) -> Served[A]:
    """`route(attempt)`, held against the caller's budgets: the dearest bound among
    `candidates()` (the deployments the call's model name routes to) before it is routed,
    a target's own bound before its attempt when it is not among them (a fallback to
    another group, a Portkey target), the real cost after (a stream's, when it is closed).
    `BudgetExceededError` before any upstream call that a budget cannot cover."""
    if budgets is None or not principal.holders:  # no key: nothing is held or counted
        return await route(attempt)
    hold = budgets.open(principal)
    if hold is None:
        return await route(attempt)
    if hold.capped:
        try:
            # By id(): `found` keeps its deployments alive while the call runs.
            found = candidates()
            bounds = {id(deployment): deployment_bound(deployment, request) for deployment in found}
            known = [bound for bound in bounds.values() if bound is not None]
            first = max(known) if known else None
            if not hold.cover_now(first):  # the store must be asked: the one wait
                await hold.cover(first)
        except BaseException:
            hold.pay(0)
            raise
        plain, budgeted = attempt, hold

        async def covered(target: Target) -> Served[A]:
            # This deployment may cost more than the call's first bound (a fallback, a
            # Portkey target): its own bound is held before it is called.
            deployment = target.deployment
            found.append(deployment)
            bounds[id(deployment)] = bound = deployment_bound(deployment, request)
            await budgeted.cover(bound)
            return await plain(target)

        def attempt(target: Target) -> Awaitable[Served[A]]:
            # The usual attempt, at a deployment already covered, is the plain one: no
            # coroutine of its own for every wait of the upstream call to pass through.
            if id(target.deployment) in bounds:
                return plain(target)
            return covered(target)

    try:
        served = await route(attempt)
    except BaseException:
        hold.pay(0)
        raise
    if isinstance(served.value, RelayedStream):
        stream, paying = served.value, hold
        stream.at_close(lambda _: paying.pay(_stream_cost(stream, paying)))
    else:
        hold.pay(nanos(served.meta.response_cost or 0.0))
    return served


def candidates(
    deployments: DeploymentResolver, name: str, overrides: CallerOverrides | None
) -> list[Deployment]:
    """The deployments a call's model name routes to: its group's, or the one it names
    directly; none when it names nothing servable (the call fails before it costs)."""
    try:
        return list(deployments.group_deployments(deployments.group_of(name)))
    except KeyError:
        try:
            return [deployments.resolve(name, overrides)]
        except PrismgateError:
            return []


def deployment_bound(deployment: Deployment, request: msgspec.Struct) -> float | None:
    """The most `request` can cost on `deployment`; None when it is unpriced."""
    info = deployment.info
    if isinstance(request, ChatCompletionRequest):
        return chat_price_bound(info, request)
    assert isinstance(request, _IMAGE_REQUESTS)  # a tuple: isinstance of a union costs more
    return image_price_bound(info.image if info else None, request)


def _stream_cost(stream: RelayedStream, hold: Hold) -> Nanos:
    """What a closed stream pays: the usage it reported, else its price bound."""
    cost = stream.cost
    return hold.price if cost is None else nanos(cost)
