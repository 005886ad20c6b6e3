"""Stored virtual keys as records, and as the request path reads them.

A record keeps its name and provider in the clear and everything else (the provider key,
the other settings, the note) sealed with the operator's encryption key (`sealing.py`).

The request path reads stored keys through a small cache: a key read from the store is
kept `staleness` seconds (0.5), so a rotation or deletion takes effect on every instance
within that time while a busy key costs the store about one read per interval. Concurrent
lookups of one name share one read; names that are not stored are remembered too; the
cache holds at most `max_cached` names (least recently used go first). When the store
does not answer, a key read before is served as it was last read, and one never read gets
a 503. Changes made through this instance take effect here at once (`forget`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from prismgate.errors import ConfigError, PrismgateError, ServiceUnavailableError
from prismgate.identity.sealing import (
    ENCRYPTION_KEY_ENV,
    ENCRYPTION_KEY_SETTING,
    LITELLM_SALT_KEY_ENV,
    MIN_SECRET_CHARS,
    Sealer,
    SealError,
)
from prismgate.identity.virtual_key_wire import NAME_PATTERN
from prismgate.routing.virtual_keys import VirtualKey, secret_fields, virtual_key_params
from prismgate.storage import KeyStore
from prismgate.storage.records import ProviderKeyRecord

__all__ = [
    "DEFAULT_STALENESS",
    "MAX_CACHED",
    "NAME",
    "SET_A_KEY",
    "Opened",
    "Payload",
    "StoredKeyCache",
    "UnreadableError",
    "open_record",
    "seal_record",
]

log = logging.getLogger(__name__)

DEFAULT_STALENESS = 0.5
MAX_CACHED = 10_000
NAME = re.compile(NAME_PATTERN)
SET_A_KEY = (
    f"set {ENCRYPTION_KEY_SETTING} (or the environment variable {ENCRYPTION_KEY_ENV}, or "
    f"LiteLLM's {LITELLM_SALT_KEY_ENV}) to a secret of at least {MIN_SECRET_CHARS} characters"
)


class Payload(msgspec.Struct, frozen=True, kw_only=True):
    """What a record keeps sealed: every setting (secrets included) and the note."""

    fields: dict[str, Any]
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Opened:
    """A record's sealed part, opened; `current`: sealed with the current encryption key."""

    fields: dict[str, Any]
    note: str | None
    current: bool


class UnreadableError(PrismgateError):
    """A stored virtual key that does not open: the operator's to fix (500)."""

    default_code = "virtual_key_unreadable"


def seal_record(
    sealer: Sealer, name: str, provider: str, payload: Payload, *, created: float, updated: float
) -> ProviderKeyRecord:
    """The record of a virtual key, its payload sealed for its name and provider."""
    sealed = sealer.seal(msgspec.json.encode(payload), name=name, provider=provider)
    return ProviderKeyRecord(
        name=name, provider=provider, sealed=sealed, created_at=created, updated_at=updated
    )


def open_record(sealer: Sealer | None, record: ProviderKeyRecord) -> Opened:
    """What a record holds, or an `UnreadableError` naming it and saying why not."""
    if sealer is None:
        raise UnreadableError(
            f"the virtual key {record.name!r} is stored, but this gateway has no encryption "
            f"key to open it: {SET_A_KEY}"
        )
    try:
        opened = sealer.open(record.sealed, name=record.name, provider=record.provider)
        payload = msgspec.json.decode(opened.plaintext, type=Payload)
    except (SealError, msgspec.DecodeError) as error:
        raise UnreadableError(f"the virtual key {record.name!r} cannot be read: {error}") from None
    return Opened(fields=payload.fields, note=payload.note, current=opened.current)


def _secret_values(provider: str, opened: Opened) -> tuple[str, ...]:
    """The secrets a stored key holds, as they could appear in an upstream's message."""
    found: list[str] = []
    for name in secret_fields(provider):
        value = opened.fields.get(name)
        if isinstance(value, Mapping):
            private = value.get("private_key")
            found += [json.dumps(value), *([private] if isinstance(private, str) else [])]
        elif isinstance(value, str) and value:
            found.append(value)
    return tuple(found)


@dataclass(frozen=True, slots=True)
class _Unreadable:
    """A stored key that does not open (remembered like any read)."""

    message: str


_Entry = VirtualKey | _Unreadable | None


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
        self._staleness = staleness
        self._max_cached = max_cached
        self._clock = clock
        self._cached: OrderedDict[str, tuple[float, _Entry]] = OrderedDict()
        self._reading: dict[str, asyncio.Future[_Entry]] = {}
        # Counts changes made here: a read that began before one is not cached.
        self._changes = 0

    async def resolve(self, name: str) -> VirtualKey | None:
        """The stored virtual key called `name`, None when there is none; a 500 naming it
        when it is stored but does not open."""
        entry = await self._entry(name)
        if isinstance(entry, _Unreadable):
            raise UnreadableError(entry.message)
        return entry

    def forget(self, name: str) -> None:
        """Drop a cached name now (this instance changed it); lookups from now on read it
        again rather than share a read that began before the change."""
        self._cached.pop(name, None)
        self._reading.pop(name, None)
        self._changes += 1

    async def _entry(self, name: str) -> _Entry:
        if not NAME.fullmatch(name):
            return None  # no stored key has such a name: nothing to read
        now = self._clock()
        cached = self._cached.get(name)
        if cached is not None and now - cached[0] < self._staleness:
            self._cached.move_to_end(name)
            return cached[1]
        reading = self._reading.get(name)
        if reading is not None:
            return await asyncio.shield(reading)
        future: asyncio.Future[_Entry] = asyncio.get_running_loop().create_future()
        self._reading[name] = future
        changes = self._changes
        try:
            found = await self._read(name)
        except Exception as exc:
            if cached is None:
                failure = ServiceUnavailableError(
                    "the gateway's key store is not answering; try again shortly",
                    code="key_store_unavailable",
                )
                future.set_exception(failure)
                future.exception()  # retrieved: no "never retrieved" warning
                log.warning("key store: a virtual key could not be read (%s)", type(exc).__name__)
                raise failure from None
            # As last read: a store outage does not stop every call made with a stored key.
            log.warning("key store: a virtual key is served as last read (%s)", type(exc).__name__)
            found = cached[1]
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            if self._reading.get(name) is future:
                del self._reading[name]
        future.set_result(found)
        if changes != self._changes:
            return found  # read before a change made here: used once, not kept
        self._cached[name] = (now, found)
        self._cached.move_to_end(name)
        while len(self._cached) > self._max_cached:
            self._cached.popitem(last=False)
        return found

    async def _read(self, name: str) -> _Entry:
        record = await self._store.provider_key(name)
        if record is None:
            return None
        try:
            opened = open_record(self._sealer, record)
            params = virtual_key_params(record.provider, opened.fields, f"virtual key {name!r}")
        except UnreadableError as error:
            log.warning("%s", error.message)
            return _Unreadable(error.message)
        except ConfigError as error:  # stored by a version whose settings differ
            message = f"the virtual key {name!r} no longer fits its provider: {error}"
            log.warning("%s", message)
            return _Unreadable(message)
        return VirtualKey(record.provider, params, secrets=_secret_values(record.provider, opened))
