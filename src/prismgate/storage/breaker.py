"""A circuit breaker for one Redis client: every operation gets a short deadline, and a
Redis that misses it is set aside in favour of in-process state until it answers again.

    closed ──(an operation fails or misses its deadline)──▶ open: log once, use local state
      ▲                                                      │ after `retry_interval` s,
      └──────(a PING answers in time: log once)──── probe ◀──┘ in the background

No request ever waits on a probe: while the breaker is open, every operation answers from
the in-process fallback at once, and the probe runs beside them. A failed probe stays
quiet (the outage was already reported) and schedules the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from prismgate.errors import ConfigError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["DEFAULT_RETRY_INTERVAL", "DEFAULT_TIMEOUT", "RedisBreaker"]

log = logging.getLogger("prismgate.storage")

T = TypeVar("T")

# A loopback or same-zone Redis answers in well under a millisecond; 100 ms is a sick one.
DEFAULT_TIMEOUT = 0.1
DEFAULT_RETRY_INTERVAL = 5.0


class RedisBreaker:
    """Runs operations on `client` within `timeout` s each, or answers from a fallback.

    Shared by every store on one client, so an outage is reported once, not per store.
    `clock` gives seconds (monotonic by default); tests pass their own.
    """

    def __init__(
        self,
        client: Redis,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from redis.exceptions import RedisError

        for name, value in (("redis_timeout", timeout), ("redis_retry_interval", retry_interval)):
            if not value > 0:  # also refuses NaN
                raise ConfigError(f"general_settings.{name} must be more than 0 s, not {value!r}")
        self._client = client
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._clock = clock
        # What counts as "Redis did not answer": its own errors, our deadline, the socket.
        self._failures: tuple[type[BaseException], ...] = (RedisError, TimeoutError, OSError)
        self._open = False
        self._probe_at = float("-inf")
        self._probe: asyncio.Task[None] | None = None
        self._answered_locally = 0  # operations answered in-process during this outage

    @property
    def is_open(self) -> bool:
        """Whether operations are answered in-process right now (Redis set aside)."""
        return self._open

    async def run(
        self, call: Callable[[], Awaitable[T]], fallback: Callable[[], Awaitable[T]]
    ) -> T:
        """`call()` on Redis within the deadline; `fallback()` when the breaker is open or
        the call fails (which opens it)."""
        if self._open:
            self._answered_locally += 1
            self._maybe_probe()
            return await fallback()
        try:
            async with asyncio.timeout(self._timeout):
                return await call()
        except self._failures as error:
            self._trip(error)
            self._answered_locally += 1
            return await fallback()

    async def ping(self) -> None:
        """Redis answers a PING within the deadline; raises when it does not."""
        async with asyncio.timeout(self._timeout):
            await self._client.ping()

    async def aclose(self) -> None:
        """Stop a probe under way."""
        probe, self._probe = self._probe, None
        if probe is not None and not probe.done():
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe

    def _trip(self, error: BaseException) -> None:
        if self._open:
            return
        self._open = True
        self._answered_locally = 0
        self._probe_at = self._clock() + self._retry_interval
        # redis-py names host and port in its messages, never the password.
        reason = str(error) or f"no answer within {self._timeout * 1000:g} ms"
        log.warning(
            "Redis is not answering (%s: %s); cooldowns, rate limits and the response cache "
            "use this process's own state until it answers again (asked every %g s)",
            type(error).__name__,
            reason,
            self._retry_interval,
        )

    def _maybe_probe(self) -> None:
        if self._probe is not None or self._clock() < self._probe_at:
            return
        self._probe = asyncio.get_running_loop().create_task(self._ping())

    async def _ping(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.ping()
        except self._failures:
            self._probe_at = self._clock() + self._retry_interval
        else:
            self._open = False
            log.warning(
                "Redis answers again; cooldowns, rate limits and the response cache are "
                "shared through it once more (%d operations were answered in-process)",
                self._answered_locally,
            )
        finally:
            self._probe = None
