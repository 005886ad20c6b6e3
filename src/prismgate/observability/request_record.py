"""One answered proxy request, as the access log and the metrics both read it.

`RequestRecord` holds the HTTP facts (method, path, route, status, times, ids, key alias)
and, when the request made a gateway call, that call's facts, read once from its
`CallReport`: model group, deployment, images, cost, cache status, retries, fallbacks,
and the refusal that stopped it (a budget, a caller's limit, a deployment limit, every
deployment cooling down). It is one flat Struct: made per request, in C.
"""

from __future__ import annotations

import msgspec

from prismgate.errors import (
    BudgetExceededError,
    LimitReachedError,
    PrismgateError,
    RateLimitError,
    ServiceUnavailableError,
)
from prismgate.observers import CallReport
from prismgate.types import ImageResponse

__all__ = ["RequestRecord", "fallbacks_in", "refusal_of", "request_record"]


class RequestRecord(msgspec.Struct, frozen=True):
    """One answered request: its HTTP facts, then its gateway call's (None, or 0, for a
    request that made no call; `model_group` is set for every call). Made positionally,
    in this order (a keyword per field costs more, once per request)."""

    method: str
    path: str  # as asked, without the query string (not yet made safe)
    route: str | None  # the route's template; None when no route matched
    status: int
    ended_at: float  # Unix seconds
    seconds: float  # from the request's arrival to the end of its answer
    upstream: float | None  # seconds waiting on providers; None: nothing sent upstream
    request_id: str
    trace_id: str | None  # the caller's x-portkey-trace-id (not yet made safe)
    key_alias: str | None
    model_group: str | None = None  # as the caller named it
    provider: str | None = None
    deployment: str | None = None  # provider/model
    images: int = 0
    size: str | None = None
    quality: str | None = None
    cost: float | None = None
    cache: str | None = None  # HIT, MISS or REFRESH; None when caching was off
    retries: int = 0
    fallbacks: int = 0
    error: str | None = None  # the failure's code (or type)
    refusal: str | None = None  # see `refusal_of`


def request_record(  # noqa: PLR0917 (positional: once per request, keywords cost more)
    method: str,
    path: str,
    route: str | None,
    status: int,
    ended_at: float,
    seconds: float,
    upstream: float | None,
    request_id: str,
    trace_id: str | None,
    key_alias: str | None,
    report: CallReport | None,
) -> RequestRecord:
    """The record of one request, with the facts of its call when `report` is given."""
    if report is None:
        return RequestRecord(
            method, path, route, status, ended_at, seconds, upstream, request_id, trace_id,
            key_alias,
        )  # fmt: skip
    meta = report.meta
    attempts = report.attempts
    fallbacks = fallbacks_in(attempts) if len(attempts) > 1 else 0
    if meta is not None:
        value = report.value
        images = 0
        size = quality = None
        if isinstance(value, ImageResponse):
            images = len(value.data)
            size = value.size or getattr(report.request, "size", None)
            quality = value.quality or getattr(report.request, "quality", None)
        provider = meta.provider
        return RequestRecord(
            method, path, route, status, ended_at, seconds, upstream, request_id, trace_id,
            key_alias, meta.model_group, provider, f"{provider}/{meta.model}", images, size,
            quality, meta.response_cost, meta.cache_status, meta.retries, fallbacks,
        )  # fmt: skip
    failure = report.failure
    error = failure if isinstance(failure, PrismgateError) else None
    return RequestRecord(
        method, path, route, status, ended_at, seconds, upstream, request_id, trace_id,
        key_alias, report.model, None if error is None else error.provider, None, 0, None,
        None, None, None, max(0, len(attempts) - 1 - fallbacks), fallbacks,
        _failure_name(failure) if error is None else error.code or error.type,
        refusal_of(failure),
    )  # fmt: skip


def _failure_name(failure: BaseException | None) -> str | None:
    if failure is None:
        return None
    return "client_closed" if not isinstance(failure, Exception) else "internal_error"


def fallbacks_in(attempts: tuple[str, ...]) -> int:
    """How many times a call moved on to another target: another model group
    (`group@model_list[i]`, the router's labels), or another Portkey target
    (`config.targets[i]`). A retry on another deployment of the same group is not one."""
    if len(attempts) < 2:
        return 0
    moves = 0
    previous: str | None = None
    for entry in attempts:
        label = entry.rpartition("=")[0]
        target = label.partition("@")[0]
        if previous is not None and target != previous:
            moves += 1
        previous = target
    return moves


def refusal_of(failure: BaseException | None) -> str | None:
    """Why the gateway refused a call itself, before or instead of an upstream call:
    `budget`, a caller's own limit (`requests`, `tokens`, `images`, `parallel_requests`),
    `deployment_limit` (every deployment at its rpm/tpm), `cooldown` (every deployment
    cooling down); None for anything else (a provider's own 429 included)."""
    if isinstance(failure, BudgetExceededError):
        return "budget"
    if isinstance(failure, LimitReachedError):
        return failure.limit_type
    if isinstance(failure, RateLimitError) and failure.provider is None:
        return "deployment_limit"
    if isinstance(failure, ServiceUnavailableError) and failure.code == "deployments_cooling_down":
        return "cooldown"
    return None
