"""In-process backends: state for one gateway instance, used from one event loop.

No method awaits between reading and writing its state, so concurrent callers on the
loop never interleave inside one: no locks are needed.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prismgate.errors import ConfigError
from prismgate.storage import Cooldown, Usage

__all__ = ["MemoryCacheStore", "MemoryRoutingState"]

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
