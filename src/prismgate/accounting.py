"""A call's budget on the request path: its price bound, held before it is routed, the
bound of an attempt's deployment held before that attempt goes upstream when it is
dearer, and the real cost paid after (a stream's when it is closed). The ledger behind
it is `identity.budgets.Budgets`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container, Sequence
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

__all__ = ["FirstBounds", "candidates", "deployment_bound", "within_budget"]

A = TypeVar("A")
Attempt = Callable[[Target], Awaitable[Served[A]]]
_IMAGE_REQUESTS = (ImageGenerationRequest, ImageEditRequest, ImageVariationRequest)
_ImageRequest = ImageGenerationRequest | ImageEditRequest | ImageVariationRequest


async def within_budget(
    budgets: Budgets | None,
    principal: Principal,
    name: str,
    request: msgspec.Struct,
    *,
    candidates: Callable[[], list[Deployment]],
    attempt: Attempt[A],
    route: Callable[[Attempt[A]], Awaitable[Served[A]]],
    first_bounds: FirstBounds | None = None,
) -> Served[A]:
    """`route(attempt)`, held against the caller's budgets: the dearest bound among
    `candidates()` (the deployments the call's model name routes to) before it is routed,
    a target's own bound before its attempt when it is not among them (a fallback to
    another group, a Portkey target), the real cost after (a stream's, when it is closed).
    `BudgetExceededError` before any upstream call that a budget cannot cover.
    `first_bounds`: where the first bound of calls to the model name `name` may be kept
    (then the deployments `candidates()` gives must depend on `name` alone)."""
    if budgets is None or not principal.holders:  # no key: nothing is held or counted
        return await route(attempt)
    hold = budgets.open(principal)
    if hold is None:
        return await route(attempt)
    if hold.capped:
        try:
            kept = None if first_bounds is None else first_bounds.find(name, request)
            found: Sequence[Deployment]
            if kept is None:
                # By id(): `found` keeps its deployments alive while the call runs.
                found = candidates()
                bounds = {
                    id(deployment): deployment_bound(deployment, request) for deployment in found
                }
                known = [bound for bound in bounds.values() if bound is not None]
                first = max(known) if known else None
                if first_bounds is not None:
                    first_bounds.keep(name, request, found, first)
                covered_ids: Container[int] = bounds
            else:
                found, covered_ids, first = kept
            if not hold.cover_now(first):  # the store must be asked: the one wait
                await hold.cover(first)
        except BaseException:
            hold.pay(0)
            raise
        plain, budgeted = attempt, hold
        more: dict[int, Deployment] = {}  # deployments covered since (kept alive here)

        async def covered(target: Target) -> Served[A]:
            # This deployment may cost more than the call's first bound (a fallback, a
            # Portkey target): its own bound is held before it is called.
            deployment = target.deployment
            more[id(deployment)] = deployment
            await budgeted.cover(deployment_bound(deployment, request))
            return await plain(target)

        def attempt(target: Target) -> Awaitable[Served[A]]:
            # The usual attempt, at a deployment already covered, is the plain one: no
            # coroutine of its own for every wait of the upstream call to pass through.
            key = id(target.deployment)
            if key in covered_ids or key in more:
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


class FirstBounds:
    """The first price bound of image calls (the dearest among the deployments their
    model name routes to), kept by model name, request type, size, quality and `n`: when
    no deployment prices the prompt or the input images, that bound depends on nothing
    else, and working it out again is most of what a budget costs a call. One per
    gateway: its deployments are fixed (a reloaded config makes another gateway)."""

    def __init__(self, limit: int = 1024) -> None:
        self._limit = limit  # names and sizes come from callers: emptied when full
        self._kept: dict[tuple[object, ...], _Kept] = {}

    def find(self, name: str, request: msgspec.Struct) -> _Kept | None:
        """What `keep` kept for a call like this one; None when nothing is."""
        if not isinstance(request, _IMAGE_REQUESTS):
            return None
        return self._kept.get(_alike(name, request))

    def keep(
        self, name: str, request: msgspec.Struct, found: Sequence[Deployment], first: float | None
    ) -> None:
        """Keep the first bound `first` of the deployments `found` for calls like this
        one, when none of them prices what differs between such calls."""
        if not isinstance(request, _IMAGE_REQUESTS) or not all(map(_priced_alike, found)):
            return
        if len(self._kept) >= self._limit:
            self._kept.clear()
        found = tuple(found)
        ids = frozenset(id(deployment) for deployment in found)
        self._kept[_alike(name, request)] = (found, ids, first)


# The deployments (kept alive), their ids, and their first bound.
_Kept = tuple[Sequence[Deployment], Container[int], float | None]


def _alike(name: str, request: _ImageRequest) -> tuple[object, ...]:
    return (name, type(request), request.size, getattr(request, "quality", None), request.n)


def _priced_alike(deployment: Deployment) -> bool:
    """Whether image calls of one size, quality and `n` have one bound on `deployment`."""
    info = deployment.info
    pricing = info.image.pricing if info is not None and info.image is not None else None
    return pricing is None or not (pricing.input_text_per_token or pricing.input_image_per_token)


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
