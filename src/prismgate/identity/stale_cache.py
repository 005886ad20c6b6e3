"""A read-through cache of what the key store holds, trusted for a bounded time: the one
behind gateway keys (`authenticate.py`) and stored virtual keys (`virtual_key_cache.py`).

A value read from the store is kept `staleness` seconds, so a change made on another
instance takes effect everywhere within that time while a busy name costs the store about
one read per interval. Concurrent lookups of one name share one read; "not stored" is
remembered like any value (a caller trying names costs the store little); at most
`max_cached` names are kept, the least recently used going first. When the store does not
answer, a value read before is served as it was last read, and a name never read gets a
503.

`forget(name)` is for changes made through this instance: they take effect here at once.
A read that was under way when a change was made is used by the lookups that waited for
it, never kept, and never joined by a later lookup (it may hold what the change undid).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from prismgate.errors import ServiceUnavailableError

__all__ = ["DEFAULT_STALENESS", "MAX_CACHED", "StaleCache"]

log = logging.getLogger(__name__)

# How long a value read from the store is trusted: a revoked key, or a deleted virtual
# key, stops working on every instance within this time.
DEFAULT_STALENESS = 0.5
MAX_CACHED = 10_000

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class StaleCache(Generic[K, V]):
    """Values read by `read`, kept as the module docstring says. `what` names a value in
    log lines ("a key", "a virtual key"): never the name itself, which may be a secret."""

    def __init__(
        self,
        read: Callable[[K], Awaitable[V]],
        *,
        what: str,
        staleness: float = DEFAULT_STALENESS,
        max_cached: int = MAX_CACHED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._what = what
        self._staleness = staleness
        self._max_cached = max_cached
        self._clock = clock
        self._cached: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._reading: dict[K, asyncio.Future[V]] = {}
        # Counts forget() calls: a read that began before one is not kept.
        self._changes = 0

    def fresh(self, name: K) -> tuple[V] | None:
        """`(value,)` when `name` was read less than `staleness` ago, else None: what `get`
        answers at once, without the cost of awaiting it (the usual case, every call)."""
        cached = self._cached.get(name)
        if cached is not None and self._clock() - cached[0] < self._staleness:
            self._cached.move_to_end(name)
            return (cached[1],)
        return None

    async def get(self, name: K) -> V:
        """The value for `name`: cached if read less than `staleness` ago, else read (one
        read for every concurrent lookup). A 503 when the store does not answer and
        `name` was never read."""
        now = self._clock()
        cached = self._cached.get(name)
        if cached is not None and now - cached[0] < self._staleness:
            self._cached.move_to_end(name)
            return cached[1]
        reading = self._reading.get(name)
        if reading is not None:
            return await asyncio.shield(reading)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._reading[name] = future
        changes = self._changes
        try:
            found = await self._read(name)
        except Exception as exc:
            # As last read: a store outage does not stop every caller. Not when this
            # instance changed something since (what was cached may be what it undid).
            if cached is None or changes != self._changes:
                failure = ServiceUnavailableError(
                    "the gateway's key store is not answering; try again shortly",
                    code="key_store_unavailable",
                )
                future.set_exception(failure)
                future.exception()  # retrieved: no "never retrieved" warning when nobody waits
                log.warning("key store: %s could not be read (%s)", self._what, type(exc).__name__)
                raise failure from None
            log.warning("key store: %s is served as last read (%s)", self._what, type(exc).__name__)
            found = cached[1]
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            # forget() may have let a newer read take this name's place: leave that one.
            if self._reading.get(name) is future:
                del self._reading[name]
        future.set_result(found)
        if changes == self._changes:
            self._cached[name] = (now, found)
            self._cached.move_to_end(name)
            while len(self._cached) > self._max_cached:
                self._cached.popitem(last=False)
        return found

    def forget(self, name: K) -> None:
        """Drop `name` now (this instance changed it): the next lookup reads it again,
        rather than share or keep a read that began before the change."""
        self._cached.pop(name, None)
        self._reading.pop(name, None)
        self._changes += 1
