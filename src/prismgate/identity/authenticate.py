"""From a request's credentials to a `Principal`: the master key, a generated key (with
its team and user), or, on a gateway without a master key, any caller.

Generated keys are read from the key store and kept for `staleness` seconds, so a key
that was blocked, deleted or changed stops working everywhere within that time while the
hot path reads the store about once per key per interval. Concurrent lookups of one key
share one read; unknown keys are remembered too (a caller trying keys costs the store
little), within a bounded number of entries. When the store does not answer, a key read
before is served as it was last read, and a key never read gets a 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from prismgate.errors import AuthenticationError, ServiceUnavailableError
from prismgate.identity.keys import token_of
from prismgate.identity.principal import Principal
from prismgate.storage import KeyStore

__all__ = ["DEFAULT_STALENESS", "Authenticator"]

log = logging.getLogger(__name__)

# How long a key read from the store is trusted: a revoked key stops working on every
# instance within this time.
DEFAULT_STALENESS = 0.5
_MAX_CACHED = 10_000
_ADMIN_SCOPE = "admin"
# Callers of an open gateway who send no key share one scope.
_KEYLESS = Principal(role="open", scope=hashlib.sha256(b"").hexdigest()[:24])


class Authenticator:
    """Turns a presented key into a principal, or an `AuthenticationError` that says why."""

    def __init__(
        self,
        master_key: str | None,
        keys: KeyStore | None,
        *,
        staleness: float = DEFAULT_STALENESS,
        max_cached: int = _MAX_CACHED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._master = master_key.encode() if master_key else None
        self.keys = keys
        self._staleness = staleness
        self._max_cached = max_cached
        self._clock = clock
        self._cached: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._reading: dict[str, asyncio.Future[Principal | None]] = {}

    @property
    def open(self) -> bool:
        """No master key: any caller is let in (what LiteLLM does without one)."""
        return self._master is None

    async def authenticate(self, presented: str | None) -> Principal:
        """The principal for `presented` (the key a request carries, or None)."""
        master = self._master
        if presented and master is not None and hmac.compare_digest(presented.encode(), master):
            return Principal(role="admin", scope=_ADMIN_SCOPE)
        if presented:
            token = token_of(presented)
            found = await self._lookup(token)
            if found is not None:
                _check_live(found)
                return found
            if self._master is None:
                return Principal(role="open", scope=token[:24])
        elif self._master is None:
            return _KEYLESS
        raise AuthenticationError(
            "missing API key: send the gateway key as 'Authorization: Bearer <key>' (or "
            "x-api-key, api-key, x-portkey-api-key)"
            if not presented
            else "the API key is not valid for this gateway"
        )

    def forget(self, token: str) -> None:
        """Drop a cached key now (this instance changed it)."""
        self._cached.pop(token, None)

    async def _lookup(self, token: str) -> Principal | None:
        if self.keys is None:
            return None
        now = self._clock()
        cached = self._cached.get(token)
        if cached is not None and now - cached[0] < self._staleness:
            return cached[1]
        reading = self._reading.get(token)
        if reading is not None:
            return await asyncio.shield(reading)
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._reading[token] = future
        try:
            found = await self._read(self.keys, token)
        except Exception as exc:
            if cached is None:
                failure = ServiceUnavailableError(
                    "the gateway's key store is not answering; try again shortly",
                    code="key_store_unavailable",
                )
                future.set_exception(failure)
                future.exception()  # retrieved: no "never retrieved" warning when nobody waits
                log.warning("key store: a key could not be read (%s)", type(exc).__name__)
                raise failure from None
            # The key as last read: a store outage does not lock out every caller.
            log.warning("key store: a key is served as last read (%s)", type(exc).__name__)
            found = cached[1]
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            self._reading.pop(token, None)
        future.set_result(found)
        self._cached[token] = (now, found)
        self._cached.move_to_end(token)
        while len(self._cached) > self._max_cached:
            self._cached.popitem(last=False)
        return found

    @staticmethod
    async def _read(keys: KeyStore, token: str) -> Principal | None:
        key = await keys.key(token)
        if key is None:
            return None
        team = await keys.team(key.team_id) if key.team_id else None
        user = await keys.user(key.user_id) if key.user_id else None
        return Principal(role="key", scope=token[:24], key=key, team=team, user=user)


def _check_live(principal: Principal) -> None:
    """A 401 for a key that was deleted, blocked or has expired, saying which."""
    key = principal.key
    assert key is not None
    name = principal.key_alias
    if key.deleted_at is not None:
        raise AuthenticationError(f"the API key {name} was deleted", code="key_deleted")
    if key.blocked:
        raise AuthenticationError(
            f"the API key {name} is blocked; an admin can unblock it (POST /key/unblock)",
            code="key_blocked",
        )
    if key.expires is not None and key.expires <= time.time():
        raise AuthenticationError(
            f"the API key {name} expired at {_iso(key.expires)}", code="key_expired"
        )
    if principal.team is not None and principal.team.blocked:
        raise AuthenticationError(
            f"the team {principal.team.team_alias or principal.team.team_id} of API key "
            f"{name} is blocked",
            code="team_blocked",
        )


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")
