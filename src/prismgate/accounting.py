"""A call's budget on the request path: its price bound, held before it is routed, each
attempt's own bound held before that attempt goes upstream, and the real cost paid after
(a stream's when it is closed). The ledger behind it is `identity.budgets.Budgets`."""

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
from prismgate.types import ImageRequest, Served
from prismgate.types.chat import ChatCompletionRequest

__all__ = ["deployment_bound", "price_bound", "within_budget"]

A = TypeVar("A")
Attempt = Callable[[Target], Awaitable[Served[A]]]


async def within_budget(
    budgets: Budgets | None,
    principal: Principal,
    request: msgspec.Struct,
    *,
    bound: Callable[[], float | None],
    attempt: Attempt[A],
    route: Callable[[Attempt[A]], Awaitable[Served[A]]],
) -> Served[A]:
    """`route(attempt)`, held against the caller's budgets: `bound()` (dollars) before it
    is routed, each target's own bound before its attempt, the real cost after (a
    stream's, when it is closed). `BudgetExceededError` before any upstream call that a
    budget cannot cover."""
    hold: Hold | None = None
    if budgets is not None:
        hold = await budgets.hold(principal, bound)
    if hold is not None and hold.capped:
        plain, budgeted = attempt, hold

        async def attempt(target: Target) -> Served[A]:
            # This deployment may cost more than the call's first bound (a fallback, a
            # Portkey target): its own bound is held before it is called.
            await budgeted.cover(deployment_bound(target.deployment, request))
            return await plain(target)

    try:
        served = await route(attempt)
    except BaseException:
        if hold is not None:
            hold.pay(0)
        raise
    if hold is not None:
        if isinstance(served.value, RelayedStream):
            stream, paying = served.value, hold
            stream.at_close(lambda _: paying.pay(_stream_cost(stream, paying)))
        else:
            hold.pay(nanos(served.meta.response_cost or 0.0))
    return served


def price_bound(
    deployments: DeploymentResolver,
    name: str,
    request: msgspec.Struct,
    overrides: CallerOverrides | None,
) -> float | None:
    """The most a call can cost on the deployments its model name routes to (a fallback
    to another group holds its own bound when it is tried); None when unpriced."""
    try:
        pairs = deployments.deployments_of(deployments.group_of(name))
        found = [deployment for _, deployment in pairs]
    except KeyError:
        try:
            found = [deployments.resolve(name, overrides)]
        except PrismgateError:
            return None
    bounds = [deployment_bound(deployment, request) for deployment in found]
    known = [bound for bound in bounds if bound is not None]
    return max(known) if known else None


def deployment_bound(deployment: Deployment, request: msgspec.Struct) -> float | None:
    """The most `request` can cost on `deployment`; None when it is unpriced."""
    info = deployment.info
    if isinstance(request, ChatCompletionRequest):
        return chat_price_bound(info, request)
    assert isinstance(request, ImageRequest)
    return image_price_bound(info.image if info else None, request)


def _stream_cost(stream: RelayedStream, hold: Hold) -> Nanos:
    """What a closed stream pays: the usage it reported, else its price bound."""
    cost = stream.cost
    return hold.price if cost is None else nanos(cost)
