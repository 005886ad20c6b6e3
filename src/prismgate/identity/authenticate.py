"""From a request's credentials to a `Principal`: the master key, a generated key (with
its team and user), or, on a gateway without a master key, any caller.

Generated keys are read from the key store through a `StaleCache` (`stale_cache.py`): a
key that was blocked, deleted or changed stops working everywhere within its staleness
(half a second), concurrent lookups of one key share one read, unknown keys are
remembered too, and when the store does not answer a key read before is served as it was
last read while a key never read gets a 503.

A key's digest is remembered too, for the keys that named a generated key (at most
`DIGESTS_KEPT`, the oldest going first): a busy key is digested once, not on every call.
This keeps those raw keys in memory for longer than a request, as the gateway already
keeps its master key and the providers' keys; keys that match nothing are never kept, so
a caller trying keys cannot fill it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime

from prismgate.errors import AuthenticationError
from prismgate.identity.keys import token_of
from prismgate.identity.principal import Principal
from prismgate.identity.stale_cache import DEFAULT_STALENESS, MAX_CACHED, StaleCache
from prismgate.storage import KeyStore

__all__ = ["DEFAULT_STALENESS", "DIGESTS_KEPT", "Authenticator"]

DIGESTS_KEPT = 4096  # keys whose digest is kept (SHA-256 and hex: ~6k instructions a call)

_ADMIN_SCOPE = "admin"
_ADMIN = Principal(role="admin", scope=_ADMIN_SCOPE)
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
        max_cached: int = MAX_CACHED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._master = master_key.encode() if master_key else None
        self.keys = keys
        self._cache: StaleCache[str, Principal | None] = StaleCache(
            self._read, what="a key", staleness=staleness, max_cached=max_cached, clock=clock
        )
        # Presented key -> its digest, for keys that named a generated key; insertion
        # order is age, so the oldest is the first.
        self._digests: dict[str, str] = {}

    @property
    def open(self) -> bool:
        """No master key: any caller is let in (what LiteLLM does without one)."""
        return self._master is None

    async def authenticate(self, presented: str | None) -> Principal:
        """The principal for `presented` (the key a request carries, or None)."""
        master = self._master
        if presented and master is not None and hmac.compare_digest(presented.encode(), master):
            return _ADMIN
        if presented:
            known = self._digests.get(presented)
            token = token_of(presented) if known is None else known
            fresh = self._cache.fresh(token) if self.keys is not None else None
            found = fresh[0] if fresh is not None else await self._lookup(token)
            if found is not None:
                if known is None:
                    self._remember(presented, token)
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

    async def admin_by_token(self, token: str) -> Principal | None:
        """The principal of a console session: `token` names a generated key (its token,
        not the key). None when that key no longer works or is no longer an admin's."""
        found = await self._lookup(token)
        if found is None:
            return None
        try:
            _check_live(found)
        except AuthenticationError:
            return None
        return found if found.is_admin else None

    def admin(self) -> Principal:
        """The master key's principal (a console session of the master key)."""
        return _ADMIN

    def forget(self, token: str) -> None:
        """Drop a cached key now (this instance changed it): a read of it already under
        way is not kept, so a key just blocked cannot be cached again as it was."""
        self._cache.forget(token)
        # Nor its raw key (a key changed here is usually one being deleted or blocked).
        for presented in [p for p, digest in self._digests.items() if digest == token]:
            del self._digests[presented]

    def _remember(self, presented: str, token: str) -> None:
        """Keep `presented`'s digest (a key that names a generated key)."""
        digests = self._digests
        if len(digests) >= DIGESTS_KEPT:
            del digests[next(iter(digests))]
        digests[presented] = token

    async def _lookup(self, token: str) -> Principal | None:
        if self.keys is None:
            return None
        return await self._cache.get(token)

    async def _read(self, token: str) -> Principal | None:
        keys = self.keys
        if keys is None:
            return None
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
    team = principal.team
    expired = key.expires is not None and key.expires <= time.time()
    if key.deleted_at is None and not key.blocked and not expired and not (team and team.blocked):
        return  # the usual case, on every call: no name to make
    name = principal.key_alias
    if key.deleted_at is not None:
        raise AuthenticationError(f"the API key {name} was deleted", code="key_deleted")
    if key.blocked:
        raise AuthenticationError(
            f"the API key {name} is blocked; an admin can unblock it (POST /key/unblock)",
            code="key_blocked",
        )
    if expired:
        raise AuthenticationError(
            f"the API key {name} expired at {_iso(key.expires or 0.0)}", code="key_expired"
        )
    assert team is not None  # what is left: its team is blocked
    raise AuthenticationError(
        f"the team {team.team_alias or team.team_id} of API key {name} is blocked",
        code="team_blocked",
    )


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")
