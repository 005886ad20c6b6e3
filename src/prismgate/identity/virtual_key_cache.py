"""Stored virtual keys as the request path reads them: through a `StaleCache`
(`stale_cache.py`), so a rotation or deletion takes effect on every instance within half
a second while a busy key costs the store about one read per interval, and a key read
before keeps working through a store outage. Changes made through this instance take
effect here at once (`forget`).

A stored key that does not open (no encryption key, a secret no longer listed, a record
that no longer fits its provider) is the operator's to fix: the reason goes to the log,
and a caller naming it is answered as for a name that is not stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prismgate.config_secrets import setting_secrets
from prismgate.errors import ConfigError
from prismgate.identity.sealing import Sealer
from prismgate.identity.stale_cache import DEFAULT_STALENESS, MAX_CACHED, StaleCache
from prismgate.identity.virtual_key_records import NAME, UnreadableError, open_record
from prismgate.observability.redaction import Redactor
from prismgate.routing.virtual_keys import VirtualKey, secret_fields, virtual_key_params
from prismgate.storage import KeyStore

__all__ = ["StoredKeyCache"]

log = logging.getLogger(__name__)

# Shapes of credentials, for log lines that quote a reason (the record's own secrets are
# never opened into one).
_redact = Redactor()


class StoredKeyCache:
    """Resolves stored virtual keys for calls, through the cache described above."""

    def __init__(
        self,
        store: KeyStore,
        sealer: Sealer | None,
        *,
        staleness: float = DEFAULT_STALENESS,
        max_cached: int = MAX_CACHED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._cache: StaleCache[str, VirtualKey | None] = StaleCache(
            self._read,
            what="a virtual key",
            staleness=staleness,
            max_cached=max_cached,
            clock=clock,
        )

    async def resolve(self, name: str) -> VirtualKey | None:
        """The stored virtual key called `name`; None when none is stored, or when the
        stored one does not open (the log says why)."""
        if not NAME.fullmatch(name):
            return None  # no stored key has such a name: nothing to read
        return await self._cache.get(name)

    def forget(self, name: str) -> None:
        """Drop a cached name now (this instance changed it)."""
        self._cache.forget(name)

    async def _read(self, name: str) -> VirtualKey | None:
        record = await self._store.provider_key(name)
        if record is None:
            return None
        try:
            opened = open_record(self._sealer, record)
            params = virtual_key_params(record.provider, opened.fields, f"virtual key {name!r}")
        except UnreadableError as error:
            _unusable(error.message)
            return None
        except ConfigError as error:  # stored by a version whose settings differ
            _unusable(f"the virtual key {name!r} no longer fits its provider: {error}")
            return None
        names = secret_fields(record.provider)
        secrets = tuple(setting_secrets(opened.fields, names))
        return VirtualKey(record.provider, params, stored=True, secrets=secrets)


def _unusable(reason: str) -> None:
    # Logged each time the key is read (at most about twice a second per name): calls
    # naming it are refused as an unknown name meanwhile, so the log is where it shows.
    log.warning("calls naming a stored virtual key are refused: %s", _redact(reason))
