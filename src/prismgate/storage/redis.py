"""Redis backends: routing state, cache and callers' limits shared by every gateway
instance.

redis-py is an optional extra (`prismgate[redis]`) and is imported only when a backend is
built, so `import prismgate` never loads it.

Every read-modify-write is one Lua script, so instances never race each other. Minute
windows are keyed by the Redis server's clock (TIME inside the scripts), so instances whose
own clocks disagree still count into the same minute. Scripts build their per-minute key
names from the key bases they are given: fine on one Redis server (or a primary with
replicas), not meant for Redis Cluster.

No method raises when Redis is sick, and none waits on it for more than a short deadline:
each store runs its operations through a `RedisBreaker`, which answers from an in-process
backend (cooldowns, counts and cache entries of this process alone) while Redis is set
aside, and goes back to Redis when it answers again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from prismgate.errors import ConfigError
from prismgate.storage import (
    LIMIT_WINDOW,
    Cooldown,
    LimitAnswer,
    LimitCheck,
    Usage,
)
from prismgate.storage.breaker import DEFAULT_TIMEOUT, RedisBreaker
from prismgate.storage.memory import (
    LIMIT_EPSILON,
    MemoryCacheStore,
    MemoryLimitState,
    MemoryRoutingState,
    check_ttl,
)
from prismgate.types.meta import RateLimitStatus

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisCacheStore", "RedisLimitState", "RedisRoutingState", "connect_redis"]

MINUTE_KEY_TTL = 120  # seconds a per-minute counter outlives its first write
MAX_REASON_CHARS = 500  # a cooldown's reason is a message for people, not a log

# Sets a cooldown key to expire in ARGV ms unless it already expires later.
_EXTEND_COOLDOWN = """
local function extend_cooldown(key, ms, reason)
  local left = redis.call('PTTL', key)
  if left == -2 or (left >= 0 and left < ms) then
    redis.call('SET', key, reason, 'PX', ms)
  else
    redis.call('SET', key, reason, 'KEEPTTL')  -- the latest reason, the longer cooldown
  end
end
"""

# KEYS[1] cooldown key; ARGV[1] ms, ARGV[2] the reason (the failure that started it).
_COOL_DOWN = _EXTEND_COOLDOWN + "extend_cooldown(KEYS[1], tonumber(ARGV[1]), ARGV[2])\n"

# KEYS[1] failure counter, KEYS[2] cooldown key; ARGV allowed_fails, window ms, cooldown ms,
# reason.
# The counter's expiry is set by the first failure: the window opens there.
_RECORD_FAILURE = (
    _EXTEND_COOLDOWN
    + """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if count <= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
if tonumber(ARGV[3]) > 0 then extend_cooldown(KEYS[2], tonumber(ARGV[3]), ARGV[4]) end
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

# KEYS: cooldown keys; answers, for each, its ms left (-2: none) and its reason.
_COOLDOWNS = """
local found = {}
for i, key in ipairs(KEYS) do
  found[2 * i - 1] = redis.call('PTTL', key)
  found[2 * i] = redis.call('GET', key) or ''
end
return found
"""

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


def connect_redis(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> Redis:
    """A client for `url` that gives up quickly: a sick Redis must not hold requests up.
    Its sockets time out after `timeout` s; the breaker bounds each whole operation too."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    try:
        return Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            # One immediate retry covers a pooled connection that Redis closed; redis-py's
            # default (10 retries with backoff) keeps a request waiting seconds per call.
            retry=Retry(NoBackoff(), 1),
        )
    except ValueError:  # its message may quote the URL, password and all
        raise ConfigError(
            "redis_url must look like redis://[:password@]host:port/db (or rediss://, unix://)"
        ) from None


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisRoutingState:
    """Cooldowns, failure counts and per-minute usage in Redis, under `prefix`; in this
    process while `breaker` has Redis set aside.

    `aclose` closes `client`.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "prismgate:",
        breaker: RedisBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._breaker = breaker or RedisBreaker(client, clock=clock)
        self._local = MemoryRoutingState(clock=clock)
        self._cool_down = client.register_script(_COOL_DOWN)
        self._record_failure = client.register_script(_RECORD_FAILURE)
        self._take_request = client.register_script(_TAKE_REQUEST)
        self._add_tokens = client.register_script(_ADD_TOKENS)
        self._usage = client.register_script(_USAGE)
        self._cooldowns = client.register_script(_COOLDOWNS)

    @property
    def breaker(self) -> RedisBreaker:
        """Whether Redis is in use right now, and the deadline of its operations."""
        return self._breaker

    async def cooled_down(self, deployment_ids: Sequence[str]) -> frozenset[str]:
        """The ids among these that are cooling down right now."""
        if not deployment_ids:
            return frozenset()
        keys = [self._cooldown_key(deployment_id) for deployment_id in deployment_ids]

        async def shared() -> frozenset[str]:
            found: list[Any] = await self._client.mget(keys)
            return frozenset(
                i for i, value in zip(deployment_ids, found, strict=True) if value is not None
            )

        return await self._breaker.run(shared, lambda: self._local.cooled_down(deployment_ids))

    async def cooldowns(self, deployment_ids: Sequence[str]) -> dict[str, Cooldown]:
        """The ids among these that are cooling down, each with its time left and reason."""
        if not deployment_ids:
            return {}
        keys = [self._cooldown_key(deployment_id) for deployment_id in deployment_ids]

        async def shared() -> dict[str, Cooldown]:
            found: list[Any] = await self._cooldowns(keys=keys)
            cooling = {}
            for i, deployment_id in enumerate(deployment_ids):
                left, reason = int(found[2 * i]), found[2 * i + 1]
                if left >= 0:  # -2: no key; -1 (no expiry) is never written
                    text = reason.decode(errors="replace") if isinstance(reason, bytes) else ""
                    cooling[deployment_id] = Cooldown(left / 1000, text)
            return cooling

        return await self._breaker.run(shared, lambda: self._local.cooldowns(deployment_ids))

    async def cool_down(self, deployment_id: str, seconds: float, reason: str = "") -> None:
        """Skip this deployment for `seconds` (extends, never shortens, a running cooldown);
        `reason` says why (the failure that started it)."""
        if seconds <= 0:
            return
        keys = [self._cooldown_key(deployment_id)]
        args: list[int | str] = [_ms(seconds), _reason(reason)]
        await self._breaker.run(
            lambda: self._cool_down(keys=keys, args=args),
            lambda: self._local.cool_down(deployment_id, seconds, reason),
        )

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
        keys = [self._key("fails", deployment_id), self._cooldown_key(deployment_id)]
        args: list[int | str] = [
            allowed_fails,
            _ms(window),
            _ms(cooldown) if cooldown > 0 else 0,
            _reason(reason),
        ]

        async def shared() -> bool:
            return bool(await self._record_failure(keys=keys, args=args))

        return await self._breaker.run(
            shared,
            lambda: self._local.record_failure(
                deployment_id,
                allowed_fails=allowed_fails,
                window=window,
                cooldown=cooldown,
                reason=reason,
            ),
        )

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

        async def shared() -> dict[str, Usage]:
            counts: list[Any] = await self._usage(keys=keys)
            return {
                deployment_id: Usage(requests=int(counts[2 * i]), tokens=int(counts[2 * i + 1]))
                for i, deployment_id in enumerate(deployment_ids)
            }

        return await self._breaker.run(shared, lambda: self._local.usage(deployment_ids))

    async def take_request(self, deployment_id: str, rpm: int | None) -> bool:
        """Count one request in the current minute, atomically; False (and nothing counted)
        when `rpm` requests were already counted this minute. rpm None: always counts, True."""
        keys = [self._minute_base("rpm", deployment_id)]
        args = [-1 if rpm is None else max(rpm, 0), MINUTE_KEY_TTL]

        async def shared() -> bool:
            return bool(await self._take_request(keys=keys, args=args))

        return await self._breaker.run(shared, lambda: self._local.take_request(deployment_id, rpm))

    async def add_tokens(self, deployment_id: str, tokens: int) -> None:
        """Add tokens to this minute's count."""
        keys = [self._minute_base("tpm", deployment_id)]
        args = [tokens, MINUTE_KEY_TTL]

        async def shared() -> None:
            await self._add_tokens(keys=keys, args=args)

        await self._breaker.run(shared, lambda: self._local.add_tokens(deployment_id, tokens))

    async def ping(self) -> None:
        """Redis answers a PING within the operations' deadline (the breaker is not
        tripped by it: readiness only looks)."""
        await self._breaker.ping()

    async def aclose(self) -> None:
        """Stop the breaker's probe and close the client."""
        await self._breaker.aclose()
        await self._local.aclose()
        await self._client.aclose()

    def _key(self, kind: str, deployment_id: str) -> str:
        return f"{self._prefix}{kind}:{deployment_id}"

    def _cooldown_key(self, deployment_id: str) -> str:
        return self._key("cooldown", deployment_id)

    def _minute_base(self, kind: str, deployment_id: str) -> str:
        # The script appends the minute; the ':' before it keeps ids from running into it.
        return self._key(kind, deployment_id) + ":"


def _reason(reason: str) -> str:
    # A cooldown's value is its reason (may be empty: the key's presence is the cooldown).
    return reason[:MAX_REASON_CHARS]


class RedisCacheStore:
    """Cached bytes in Redis under `prefix` + "cache:", each expiring after its TTL; in
    this process (an LRU of `local_max_entries` / `local_max_bytes`) while `breaker` has
    Redis set aside.

    `client` must answer bytes (redis-py's default, `decode_responses=False`);
    `aclose` closes it.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "prismgate:",
        breaker: RedisBreaker | None = None,
        local_max_entries: int = 1024,
        local_max_bytes: int = 256 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ConfigError(
                "the cache needs a Redis client with decode_responses=False: "
                "cached values are bytes"
            )
        self._client = client
        self._prefix = prefix + "cache:"
        self._breaker = breaker or RedisBreaker(client, clock=clock)
        self._local = MemoryCacheStore(
            max_entries=local_max_entries, max_bytes=local_max_bytes, clock=clock
        )

    @property
    def breaker(self) -> RedisBreaker:
        """Whether Redis is in use right now, and the deadline of its operations."""
        return self._breaker

    async def get(self, key: str) -> bytes | None:
        """The value stored under `key`, or None when absent or expired."""

        async def shared() -> bytes | None:
            value = await self._client.get(self._prefix + key)
            return value if isinstance(value, bytes) else None

        return await self._breaker.run(shared, lambda: self._local.get(key))

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store `value` under `key` for `ttl` seconds (> 0)."""
        check_ttl(ttl)

        async def shared() -> None:
            await self._client.set(self._prefix + key, value, px=_ms(ttl))

        await self._breaker.run(shared, lambda: self._local.set(key, value, ttl))

    async def delete(self, key: str) -> None:
        """Forget `key` (nothing happens when it is absent)."""

        async def shared() -> None:
            await self._client.delete(self._prefix + key)

        await self._breaker.run(shared, lambda: self._local.delete(key))

    async def aclose(self) -> None:
        """Stop the breaker's probe and close the client (a second close does nothing)."""
        await self._breaker.aclose()
        await self._local.aclose()
        await self._client.aclose()


# Callers' limits. Times are ms by the server's clock. A per-minute counter holds when
# its bucket is full again (GCRA's theoretical arrival time); a parallel counter is a
# sorted set of call ids scored by when their lease ends.
_LIMIT_CLOCK = f"""
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local window = {LIMIT_WINDOW * 1000:g}
local epsilon = {LIMIT_EPSILON * 1000:g}
"""

# KEYS: one counter per check; ARGV[1] the call id, ARGV[2] the lease (ms), then per
# check: its kind, limit and cost. Every counter is checked before any is taken (all or
# none). Answers the refusing check's index (0: none), the ms until it would pass (-1:
# unknown), then each counter's remaining and reset (ms).
_TAKE_LIMITS = (
    _LIMIT_CLOCK
    + """
local call, lease = ARGV[1], tonumber(ARGV[2])
local starts = {}
local refused_slot, refused_rate, retry = 0, 0, 0
for i, key in ipairs(KEYS) do
  local kind, limit, cost = ARGV[3 * i], tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2])
  if kind == 'parallel' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)  -- lapsed leases: dead instances
    starts[i] = redis.call('ZCARD', key)
    if starts[i] + cost > limit and refused_slot == 0 then refused_slot = i end
  else
    local need = math.max(cost, 1)
    starts[i] = math.max(tonumber(redis.call('GET', key) or '0'), now)
    if need > limit then
      if refused_slot == 0 then refused_slot = i end  -- more than the whole limit
    else
      local wait = starts[i] - now + need * window / limit - window
      -- the longest wait is the one after which every counter passes
      if wait > epsilon and wait > retry then refused_rate, retry = i, wait end
    end
  end
end
local refused = refused_rate
if refused == 0 then refused, retry = refused_slot, -1 end
if refused == 0 then
  for i, key in ipairs(KEYS) do
    local kind, limit, cost = ARGV[3 * i], tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2])
    if kind == 'parallel' then
      redis.call('ZADD', key, now + lease, call)
      if redis.call('PTTL', key) < lease then redis.call('PEXPIRE', key, lease) end
      starts[i] = starts[i] + 1
    elseif cost > 0 then
      starts[i] = starts[i] + cost * window / limit
      -- once full again the counter means nothing: it expires then
      redis.call('SET', key, string.format('%.3f', starts[i]), 'PX', math.ceil(starts[i] - now))
    end
  end
end
local answer = {refused, math.ceil(retry)}
for i = 1, #KEYS do
  local kind, limit = ARGV[3 * i], tonumber(ARGV[3 * i + 1])
  if kind == 'parallel' then
    answer[2 * i + 1] = math.max(limit - starts[i], 0)
    answer[2 * i + 2] = 0
  else
    local used = starts[i] - now
    answer[2 * i + 1] = math.max(math.floor((window - used) * limit / window + 1e-6), 0)
    answer[2 * i + 2] = math.ceil(used)
  end
end
return answer
"""
)

# KEYS: parallel counters; ARGV[1] the call id, ARGV[2] the lease (ms). A lapsed lease
# stays lapsed: its slot may have been given to another call already.
_RENEW_LIMITS = (
    _LIMIT_CLOCK
    + """
local call, lease = ARGV[1], tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  local ends = redis.call('ZSCORE', key, call)
  if ends and tonumber(ends) > now then
    redis.call('ZADD', key, 'XX', now + lease, call)
    if redis.call('PTTL', key) < lease then redis.call('PEXPIRE', key, lease) end
  end
end
return 0
"""
)

# KEYS: counters; ARGV[1] the call id, ARGV[2] tokens, then per counter: kind, limit.
_FINISH_LIMITS = (
    _LIMIT_CLOCK
    + """
local call, tokens = ARGV[1], tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  local kind, limit = ARGV[2 * i + 1], tonumber(ARGV[2 * i + 2])
  if kind == 'parallel' then
    redis.call('ZREM', key, call)
  elseif kind == 'tokens' and tokens > 0 and limit > 0 then
    local full = math.max(tonumber(redis.call('GET', key) or '0'), now) + tokens * window / limit
    redis.call('SET', key, string.format('%.3f', full), 'PX', math.ceil(full - now))
  end
end
return 0
"""
)


class RedisLimitState:
    """Callers' limit counters (see `LimitState`) in Redis, one per holder and kind under
    `prefix` + "limit:", each expiring once it means nothing (a full bucket, no lease
    left); in this process while `breaker` has Redis set aside.

    A take is one script: every counter of the call (the key's, its team's, its user's)
    is checked and taken atomically, so instances sharing Redis never let more through
    than a limit. `aclose` closes `client`.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "prismgate:",
        breaker: RedisBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._prefix = prefix + "limit:"
        self._breaker = breaker or RedisBreaker(client, clock=clock)
        self._local = MemoryLimitState(clock=clock)
        self._take = client.register_script(_TAKE_LIMITS)
        self._renew = client.register_script(_RENEW_LIMITS)
        self._finish = client.register_script(_FINISH_LIMITS)
        # Finishes under way: a cancelled caller does not stop them (its slots are freed).
        self._finishing: set[asyncio.Task[None]] = set()

    @property
    def breaker(self) -> RedisBreaker:
        """Whether Redis is in use right now, and the deadline of its operations."""
        return self._breaker

    async def take(
        self, call_id: str, checks: Sequence[LimitCheck], *, lease: float
    ) -> LimitAnswer:
        """Take every check's cost for call `call_id`, all or none, atomically."""
        if not checks:
            return LimitAnswer(())
        keys = [self._key(check) for check in checks]
        args: list[int | str] = [call_id, _ms(lease)]
        for check in checks:
            args += [check.kind, check.limit, check.cost]

        async def shared() -> LimitAnswer:
            found: list[Any] = await self._take(keys=keys, args=args)
            levels = tuple(
                RateLimitStatus(
                    check.kind, check.limit, int(found[2 + 2 * i]), int(found[3 + 2 * i]) / 1000
                )
                for i, check in enumerate(checks)
            )
            refused, retry = int(found[0]), int(found[1])
            if not refused:
                return LimitAnswer(levels)
            return LimitAnswer(levels, refused - 1, retry / 1000 if retry >= 0 else None)

        return await self._breaker.run(
            shared, lambda: self._local.take(call_id, checks, lease=lease)
        )

    async def renew(self, call_id: str, checks: Sequence[LimitCheck], *, lease: float) -> None:
        """Keep this call's parallel slots another `lease` s (a lapsed slot stays lapsed)."""
        keys = [self._key(check) for check in checks if check.kind == "parallel"]
        if not keys:
            return
        args: list[int | str] = [call_id, _ms(lease)]

        async def shared() -> None:
            await self._renew(keys=keys, args=args)

        await self._breaker.run(shared, lambda: self._local.renew(call_id, checks, lease=lease))

    async def finish(self, call_id: str, checks: Sequence[LimitCheck], *, tokens: int) -> None:
        """Free this call's parallel slots, add `tokens` to its tokens counters."""
        ending = [c for c in checks if c.kind == "parallel" or (c.kind == "tokens" and tokens)]
        if not ending:
            return
        keys = [self._key(check) for check in ending]
        args: list[int | str] = [call_id, tokens]
        for check in ending:
            args += [check.kind, check.limit]

        async def shared() -> None:
            await self._finish(keys=keys, args=args)

        task = asyncio.ensure_future(
            self._breaker.run(shared, lambda: self._local.finish(call_id, ending, tokens=tokens))
        )
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)
        await asyncio.shield(task)

    async def aclose(self) -> None:
        """Stop the breaker's probe and close the client (a second close does nothing)."""
        await self._breaker.aclose()
        await self._local.aclose()
        await self._client.aclose()

    def _key(self, check: LimitCheck) -> str:
        # The holder's kind and the limit's kind come from fixed sets, so an id holding
        # ':' cannot make two counters share a key.
        return f"{self._prefix}{check.holder.kind}:{check.holder.id}:{check.kind}"
