"""Shared state for routing (cooldowns, failure counts, per-minute usage) and the response cache.

One interface per concern, two backends each: in-process (`memory`, the default: one
instance) and Redis (`redis`: every instance of the gateway sees the same state). The
router and the cache code only ever see the protocols below.

A Redis that does not answer never fails or holds up a request: every operation has a
short deadline (`general_settings.redis_timeout`), and a circuit breaker then answers from
in-process state until Redis answers again (see `breaker.py`); the outage and the recovery
are each logged once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from prismgate.storage.breaker import DEFAULT_RETRY_INTERVAL, DEFAULT_TIMEOUT, RedisBreaker

__all__ = [
    "CacheStore",
    "Cooldown",
    "MemoryCacheStore",
    "MemoryRoutingState",
    "RedisBreaker",
    "RedisCacheStore",
    "RedisRoutingState",
    "RoutingState",
    "Usage",
    "open_shared_state",
    "redis_url_from",
]

DEFAULT_REDIS_PORT = 6379


@dataclass(frozen=True, slots=True)
class Usage:
    """What one deployment has used in the current minute."""

    requests: int  # requests counted in the current minute
    tokens: int  # tokens counted in the current minute


@dataclass(frozen=True, slots=True)
class Cooldown:
    """A deployment that is cooling down: for how long yet, and why."""

    left: float  # seconds until it ends
    reason: str  # the failure that started it ("" when none was given)


class RoutingState(Protocol):
    """Cooldowns, failure counts and per-minute usage of deployments, by deployment id."""

    async def cooled_down(self, deployment_ids: Sequence[str]) -> frozenset[str]:
        """The ids among these that are cooling down right now."""
        ...

    async def cooldowns(self, deployment_ids: Sequence[str]) -> dict[str, Cooldown]:
        """The ids among these that are cooling down, each with its time left and reason."""
        ...

    async def cool_down(self, deployment_id: str, seconds: float, reason: str = "") -> None:
        """Skip this deployment for `seconds` (extends, never shortens, a running cooldown);
        `reason` says why (the failure that started it)."""
        ...

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
        ...

    async def usage(self, deployment_ids: Sequence[str]) -> dict[str, Usage]:
        """Requests and tokens counted for each id in the current minute (0s when none)."""
        ...

    async def take_request(self, deployment_id: str, rpm: int | None) -> bool:
        """Count one request in the current minute, atomically; False (and nothing counted)
        when `rpm` requests were already counted this minute. rpm None: always counts, True."""
        ...

    async def add_tokens(self, deployment_id: str, tokens: int) -> None:
        """Add tokens to this minute's count."""
        ...

    async def aclose(self) -> None:
        """Release the backend's connections."""
        ...


class CacheStore(Protocol):
    """Bytes by key, each with a time to live."""

    async def get(self, key: str) -> bytes | None:
        """The value stored under `key`, or None when absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store `value` under `key` for `ttl` seconds (> 0)."""
        ...

    async def delete(self, key: str) -> None:
        """Forget `key` (nothing happens when it is absent)."""
        ...

    async def aclose(self) -> None:
        """Release the backend's connections."""
        ...


def redis_url_from(
    *, url: str | None, host: str | None, port: int | None, password: str | None
) -> str | None:
    """The Redis URL a config names: its `url` (`redis_url`) when given, else one built from
    LiteLLM-style `host` / `port` / `password` (`redis://:password@host:port/0`); None when
    the config names no Redis at all."""
    if url:
        return url
    if not host:
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port or DEFAULT_REDIS_PORT}/0"


def open_shared_state(
    *,
    redis_url: str | None,
    cache_max_entries: int = 1024,
    cache_max_bytes: int = 256 * 1024 * 1024,
    prefix: str = "prismgate:",
    timeout: float = DEFAULT_TIMEOUT,
    retry_interval: float = DEFAULT_RETRY_INTERVAL,
) -> tuple[RoutingState, CacheStore]:
    """The routing state and cache store for a gateway: on Redis (one client, keys under
    `prefix`) when `redis_url` is given, in this process otherwise. Each Redis operation
    may take `timeout` s; past it, both stores use in-process state until a probe (every
    `retry_interval` s) finds Redis answering. Close both when done."""
    if redis_url is None:
        return MemoryRoutingState(), MemoryCacheStore(
            max_entries=cache_max_entries, max_bytes=cache_max_bytes
        )
    client = connect_redis(redis_url, timeout=timeout)
    # One breaker for both stores: one client, one outage, one log line.
    breaker = RedisBreaker(client, timeout=timeout, retry_interval=retry_interval)
    return RedisRoutingState(client, prefix=prefix, breaker=breaker), RedisCacheStore(
        client,
        prefix=prefix,
        breaker=breaker,
        local_max_entries=cache_max_entries,
        local_max_bytes=cache_max_bytes,
    )


# The backends build `Usage` and follow the protocols above, so they are imported after them.
from prismgate.storage.memory import MemoryCacheStore, MemoryRoutingState  # noqa: E402
from prismgate.storage.redis import (  # noqa: E402
    RedisCacheStore,
    RedisRoutingState,
    connect_redis,
)
