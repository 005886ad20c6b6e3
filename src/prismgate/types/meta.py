"""What the gateway did for a call: the `Served` envelope of an answer and its `CallMeta`.

The gateway returns `Served(value, meta)`; the proxy sends the meta as headers, the SDK
shows it as the answer's `_hidden_params` (LiteLLM's name), observers record it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

T = TypeVar("T")


class RateLimitStatus(msgspec.Struct, frozen=True, gc=False):
    """Where one of the caller's per-minute limits stands after a call, as OpenAI's
    `x-ratelimit-{limit,remaining,reset}-<unit>` headers say it. When the key, its team and
    its user all limit a unit, it is the tightest of them. The limit stores report each
    counter so (made for every limited call: in C, untracked by the cyclic collector)."""

    unit: str  # requests, tokens or images
    limit: int
    remaining: int
    reset: float  # seconds until all of the limit is back


class CallMeta(msgspec.Struct, kw_only=True, frozen=True):
    """How a call was served. SDK responses carry it as `_hidden_params` (LiteLLM's name);
    `meta["response_cost"]` works as it does for LiteLLM users."""

    provider: str
    model: str
    model_group: str
    api_base: str | None = None
    response_cost: float | None = None
    upstream_calls: int = 1
    dropped_params: tuple[str, ...] = ()
    adjusted: tuple[str, ...] = ()
    # Images the provider's safety filter withheld (the others were returned).
    filtered: int = 0
    trace_id: str | None = None
    metadata: dict[str, str] | None = None
    # Every try, as `<target>=<status>`, when there was more than one (or a config).
    attempts: tuple[str, ...] = ()
    retries: int = 0
    # Portkey configs: the target that answered (`config.targets[1]`).
    path: str | None = None
    # The response cache: HIT, MISS or REFRESH; None when caching is off for the call.
    cache_status: str | None = None
    # The caller's rate limits after this call (a key, team or user with limits).
    rate_limits: tuple[RateLimitStatus, ...] = ()

    def __getitem__(self, key: str) -> Any:
        if key not in self.__struct_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """dict-style access, for code written against LiteLLM's `_hidden_params` dict."""
        return getattr(self, key, default) if key in self.__struct_fields__ else default


@dataclass(frozen=True, slots=True)
class Served(Generic[T]):
    """A served call: the answer, and how it was served (provider, cost, attempts,
    adjustments, withheld images)."""

    value: T
    meta: CallMeta


class WithCallMeta:
    """Gives an answer type `_hidden_params`, the SDK's view of its `Served.meta` under
    LiteLLM's name. It lives in the instance `__dict__` (the Struct is made with
    `dict=True`), so it is never encoded."""

    __slots__ = ()

    @property
    def _hidden_params(self) -> CallMeta | None:
        meta: CallMeta | None = self.__dict__.get("_call_meta")
        return meta

    @_hidden_params.setter
    def _hidden_params(self, meta: CallMeta) -> None:
        self.__dict__["_call_meta"] = meta
