"""The router: a model group → the deployment that serves this call, with retries,
cooldowns and fallbacks (LiteLLM's `router_settings`).

A call runs as attempts. Each attempt goes to one deployment, picked by the group's
strategy among those not cooling down and under their `rpm` / `tpm` limits. A retryable
failure is tried again (on another deployment at once when the group has one, else after
a backoff or the provider's Retry-After), at most `num_retries` times and within the
retry budget; then the group's fallbacks are tried, each with the same rules. Every
attempt is logged as `<label>=<status>` and reported (`x-prismgate-attempts`).

Cooldowns exist to steer calls to a group's other deployments, so a group of one is never
cooled down: its failures reach the caller as the provider answered them. When every
deployment of a larger group is cooling down, the answer is a 503 (the gateway has no
deployment to offer: not the caller's rate limit) with a Retry-After for the soonest end
of a cooldown and the upstream failure that caused it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prismgate.config import Config, check_fallbacks
from prismgate.errors import (
    PrismgateError,
    RateLimitError,
    ServiceUnavailableError,
)
from prismgate.providers.base import Deployment
from prismgate.response_cache import CacheChoice
from prismgate.routing.retries import (
    RetryBudget,
    RetrySettings,
    backoff_delay,
    falls_back,
    is_content_refusal,
    is_retryable,
    may_have_been_accepted,
)
from prismgate.routing.strategies import Candidate, LocalLoad, Strategy, choose, strategy_name
from prismgate.storage import Cooldown, RoutingState, Usage

__all__ = [
    "AttemptLog",
    "DeploymentStatus",
    "Outcome",
    "Router",
    "RouterPolicy",
    "Target",
    "router_policy",
]

log = logging.getLogger("prismgate.routing")

T = TypeVar("T")
# A 429's Retry-After cools a deployment down for at most this long.
MAX_COOLDOWN = 600.0
FAILURE_WINDOW = 60.0
# A cooldown's reason (the upstream failure) is quoted to callers: a message, not a body.
MAX_REASON_CHARS = 300


@dataclass(frozen=True, slots=True)
class Target:
    """One concrete place to send a call, as the router hands it to an attempt."""

    deployment: Deployment
    # For people and headers: `dall-e-3@model_list[0]`, `config.targets[1]`.
    label: str
    group: str
    # Per-target settings (Portkey configs): request timeout in seconds, body overrides,
    # the response cache (None: the gateway's default).
    timeout: float | None = None
    override_params: Mapping[str, Any] = field(default_factory=dict)
    cache: CacheChoice | None = None
    # Only the credentials the deployment holds (a caller's own in direct provider mode,
    # or a virtual key stored over the API): never the environment's, nor the gateway's
    # cloud identity; and a caller-chosen host that must pass the address rules when
    # dialled.
    direct: bool = False
    guarded: bool = False
    # The call described this deployment itself (an SDK call naming `provider/model`), so
    # its keywords may configure it; a config's deployments are the operator's alone.
    described_by_call: bool = False


@dataclass(slots=True)
class AttemptLog:
    """What a call tried: one `<label>=<status>` entry per attempt, and the retries."""

    entries: list[str] = field(default_factory=list)
    retries: int = 0
    # Set when a failure may have been served upstream: nothing may be tried again.
    final: bool = False
    # The last failure came after every retry it was allowed (Portkey reports -1).
    exhausted: bool = False

    def add(self, label: str, status: int) -> None:
        self.entries.append(f"{label}={status}")


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """A call's result, and how it was reached."""

    value: T
    target: Target
    attempts: tuple[str, ...]
    retries: int
    # Portkey configs: the target that answered, as `config.targets[1]`.
    path: str | None = None


@dataclass(frozen=True, slots=True)
class RouterPolicy:
    """The routing settings a router is built from (LiteLLM's names)."""

    strategy: Strategy = "simple-shuffle"
    num_retries: int = 2
    allowed_fails: int = 3
    cooldown_time: float = 5.0
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    content_policy_fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default_fallbacks: tuple[str, ...] = ()
    retries: RetrySettings = field(default_factory=RetrySettings)


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """Where one deployment stands now, for people (the console, `GET /model/status`)."""

    id: str
    group: str
    label: str
    provider: str
    model: str
    # A cooldown is shared by every instance on one routing state; None: not cooling.
    cooldown: Cooldown | None
    # Requests (and, where a tpm limit or the usage strategy reads them, tokens) this
    # minute; None where nothing counts them (no rpm/tpm limit, not the usage strategy).
    usage: Usage | None
    # This process's calls in flight and latency average (seconds), kept only by the
    # least-busy and latency-based strategies; None otherwise.
    in_flight: int | None
    latency: float | None


@dataclass(frozen=True, slots=True)
class _Call(Generic[T]):
    attempt: Callable[[Target], Awaitable[T]]
    tokens: Callable[[T], int]
    # The caller sent an idempotency key: a call that may have been served can be repeated.
    idempotent: bool
    log: AttemptLog
    retries: int = 0


class Router:
    """Runs calls against the config's model groups. Built once per gateway."""

    def __init__(
        self,
        groups: Mapping[str, Sequence[Candidate]],
        policy: RouterPolicy,
        state: RoutingState,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        check_fallbacks(
            groups,
            {
                "fallbacks": policy.fallbacks,
                "content_policy_fallbacks": policy.content_policy_fallbacks,
                "default_fallbacks": {"": policy.default_fallbacks},
            },
        )
        self._groups = {name: tuple(candidates) for name, candidates in groups.items()}
        self._policy = policy
        self._state = state
        self._rng = rng or random.Random()  # noqa: S311 (load spreading, not secrets)
        self._sleep = sleep
        self._load = LocalLoad()
        self._budgets = {name: RetryBudget(policy.retries) for name in self._groups}
        self._targets = {
            c.id: Target(deployment=c.deployment, label=f"{c.group}@{c.label}", group=c.group)
            for candidates in self._groups.values()
            for c in candidates
        }
        # Work done per call only where something reads it: usage for tpm limits and the
        # usage strategy, calls in flight and latency for the two strategies that use them.
        self._reads_usage = policy.strategy == "usage-based-routing" or any(
            c.tpm is not None for candidates in self._groups.values() for c in candidates
        )
        self._tracks_load = policy.strategy in ("least-busy", "latency-based-routing")
        self._ids = {name: [c.id for c in group] for name, group in self._groups.items()}
        # Deployments that are their group's only one: never cooled down.
        self._alone = frozenset(g[0].id for g in self._groups.values() if len(g) == 1)
        # The latest upstream failure seen here per group, quoted when all are cooling
        # (a cooldown's own reason stands in when another instance saw the failure).
        self._last_failure: dict[str, str] = {}
        # Groups whose calls are counted (rpm/tpm limits, or the usage strategy).
        self._counted = frozenset(
            name
            for name, group in self._groups.items()
            if policy.strategy == "usage-based-routing" or any(c.limited for c in group)
        )

    @property
    def state(self) -> RoutingState:
        """Cooldowns and usage counters (in-process, or shared through Redis)."""
        return self._state

    def serves(self, group: str) -> bool:
        """Whether `group` is one of the config's model groups."""
        return group in self._groups

    async def status(self) -> list[DeploymentStatus]:
        """Every deployment's cooldown, usage, calls in flight and latency, by model group
        (each group's in config order): two reads of the routing state, however many
        deployments there are."""
        ids = [c.id for candidates in self._groups.values() for c in candidates]
        cooling = await self._state.cooldowns(ids)
        counts_all = self._policy.strategy == "usage-based-routing"
        counted = [
            c.id for group in self._groups.values() for c in group if c.limited or counts_all
        ]
        usage = await self._state.usage(counted) if counted else {}
        load = self._load if self._tracks_load else None
        return [
            DeploymentStatus(
                id=c.id,
                group=c.group,
                label=c.label,
                provider=c.deployment.provider,
                model=c.deployment.model,
                cooldown=cooling.get(c.id),
                usage=usage.get(c.id),
                in_flight=None if load is None else load.in_flight.get(c.id, 0),
                latency=None if load is None else load.latency.get(c.id),
            )
            for candidates in self._groups.values()
            for c in candidates
        ]

    async def run(
        self,
        group: str,
        attempt: Callable[[Target], Awaitable[T]],
        *,
        tokens: Callable[[T], int] = lambda _: 0,
        idempotent: bool = False,
        num_retries: int | None = None,
        log: AttemptLog | None = None,
    ) -> Outcome[T]:
        """Serve one call from `group`, its retries and its fallbacks. A failure raised
        from here carries what was tried in `error.attempts`. `num_retries` replaces the
        config's for this call; `log` continues a log (a Portkey plan's)."""
        retries = self._policy.num_retries if num_retries is None else num_retries
        call = _Call(attempt, tokens, idempotent, log or AttemptLog(), retries)
        return await _reported(call, self._with_fallbacks(group, call))

    async def run_target(
        self,
        target: Target,
        attempt: Callable[[Target], Awaitable[T]],
        *,
        retries: int,
        idempotent: bool,
        on_status_codes: frozenset[int] | None = None,
        use_retry_after: bool = True,
        log: AttemptLog | None = None,
    ) -> Outcome[T]:
        """Serve one call from one target (a direct provider call, or a Portkey
        target): retried `retries` times on retryable failures, or on `on_status_codes`
        when given. No cooldowns: the target may carry the caller's own key."""
        call = _Call(attempt, lambda _: 0, idempotent, log or AttemptLog())
        return await _reported(
            call, self._on_target(target, call, retries, on_status_codes, use_retry_after)
        )

    async def _on_target(
        self,
        target: Target,
        call: _Call[T],
        retries: int,
        on_status_codes: frozenset[int] | None,
        use_retry_after: bool,
    ) -> tuple[T, Target]:
        for retry in range(retries + 1):
            try:
                value = await call.attempt(target)
            except PrismgateError as error:
                call.log.add(target.label, error.status_code)
                if may_have_been_accepted(error) and not call.idempotent:
                    call.log.final = True
                    raise
                wanted = (
                    is_retryable(error)
                    if on_status_codes is None
                    else error.status_code in on_status_codes
                )
                if not wanted or retry == retries:
                    call.log.exhausted = wanted and retries > 0
                    raise
                hint = error.retry_after if use_retry_after else None
                if hint is not None and hint > self._policy.retries.max_retry_after:
                    raise
                call.log.retries += 1
                await self._sleep(backoff_delay(retry, hint, self._policy.retries, self._rng))
            else:
                call.log.add(target.label, 200)
                return value, target
        raise AssertionError("unreachable: the last retry raises or returns")

    async def _with_fallbacks(self, group: str, call: _Call[T]) -> tuple[T, Target]:
        try:
            return await self._in_group(group, call)
        except PrismgateError as first:
            chain = () if call.log.final else self._fallbacks(group, first)
            if not chain:
                raise
            error = first
        for fallback in chain:
            log.info("model group %s failed (%s); falling back to %s", group, error, fallback)
            try:
                return await self._in_group(fallback, call)
            except PrismgateError as failed:
                error = failed
                if call.log.final or not (falls_back(failed) or is_content_refusal(failed)):
                    raise
        raise error

    def _fallbacks(self, group: str, error: PrismgateError) -> tuple[str, ...]:
        policy = self._policy
        if is_content_refusal(error):
            return policy.content_policy_fallbacks.get(group, ())
        if not falls_back(error):
            return ()
        return policy.fallbacks.get(group, policy.default_fallbacks)

    async def _in_group(self, group: str, call: _Call[T]) -> tuple[T, Target]:
        candidates = self._groups[group]
        budget = self._budgets[group]
        budget.note_request()
        failed: set[str] = set()
        retries = call.retries
        last: PrismgateError | None = None
        # Deployments this call waited for (their Retry-After): their own cooldown, which
        # that failure started, does not keep this call from them.
        waited: set[str] = set()
        for retry in range(retries + 1):
            try:
                candidate = await self._pick(group, candidates, avoid=failed, waited=waited)
            except (RateLimitError, ServiceUnavailableError):
                if last is None:
                    raise
                raise last from None  # the provider's own failure says more
            try:
                return await self._attempt(candidate, call), self._targets[candidate.id]
            except PrismgateError as error:
                if may_have_been_accepted(error) and not (
                    call.idempotent or candidate.safe_to_retry
                ):
                    call.log.final = True
                    raise
                if not is_retryable(error) or retry == retries:
                    call.log.exhausted = is_retryable(error) and retries > 0
                    raise
                last = error
                failed.add(candidate.id)
                another = len(failed) < len(candidates)
                wait = 0.0 if another else self._wait(retry, error)
                if wait is None or not budget.try_spend():
                    raise
                call.log.retries += 1
                if wait:
                    await self._sleep(wait)
                    waited = set(failed)
        raise AssertionError("unreachable: the last retry raises or returns")

    def _wait(self, retry: int, error: PrismgateError) -> float | None:
        """How long to wait before trying the same deployment again; None: not at all
        (its Retry-After is longer than we are willing to hold the caller)."""
        settings = self._policy.retries
        if error.retry_after is not None and error.retry_after > settings.max_retry_after:
            return None
        return backoff_delay(retry, error.retry_after, settings, self._rng)

    async def _pick(
        self,
        group: str,
        candidates: Sequence[Candidate],
        *,
        avoid: set[str],
        waited: set[str],
    ) -> Candidate:
        """The deployment for the next attempt: not cooling down (unless this call waited
        for it), under its limits, and not one that just failed when another is there."""
        if len(candidates) == 1:
            # A group of one is never cooled down (nothing to steer to): nothing to read.
            if group not in self._counted:
                return candidates[0]  # the common case: nothing to weigh either
            available = list(candidates)
        else:
            cooling = await self._state.cooled_down(self._ids[group])
            available = [c for c in candidates if c.id not in cooling or c.id in waited]
            if not available:
                available = await self._cooled_off(group, candidates)
        preferred = [c for c in available if c.id not in avoid] or available
        usage: Mapping[str, Usage] = {}
        if self._reads_usage:
            usage = await self._state.usage([c.id for c in preferred])
        counts_all = self._policy.strategy == "usage-based-routing"
        order = choose(
            self._policy.strategy, preferred, load=self._load, usage=usage, rng=self._rng
        )
        for candidate in order:
            if candidate.tpm is not None and usage[candidate.id].tokens >= candidate.tpm:
                continue
            if (candidate.limited or counts_all) and not await self._state.take_request(
                candidate.id, candidate.rpm
            ):
                continue
            return candidate
        wait = 60 - time.time() % 60
        raise RateLimitError(
            f"every deployment of {group!r} is at its rpm/tpm limit for this minute; "
            f"try again in {wait:.0f} s",
            retry_after=wait,
        )

    async def _cooled_off(self, group: str, candidates: Sequence[Candidate]) -> list[Candidate]:
        """The deployments whose cooldown ended since it was read; when none has, a 503
        that says when the first one ends and which upstream failure caused it."""
        cooling = await self._state.cooldowns([c.id for c in candidates])
        ended = [c for c in candidates if c.id not in cooling]
        if ended:
            return ended
        first = min(cooling.values(), key=lambda cooldown: cooldown.left)
        soonest = first.left
        latest = self._last_failure.get(group) or first.reason
        cause = f" The last upstream error: {latest}" if latest else ""
        raise ServiceUnavailableError(
            f"every deployment of {group!r} is cooling down after upstream failures; try "
            f"again in {math.ceil(soonest)} s.{cause}",
            code="deployments_cooling_down",
            retry_after=soonest,
        )

    async def _attempt(self, candidate: Candidate, call: _Call[T]) -> T:
        target = self._targets[candidate.id]
        if not self._tracks_load:
            try:
                value = await call.attempt(target)
            except PrismgateError as error:
                call.log.add(target.label, error.status_code)
                await self._note_failure(candidate, error)
                raise
        else:
            value = await self._measured(candidate, target, call)
        call.log.add(target.label, 200)
        if self._reads_usage and (spent := call.tokens(value)):
            await self._state.add_tokens(candidate.id, spent)
        return value

    async def _measured(self, candidate: Candidate, target: Target, call: _Call[T]) -> T:
        """An attempt with its calls in flight and its latency noted (least-busy and
        latency-based routing read them)."""
        self._load.started(candidate.id)
        started = time.monotonic()
        latency: float | None = None
        try:
            value = await call.attempt(target)
            latency = time.monotonic() - started
        except PrismgateError as error:
            call.log.add(target.label, error.status_code)
            await self._note_failure(candidate, error)
            raise
        finally:
            self._load.finished(candidate.id, latency)
        return value

    async def _note_failure(self, candidate: Candidate, error: PrismgateError) -> None:
        """Cool a deployment down: at once for a provider's 429 (for its Retry-After) or
        a broken setup (401/403/404/408); after `allowed_fails` for other faults. Never
        a group's only deployment: its failures are answered as they are."""
        if error.provider is None:
            return  # the gateway's own refusal: nothing wrong with the deployment
        if candidate.id in self._alone:
            return
        policy = self._policy
        status = error.status_code
        reason = f"{error.message} (status {status})"[:MAX_REASON_CHARS]
        self._last_failure[candidate.group] = reason
        if status == 429:
            seconds = min(error.retry_after or policy.cooldown_time, MAX_COOLDOWN)
            await self._state.cool_down(candidate.id, seconds, reason)
        elif status in (401, 403, 404, 408):
            await self._state.cool_down(candidate.id, policy.cooldown_time, reason)
        elif is_retryable(error):
            cooled = await self._state.record_failure(
                candidate.id,
                allowed_fails=policy.allowed_fails,
                window=FAILURE_WINDOW,
                cooldown=policy.cooldown_time,
                reason=reason,
            )
            if cooled:
                log.warning(
                    "%s@%s is cooling down for %g s after %d failures",
                    candidate.group,
                    candidate.label,
                    policy.cooldown_time,
                    policy.allowed_fails + 1,
                )


async def _reported(call: _Call[T], served: Awaitable[tuple[T, Target]]) -> Outcome[T]:
    """The outcome of a call, with what it tried; a failure carries the same in
    `error.attempts`."""
    try:
        value, target = await served
    except PrismgateError as error:
        error.attempts = tuple(call.log.entries)
        error.retries_exhausted = call.log.exhausted
        raise
    return Outcome(value, target, tuple(call.log.entries), call.log.retries)


def router_policy(config: Config) -> RouterPolicy:
    """The router's settings from LiteLLM's `router_settings` and `litellm_settings`."""
    router = config.router_settings
    retries = config.general_settings.retries

    def table(entries: list[dict[str, list[str]]]) -> dict[str, tuple[str, ...]]:
        return {group: tuple(targets) for entry in entries for group, targets in entry.items()}

    return RouterPolicy(
        strategy=strategy_name(router.routing_strategy),
        num_retries=_first(router.num_retries, config.litellm_settings.num_retries, 2),
        allowed_fails=_first(router.allowed_fails, 3),
        cooldown_time=_first(router.cooldown_time, 5.0),
        fallbacks=table(router.fallbacks),
        content_policy_fallbacks=table(router.content_policy_fallbacks),
        default_fallbacks=tuple(router.default_fallbacks),
        retries=RetrySettings(
            base_delay=retries.base_delay,
            max_delay=retries.max_delay,
            max_retry_after=retries.max_retry_after,
            budget_ratio=retries.budget_ratio,
            budget_floor=retries.budget_floor,
        ),
    )


def _first(*values: Any) -> Any:
    return next(value for value in values if value is not None)
