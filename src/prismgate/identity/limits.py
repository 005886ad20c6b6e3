"""Callers' limits: requests, tokens and images per minute, and calls in flight, for a
key, its team and its user, shared by every instance on one Redis.

    async with limiter.admit(principal, images=n) as admission:   # a 429 when refused
        served = await ...                                         # the call
        return admission.served(served, tokens_of)                 # tokens counted

| limit                   | counts                  | taken                                    |
|-------------------------|-------------------------|------------------------------------------|
| `rpm_limit`             | requests                | when the call is let in                  |
| `ipm_limit`             | images asked for (`n`)  | when the call is let in (image calls)    |
| `tpm_limit`             | tokens the answers used | after the call; a call is let in while   |
|                         |                         | at least one token of the minute is left |
| `max_parallel_requests` | calls in flight         | from let in until it ends (a stream:     |
|                         |                         | until it is closed)                      |

Per-minute limits are token buckets: a limit of L lets L in at once, then one more every
60/L s, so a refusal says to the millisecond when to retry. A call takes from every
limit of its key, team and user at once, or from none (one script on Redis).

A caller without any limit (the SDK, the master key, a key with no limits) gets the
shared `Admission` that does nothing: no store is asked, nothing is awaited.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self, TypeVar

import msgspec

from prismgate.errors import LimitReachedError, PrismgateError
from prismgate.identity.principal import LimitSet, Principal
from prismgate.rate_limit_headers import wait_text
from prismgate.storage import (
    LIMIT_WINDOW,
    Holder,
    LimitAnswer,
    LimitCheck,
    LimitState,
    MemoryLimitState,
)
from prismgate.streaming import RelayedStream
from prismgate.types import ImageEditRequest, ImageGenerationRequest, ImageVariationRequest, Served
from prismgate.types.meta import RateLimitStatus

__all__ = [
    "DEFAULT_LEASE",
    "FREE",
    "Admission",
    "Limiter",
    "images_asked",
]

A = TypeVar("A")

# Seconds a call's parallel slot lives without renewal: the calls of an instance that
# died free their slots this long after. Running calls renew every third of it.
DEFAULT_LEASE = 60.0
# A parallel slot comes back when some call ends, at no known time: a short hint.
PARALLEL_RETRY = 1.0
# The call id of a call without parallel limits: the stores use ids for slots only.
NO_SLOTS = "-"

_IMAGE_REQUESTS = (ImageGenerationRequest, ImageEditRequest, ImageVariationRequest)
_NAMES = {
    "requests": ("requests per minute", "rpm_limit"),
    "tokens": ("tokens per minute", "tpm_limit"),
    "images": ("images per minute", "ipm_limit"),
}


def images_asked(request: object) -> int:
    """The images a call asks for (`n`, 1 when not given); 0 for calls that make none."""
    if isinstance(request, _IMAGE_REQUESTS):
        return request.n or 1
    return 0


class Limiter:
    """Lets calls in by their callers' limits, kept in `state` (in this process, or on
    Redis for every instance). `lease`: see `DEFAULT_LEASE`."""

    def __init__(self, state: LimitState, *, lease: float = DEFAULT_LEASE) -> None:
        self.state = state
        self.lease = lease
        # Counters in this process are taken without a coroutine (nothing waits).
        self.take_now = state.take_now if isinstance(state, MemoryLimitState) else None
        # Call ids: this limiter's random name and a count, unique across instances.
        self._name = uuid.uuid4().hex[:16]
        self._count = itertools.count()
        # Calls holding parallel slots, by call id, and the one task renewing their leases
        # (it ends when none is left, and starts again with the next).
        self._running: dict[str, tuple[LimitCheck, ...]] = {}
        self._renewing: asyncio.Task[None] | None = None

    def admit(self, principal: Principal, *, images: int = 0) -> Admission:
        """The admission of one call by `principal` asking for `images`: entering it takes
        from every limit of the key, its team and its user, or raises `LimitReachedError`
        (429, with Retry-After) and takes nothing."""
        limits = principal.limits(images)
        if not limits.checks:
            return FREE
        call_id = f"{self._name}-{next(self._count)}" if limits.parallel else NO_SLOTS
        return _LimitedAdmission(self, principal, limits, call_id)

    async def settle(self, call_id: str, checks: Sequence[LimitCheck], tokens: int) -> None:
        """Free the call's parallel slots and count its tokens (the store finishes this
        even when the caller is cancelled)."""
        await self.state.finish(call_id, checks, tokens=tokens)

    def hold(self, call_id: str, parallel: tuple[LimitCheck, ...]) -> None:
        """Keep renewing this running call's parallel slots until `let_go(call_id)`."""
        self._running[call_id] = parallel
        loop = asyncio.get_running_loop()
        renewing = self._renewing
        if renewing is None or renewing.done() or renewing.get_loop() is not loop:
            self._renewing = loop.create_task(self._renew_running())

    def let_go(self, call_id: str) -> None:
        """Stop renewing this call's slots (it ended, or a stream renews its own)."""
        self._running.pop(call_id, None)

    async def _renew_running(self) -> None:
        # Every slot held is renewed at least every third of its lease.
        while self._running:
            await asyncio.sleep(self.lease / 3)
            renewals = [
                self.state.renew(call_id, checks, lease=self.lease)
                for call_id, checks in list(self._running.items())
            ]
            await asyncio.gather(*renewals, return_exceptions=True)


class Admission:
    """A call let in by its caller's limits. This base is the admission of a caller
    without limits: entering and leaving it cost nothing."""

    __slots__ = ()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def served(self, served: Served[A], tokens: Callable[[A], int]) -> Served[A]:
        """`served` with the tokens it used counted (`tokens(value)`) and its caller's
        limits in its metadata (`rate_limits`). A stream keeps its parallel slot until it
        is closed, and counts the tokens its last chunk reports."""
        return served


FREE = Admission()  # it keeps nothing: one serves every caller without limits


class _LimitedAdmission(Admission):
    """The admission of a caller with limits: one take when entered, one release (slots,
    tokens) when left; its parallel slots renewed while the call runs."""

    __slots__ = (
        "_call_id",
        "_handed_to_stream",
        "_levels",
        "_limiter",
        "_limits",
        "_principal",
        "_tokens",
    )

    def __init__(
        self, limiter: Limiter, principal: Principal, limits: LimitSet, call_id: str
    ) -> None:
        self._limiter = limiter
        self._principal = principal
        self._limits = limits
        self._call_id = call_id
        self._levels: tuple[RateLimitStatus, ...] = ()
        self._tokens = 0  # what the call used, once known (when tokens are counted)
        self._handed_to_stream = False

    async def __aenter__(self) -> Self:
        limiter, limits = self._limiter, self._limits
        try:
            if limiter.take_now is not None:
                answer = limiter.take_now(self._call_id, limits.checks, lease=limiter.lease)
            else:
                answer = await limiter.state.take(self._call_id, limits.checks, lease=limiter.lease)
        except BaseException:
            if limits.parallel:  # cancelled mid-take: free what the take may have held
                await limiter.settle(self._call_id, limits.parallel, 0)
            raise
        self._levels = answer.levels
        if answer.refused is not None:
            raise self._refusal(answer)
        if limits.parallel:
            limiter.hold(self._call_id, limits.parallel)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, PrismgateError):
            exc.rate_limits = self._statuses()
        limits = self._limits
        if not self._handed_to_stream and (limits.parallel or limits.counts_tokens):
            if limits.parallel:
                self._limiter.let_go(self._call_id)
            await self._release()

    def served(self, served: Served[A], tokens: Callable[[A], int]) -> Served[A]:
        """`served` with its tokens counted and the caller's limits in its metadata."""
        limits = self._limits
        value = served.value
        if limits.counts_tokens:
            self._tokens = tokens(value)
        meta = msgspec.structs.replace(served.meta, rate_limits=self._statuses())
        if (limits.parallel or limits.counts_tokens) and isinstance(value, RelayedStream):
            # The call goes on while the stream is read: its slots stay held (and renewed)
            # until the stream is closed, and then the tokens its usage chunk reports count.
            self._handed_to_stream = True
            stream = value
            value.at_close(lambda _: self._stream_closed(stream))
        return Served(value, meta)

    async def _release(self) -> None:
        ending = [
            check
            for check in self._limits.checks
            if check.kind == "parallel" or (check.kind == "tokens" and self._tokens)
        ]
        if ending:
            await self._limiter.settle(self._call_id, ending, self._tokens)

    async def _stream_closed(self, stream: RelayedStream) -> None:
        if self._limits.parallel:
            self._limiter.let_go(self._call_id)
        usage = stream.usage
        if usage is not None:
            self._tokens = usage.total_tokens
        await self._release()

    def _statuses(self) -> tuple[RateLimitStatus, ...]:
        """Each limited unit at its tightest among the key's, team's and user's limits."""
        checks, levels = self._limits.checks, self._levels
        per_unit = self._limits.per_unit
        if per_unit is not None and not self._tokens:  # one check per unit: nothing to pick
            # The stores report each counter as its status: every one of them, usually.
            return levels if len(per_unit) == len(levels) else tuple([levels[i] for i in per_unit])
        tightest: dict[str, RateLimitStatus] = {}
        for check, level in zip(checks, levels, strict=True):
            if check.kind == "parallel":
                continue  # parallel slots have no OpenAI header
            unit = check.kind
            remaining, reset = level.remaining, level.reset
            if unit == "tokens" and self._tokens:
                remaining = max(remaining - self._tokens, 0)
                reset += self._tokens * LIMIT_WINDOW / check.limit
            found = tightest.get(unit)
            if found is None or (remaining, -reset) < (found.remaining, -found.reset):
                tightest[unit] = RateLimitStatus(
                    unit=unit, limit=check.limit, remaining=remaining, reset=reset
                )
        return tuple(tightest.values())

    def _refusal(self, answer: LimitAnswer) -> LimitReachedError:
        assert answer.refused is not None
        check = self._limits.checks[answer.refused]
        who = _holder_name(self._principal, check.holder)
        retry = answer.retry_after
        if check.kind == "parallel":
            retry = PARALLEL_RETRY
            message = (
                f"Rate limit reached for {who} on parallel requests (max_parallel_requests): "
                f"limit {check.limit}, all in flight. Please try again when one of them ends."
            )
            limit_type = "parallel_requests"
        else:
            per_minute, field = _NAMES[check.kind]
            asked = f", requested {check.cost}" if check.kind == "images" else ""
            head = f"Rate limit reached for {who} on {per_minute} ({field}): limit {check.limit}"
            if retry is None:  # asks for more than the whole limit
                message = (
                    f"{head}; this call asks for {check.cost} {check.kind}, more than the "
                    f"whole limit, so it can never pass. Ask for at most {check.limit}."
                )
            else:
                left = self._levels[answer.refused].remaining
                message = (
                    f"{head}, remaining {left}{asked}. Please try again in {wait_text(retry)}."
                )
            limit_type = check.kind
        error = LimitReachedError(message, limit_type=limit_type, retry_after=retry)
        error.rate_limits = self._statuses()
        error.retryable = retry is not None  # more than the whole limit: never passes
        return error


def _holder_name(principal: Principal, holder: Holder) -> str:
    if holder.kind == "key":
        return f"key {principal.key_alias!r}"
    if holder.kind == "team" and principal.team is not None:
        name = principal.team.team_alias or principal.team.team_id
        return f"team {name!r}"
    return f"{holder.kind} {holder.id!r}"
