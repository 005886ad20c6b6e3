"""In-process backends: state for one gateway instance, used from one event loop.

No method awaits between reading and writing its state, so concurrent callers on the
loop never interleave inside one: no locks are needed.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prismgate.errors import ConfigError
from prismgate.storage import (
    LIMIT_WINDOW,
    Cooldown,
    Holder,
    LimitAnswer,
    LimitCheck,
    LimitKind,
    Usage,
)
from prismgate.types.meta import RateLimitStatus

__all__ = ["MemoryCacheStore", "MemoryLimitState", "MemoryRoutingState"]

Clock = Callable[[], float]


@dataclass(slots=True)
class _Cooling:
    ends: float
    reason: str


@dataclass(slots=True)
class _Failures:
    count: int
    window_ends: float


_NONE: frozenset[str] = frozenset()


class MemoryRoutingState:
    """Cooldowns, failure counts and per-minute usage, for this process only.

    `clock` gives seconds (monotonic by default); tests pass their own to move time.
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._cooldowns: dict[str, _Cooling] = {}
        self._failures: dict[str, _Failures] = {}
        # Usage is kept for the current minute only: a new minute starts from zero.
        self._minute = self._current_minute()
        self._requests: dict[str, int] = {}
        self._tokens: dict[str, int] = {}

    async def cooled_down(self, deployment_ids: Sequence[str]) -> frozenset[str]:
        """The ids among these that are cooling down right now."""
        if not self._cooldowns:
            return _NONE  # the usual case, on every call: nothing to look at
        now = self._clock()
        cooling = set()
        for deployment_id in deployment_ids:
            cooled = self._cooldowns.get(deployment_id)
            if cooled is None:
                continue
            if cooled.ends > now:
                cooling.add(deployment_id)
            else:
                del self._cooldowns[deployment_id]
        return frozenset(cooling)

    async def cooldowns(self, deployment_ids: Sequence[str]) -> dict[str, Cooldown]:
        """The ids among these that are cooling down, each with its time left and reason."""
        now = self._clock()
        found = {}
        for deployment_id in await self.cooled_down(deployment_ids):
            cooled = self._cooldowns[deployment_id]
            found[deployment_id] = Cooldown(cooled.ends - now, cooled.reason)
        return found

    async def cool_down(self, deployment_id: str, seconds: float, reason: str = "") -> None:
        """Skip this deployment for `seconds` (extends, never shortens, a running cooldown);
        `reason` says why (the failure that started it)."""
        if seconds > 0:
            self._extend_cooldown(deployment_id, seconds, reason)

    async def record_failure(
        self,
        deployment_id: str,
        *,
        allowed_fails: int,
        window: float,
        cooldown: float,
        reason: str = "",
    ) -> bool:
        """Count one failure in a window of `window` seconds; when the count goes over
        `allowed_fails`, cool the deployment down for `cooldown` s, reset its count, return True."""
        now = self._clock()
        failures = self._failures.get(deployment_id)
        if failures is None or failures.window_ends <= now:
            # The window opens at the first failure, as the Redis backend's key expiry does.
            failures = self._failures[deployment_id] = _Failures(0, now + window)
        failures.count += 1
        if failures.count <= allowed_fails:
            return False
        del self._failures[deployment_id]
        if cooldown > 0:
            self._extend_cooldown(deployment_id, cooldown, reason)
        return True

    async def usage(self, deployment_ids: Sequence[str]) -> dict[str, Usage]:
        """Requests and tokens counted for each id in the current minute (0s when none)."""
        self._roll_minute()
        return {
            deployment_id: Usage(
                requests=self._requests.get(deployment_id, 0),
                tokens=self._tokens.get(deployment_id, 0),
            )
            for deployment_id in deployment_ids
        }

    async def take_request(self, deployment_id: str, rpm: int | None) -> bool:
        """Count one request in the current minute; False (and nothing counted) when `rpm`
        requests were already counted this minute. rpm None: always counts, True."""
        self._roll_minute()
        taken = self._requests.get(deployment_id, 0)
        if rpm is not None and taken >= rpm:
            return False
        self._requests[deployment_id] = taken + 1
        return True

    async def add_tokens(self, deployment_id: str, tokens: int) -> None:
        """Add tokens to this minute's count."""
        self._roll_minute()
        self._tokens[deployment_id] = self._tokens.get(deployment_id, 0) + tokens

    async def ping(self) -> None:
        """In this process: always reachable."""

    async def aclose(self) -> None:
        """Forget everything (nothing to release)."""
        self._cooldowns.clear()
        self._failures.clear()
        self._requests.clear()
        self._tokens.clear()

    def _extend_cooldown(self, deployment_id: str, seconds: float, reason: str) -> None:
        ends = self._clock() + seconds
        cooled = self._cooldowns.get(deployment_id)
        if cooled is None or cooled.ends <= self._clock():
            self._cooldowns[deployment_id] = _Cooling(ends, reason)
        else:  # the latest reason, the longer cooldown (as the Redis backend keeps them)
            cooled.ends = max(cooled.ends, ends)
            cooled.reason = reason

    def _current_minute(self) -> int:
        return int(self._clock() // 60)

    def _roll_minute(self) -> None:
        minute = self._current_minute()
        if minute != self._minute:
            self._minute = minute
            self._requests.clear()
            self._tokens.clear()


# Sums of 60/L s intervals are not exact in floating point: a bucket L-full is full.
LIMIT_EPSILON = 1e-6  # seconds
_SWEEP_START = 1024  # counters kept before the first sweep of idle ones


class MemoryLimitState:
    """Callers' limit counters (see `LimitState`) for this process only.

    A per-minute counter is the time its bucket is full again (GCRA's theoretical arrival
    time); a parallel counter, the lease end of each call in flight. Counters that mean
    nothing any more (a full bucket, no lease left) are swept out every minute, and
    whenever their number doubles. `clock` as for MemoryRoutingState.
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._full_at: dict[tuple[Holder, LimitKind], float] = {}
        self._slots: dict[tuple[Holder, LimitKind], dict[str, float]] = {}
        self._sweep_at = _SWEEP_START
        self._next_sweep = clock() + LIMIT_WINDOW

    async def take(
        self, call_id: str, checks: Sequence[LimitCheck], *, lease: float
    ) -> LimitAnswer:
        """Take every check's cost for call `call_id`, all or none."""
        return self.take_now(call_id, checks, lease=lease)

    def take_now(self, call_id: str, checks: Sequence[LimitCheck], *, lease: float) -> LimitAnswer:
        """`take`, without a coroutine: nothing here waits (the limiter calls this one)."""
        now = self._clock()
        if now >= self._next_sweep or len(self._full_at) + len(self._slots) > self._sweep_at:
            self._sweep(now)
        full_at = self._full_at
        # The usual call: per-minute counters only, each with room for it, taken in one
        # pass; anything else (a parallel slot, a counter without room) in two, below.
        taken: list[tuple[tuple[Holder, LimitKind], float]] = []
        levels: list[RateLimitStatus] = []
        for check in checks:
            if check.kind == "parallel":
                break
            start = full_at.get(check.counter, now)
            start = now if start < now else start
            # The wait `_take_checked` computes (more than the whole limit: infinite).
            if start - now + check.needed_span - LIMIT_WINDOW > LIMIT_EPSILON:
                break
            if check.cost:
                start += check.taken_span
                taken.append((check.counter, start))
            used = start - now
            left = math.floor((LIMIT_WINDOW - used) * check.limit / LIMIT_WINDOW + LIMIT_EPSILON)
            levels.append(RateLimitStatus(check.kind, check.limit, left if left > 0 else 0, used))
        else:
            full_at.update(taken)
            return LimitAnswer(tuple(levels))
        return self._take_checked(call_id, checks, lease, now)

    def _take_checked(
        self, call_id: str, checks: Sequence[LimitCheck], lease: float, now: float
    ) -> LimitAnswer:
        """`take`, each check's counter read first: the refusal names the check with the
        longest wait (a parallel slot's when no per-minute check refuses)."""
        full_at = self._full_at
        # Each counter as it stands: a bucket's full-again time, or the slots in use.
        starts: list[float] = []
        refused_slot: int | None = None
        refused_rate: int | None = None
        retry = 0.0
        for i, check in enumerate(checks):
            if check.kind == "parallel":
                slots = self._live_slots(check.counter, now)
                starts.append(float(len(slots)))
                if len(slots) + check.cost > check.limit and refused_slot is None:
                    refused_slot = i
                continue
            start = full_at.get(check.counter, now)
            start = now if start < now else start  # max(), without the call
            starts.append(start)
            if check.needed_span == math.inf:  # more than the whole limit: never passes
                if refused_slot is None:
                    refused_slot = i
                continue
            wait = start - now + check.needed_span - LIMIT_WINDOW
            if wait > LIMIT_EPSILON and wait > retry:  # the longest wait is when all pass
                refused_rate, retry = i, wait
        if refused_rate is not None:
            return LimitAnswer(_levels(checks, starts, now), refused_rate, retry)
        if refused_slot is not None:
            return LimitAnswer(_levels(checks, starts, now), refused_slot, None)
        levels = []
        for i, check in enumerate(checks):
            if check.kind == "parallel":
                self._slots.setdefault(check.counter, {})[call_id] = now + lease
                left = max(check.limit - int(starts[i]) - 1, 0)
                levels.append(RateLimitStatus(check.kind, check.limit, left, 0.0))
                continue
            start = starts[i]
            if check.cost:
                start += check.taken_span
                full_at[check.counter] = start
            used = start - now
            left = math.floor((LIMIT_WINDOW - used) * check.limit / LIMIT_WINDOW + LIMIT_EPSILON)
            levels.append(RateLimitStatus(check.kind, check.limit, left if left > 0 else 0, used))
        return LimitAnswer(tuple(levels))

    async def renew(self, call_id: str, checks: Sequence[LimitCheck], *, lease: float) -> None:
        """Keep this call's parallel slots another `lease` s (a lapsed slot stays lapsed)."""
        now = self._clock()
        for check in checks:
            slots = self._slots.get(check.counter)
            if check.kind == "parallel" and slots is not None and slots.get(call_id, 0) > now:
                slots[call_id] = now + lease

    async def finish(self, call_id: str, checks: Sequence[LimitCheck], *, tokens: int) -> None:
        """Free this call's parallel slots, add `tokens` to its tokens counters."""
        now = self._clock()
        for check in checks:
            counter = check.counter
            if check.kind == "parallel":
                self._slots.get(counter, {}).pop(call_id, None)
            elif check.kind == "tokens" and tokens > 0 and check.limit > 0:
                start = max(self._full_at.get(counter, now), now)
                self._full_at[counter] = start + tokens * LIMIT_WINDOW / check.limit

    async def aclose(self) -> None:
        """Forget every counter (nothing to release)."""
        self._full_at.clear()
        self._slots.clear()

    def _live_slots(self, counter: tuple[Holder, LimitKind], now: float) -> dict[str, float]:
        slots = self._slots.get(counter, {})
        for call_id in [c for c, ends in slots.items() if ends <= now]:
            del slots[call_id]  # a lease that lapsed: its instance died mid-call
        return slots

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + LIMIT_WINDOW
        self._full_at = {c: full for c, full in self._full_at.items() if full > now}
        self._slots = {c: live for c in list(self._slots) if (live := self._live_slots(c, now))}
        self._sweep_at = max(_SWEEP_START, 2 * (len(self._full_at) + len(self._slots)))


def _levels(
    checks: Sequence[LimitCheck], starts: Sequence[float], now: float
) -> tuple[RateLimitStatus, ...]:
    levels = []
    for check, start in zip(checks, starts, strict=True):
        if check.kind == "parallel":
            left = max(check.limit - int(start), 0)
            levels.append(RateLimitStatus(check.kind, check.limit, left, 0.0))
            continue
        used = start - now
        left = math.floor((LIMIT_WINDOW - used) * check.limit / LIMIT_WINDOW + LIMIT_EPSILON)
        levels.append(RateLimitStatus(check.kind, check.limit, max(left, 0), used))
    return tuple(levels)


@dataclass(frozen=True, slots=True)
class _Entry:
    value: bytes
    expires: float


class MemoryCacheStore:
    """An LRU cache of bytes in this process, bounded by entry count and by total value bytes.

    Entries expire after their TTL: an expired entry is a miss and is dropped when read.
    A value larger than `max_bytes` is not stored. `clock` as for MemoryRoutingState.
    """

    def __init__(
        self,
        *,
        max_entries: int = 1024,
        max_bytes: int = 256 * 1024 * 1024,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ConfigError(f"cache max_entries must be at least 1, not {max_entries}")
        if max_bytes < 1:
            raise ConfigError(f"cache max_bytes must be at least 1, not {max_bytes}")
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._bytes = 0

    async def get(self, key: str) -> bytes | None:
        """The value stored under `key`, or None when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry.value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store `value` under `key` for `ttl` seconds (> 0), evicting the least recently
        used entries while over either bound."""
        check_ttl(ttl)
        self._drop(key)  # an oversized new value must not leave the old one readable
        if len(value) > self._max_bytes:
            return
        self._entries[key] = _Entry(value, self._clock() + ttl)
        self._bytes += len(value)
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.value)

    async def delete(self, key: str) -> None:
        """Forget `key` (nothing happens when it is absent)."""
        self._drop(key)

    async def aclose(self) -> None:
        """Drop every entry (nothing to release)."""
        self._entries.clear()
        self._bytes = 0

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry.value)


def check_ttl(ttl: float) -> None:
    """Refuse a TTL that is not a positive number of seconds (a caller's bug)."""
    if not ttl > 0:  # also refuses NaN
        raise ValueError(f"a cache TTL must be more than 0 seconds, not {ttl!r}")
