"""Redis backends: routing state and cache shared by every gateway instance.

redis-py is an optional extra (`prismgate[redis]`) and is imported only when a backend is
built, so `import prismgate` never loads it.

Every read-modify-write is one Lua script, so instances never race each other. Minute
windows are keyed by the Redis server's clock (TIME inside the scripts), so instances whose
own clocks disagree still count into the same minute. Scripts build their per-minute key
names from the key bases they are given: fine on one Redis server (or a primary with
replicas), not meant for Redis Cluster.

When Redis cannot be reached, no method raises: routing state answers "no cooldown, nothing
used" and counts nothing, the cache misses. A warning is logged at most every 30 s, and
Redis is left alone for a second after a failure so requests do not each wait for it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from prismgate.errors import ConfigError
from prismgate.storage import Usage
from prismgate.storage.memory import check_ttl

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisCacheStore", "RedisRoutingState", "connect_redis"]

log = logging.getLogger("prismgate.storage")

T = TypeVar("T")

WARN_EVERY = 30.0  # seconds between two "Redis is unreachable" warnings
RETRY_AFTER = 1.0  # seconds Redis is left alone after a failed call
MINUTE_KEY_TTL = 120  # seconds a per-minute counter outlives its first write

# Sets a cooldown key to expire in ARGV ms unless it already expires later.
_EXTEND_COOLDOWN = """
local function extend_cooldown(key, ms)
  local left = redis.call('PTTL', key)
  if left == -2 or (left >= 0 and left < ms) then
    redis.call('SET', key, '1', 'PX', ms)
  end
end
"""

# KEYS[1] cooldown key; ARGV[1] ms.
_COOL_DOWN = _EXTEND_COOLDOWN + "extend_cooldown(KEYS[1], tonumber(ARGV[1]))\n"

# KEYS[1] failure counter, KEYS[2] cooldown key; ARGV allowed_fails, window ms, cooldown ms.
# The counter's expiry is set by the first failure: the window opens there.
_RECORD_FAILURE = (
    _EXTEND_COOLDOWN
    + """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if count <= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
if tonumber(ARGV[3]) > 0 then extend_cooldown(KEYS[2], tonumber(ARGV[3])) end
return 1
"""
)

# The current minute by the server's clock; Redis >= 5 replicates a script's effects,
# so reading TIME before writing is allowed.
_MINUTE = "local minute = math.floor(tonumber(redis.call('TIME')[1]) / 60)\n"

# KEYS[1] request counter base; ARGV[1] the limit (-1: none), ARGV[2] key TTL s.
_TAKE_REQUEST = (
    _MINUTE
    + """
local key = KEYS[1] .. minute
local taken = tonumber(redis.call('GET', key) or '0')
local limit = tonumber(ARGV[1])
if limit >= 0 and taken >= limit then return 0 end
redis.call('INCR', key)
if taken == 0 then redis.call('EXPIRE', key, ARGV[2]) end
return 1
"""
)

# KEYS[1] token counter base; ARGV[1] tokens, ARGV[2] key TTL s.
_ADD_TOKENS = (
    _MINUTE
    + """
local key = KEYS[1] .. minute
redis.call('INCRBY', key, ARGV[1])
if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[2]) end
return 0
"""
)

# KEYS: counter bases; answers each one's count this minute, in order.
_USAGE = (
    _MINUTE
    + """
local counts = {}
for i, base in ipairs(KEYS) do
  counts[i] = tonumber(redis.call('GET', base .. minute) or '0')
end
return counts
"""
)


def connect_redis(url: str) -> Redis:
    """A client for `url` that gives up quickly: a sick Redis must not hold requests up."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    try:
        return Redis.from_url(
            url,
            socket_connect_timeout=1.0,
            socket_timeout=1.0,
            # One immediate retry covers a pooled connection that Redis closed; redis-py's
            # default (10 retries with backoff) keeps a request waiting seconds per call.
            retry=Retry(NoBackoff(), 1),
        )
    except ValueError:  # its message may quote the URL, password and all
        raise ConfigError(
            "redis_url must look like redis://[:password@]host:port/db (or rediss://, unix://)"
        ) from None


class _Guard:
    """Runs Redis calls; when Redis is unreachable, answers a fallback instead and warns."""

    def __init__(self, what: str, clock: Callable[[], float]) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        self._unreachable = (RedisConnectionError, RedisTimeoutError)
        self._what = what
        self._clock = clock
        self._skip_until = float("-inf")
        self._next_warning = float("-inf")
        self._unwarned = 0  # failures since the last warning

    async def run(self, call: Callable[[], Awaitable[T]], fallback: T) -> T:
        if self._clock() < self._skip_until:
            return fallback
        try:
            return await call()
        except self._unreachable as error:
            self._failed(error)
            return fallback

    def _failed(self, error: Exception) -> None:
        now = self._clock()
        self._skip_until = now + RETRY_AFTER
        self._unwarned += 1
        if now < self._next_warning:
            return
        self._next_warning = now + WARN_EVERY
        # redis-py names host and port in these messages, never the password.
        log.warning(
            "Redis unreachable (%s: %s); %s until it is back "
            "(%d calls answered without Redis since the last warning)",
            type(error).__name__,
            error,
            self._what,
            self._unwarned,
        )
        self._unwarned = 0


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisRoutingState:
    """Cooldowns, failure counts and per-minute usage in Redis, under `prefix`.

    `aclose` closes `client`.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "prismgate:",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._guard = _Guard("routing ignores cooldowns and rate limits", clock)
        self._cool_down = client.register_script(_COOL_DOWN)
        self._record_failure = client.register_script(_RECORD_FAILURE)
        self._take_request = client.register_script(_TAKE_REQUEST)
        self._add_tokens = client.register_script(_ADD_TOKENS)
        self._usage = client.register_script(_USAGE)

    async def cooled_down(self, deployment_ids: Sequence[str]) -> frozenset[str]:
        """The ids among these that are cooling down right now."""
        if not deployment_ids:
            return frozenset()
        keys = [self._cooldown_key(deployment_id) for deployment_id in deployment_ids]
        found: list[Any] = await self._guard.run(lambda: self._client.mget(keys), [])
        return frozenset(i for i, value in zip(deployment_ids, found, strict=False) if value)

    async def cool_down(self, deployment_id: str, seconds: float) -> None:
        """Skip this deployment for `seconds` (extends, never shortens, a running cooldown)."""
        if seconds <= 0:
            return
        keys = [self._cooldown_key(deployment_id)]
        await self._guard.run(lambda: self._cool_down(keys=keys, args=[_ms(seconds)]), None)

    async def record_failure(
        self, deployment_id: str, *, allowed_fails: int, window: float, cooldown: float
    ) -> bool:
        """Count one failure in a window of `window` seconds; when the count goes over
        `allowed_fails`, cool the deployment down for `cooldown` s, reset its count, return True."""
        keys = [self._key("fails", deployment_id), self._cooldown_key(deployment_id)]
        args = [allowed_fails, _ms(window), _ms(cooldown) if cooldown > 0 else 0]
        cooled = await self._guard.run(lambda: self._record_failure(keys=keys, args=args), 0)
        return bool(cooled)

    async def usage(self, deployment_ids: Sequence[str]) -> dict[str, Usage]:
        """Requests and tokens counted for each id in the current minute (0s when none)."""
        if not deployment_ids:
            return {}
        keys: list[str] = []
        for deployment_id in deployment_ids:
            keys += [
                self._minute_base("rpm", deployment_id),
                self._minute_base("tpm", deployment_id),
            ]
        counts: list[Any] = await self._guard.run(lambda: self._usage(keys=keys), [])
        if not counts:
            counts = [0] * len(keys)
        return {
            deployment_id: Usage(requests=int(counts[2 * i]), tokens=int(counts[2 * i + 1]))
            for i, deployment_id in enumerate(deployment_ids)
        }

    async def take_request(self, deployment_id: str, rpm: int | None) -> bool:
        """Count one request in the current minute, atomically; False (and nothing counted)
        when `rpm` requests were already counted this minute. rpm None: always counts, True."""
        keys = [self._minute_base("rpm", deployment_id)]
        args = [-1 if rpm is None else max(rpm, 0), MINUTE_KEY_TTL]
        taken = await self._guard.run(lambda: self._take_request(keys=keys, args=args), 1)
        return bool(taken)

    async def add_tokens(self, deployment_id: str, tokens: int) -> None:
        """Add tokens to this minute's count."""
        keys = [self._minute_base("tpm", deployment_id)]
        args = [tokens, MINUTE_KEY_TTL]
        await self._guard.run(lambda: self._add_tokens(keys=keys, args=args), None)

    async def aclose(self) -> None:
        """Close the client."""
        await self._client.aclose()

    def _key(self, kind: str, deployment_id: str) -> str:
        return f"{self._prefix}{kind}:{deployment_id}"

    def _cooldown_key(self, deployment_id: str) -> str:
        return self._key("cooldown", deployment_id)

    def _minute_base(self, kind: str, deployment_id: str) -> str:
        # The script appends the minute; the ':' before it keeps ids from running into it.
        return self._key(kind, deployment_id) + ":"


class RedisCacheStore:
    """Cached bytes in Redis under `prefix` + "cache:", each expiring after its TTL.

    `client` must answer bytes (redis-py's default, `decode_responses=False`);
    `aclose` closes it.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "prismgate:",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ConfigError(
                "the cache needs a Redis client with decode_responses=False: "
                "cached values are bytes"
            )
        self._client = client
        self._prefix = prefix + "cache:"
        self._guard = _Guard("the cache is skipped", clock)

    async def get(self, key: str) -> bytes | None:
        """The value stored under `key`, or None when absent, expired or unreachable."""
        value = await self._guard.run(lambda: self._client.get(self._prefix + key), None)
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store `value` under `key` for `ttl` seconds (> 0)."""
        check_ttl(ttl)
        await self._guard.run(
            lambda: self._client.set(self._prefix + key, value, px=_ms(ttl)), None
        )

    async def delete(self, key: str) -> None:
        """Forget `key` (nothing happens when it is absent)."""
        await self._guard.run(lambda: self._client.delete(self._prefix + key), None)

    async def aclose(self) -> None:
        """Close the client."""
        await self._client.aclose()
