"""A virtual key stored over the API, as a record of the key store: its name and provider
in the clear, everything else (the provider key, the other settings, the note) sealed
with the operator's encryption key (`sealing.py`), bound to that name and provider.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from prismgate.errors import PrismgateError
from prismgate.identity.sealing import (
    ENCRYPTION_KEY_ENV,
    ENCRYPTION_KEY_SETTING,
    LITELLM_SALT_KEY_ENV,
    MIN_SECRET_CHARS,
    Sealer,
    SealError,
)
from prismgate.identity.virtual_key_wire import NAME_PATTERN
from prismgate.storage.records import ProviderKeyRecord

__all__ = [
    "NAME",
    "SET_A_KEY",
    "OpenedRecord",
    "Payload",
    "UnreadableError",
    "open_record",
    "seal_record",
]

# What a stored virtual key may be called: a name that cannot match is never looked up.
NAME = re.compile(NAME_PATTERN)
# How to give the gateway an encryption key: said to the operator, never to a caller.
SET_A_KEY = (
    f"set {ENCRYPTION_KEY_SETTING} (or the environment variable {ENCRYPTION_KEY_ENV}, or "
    f"LiteLLM's {LITELLM_SALT_KEY_ENV}) to a secret of at least {MIN_SECRET_CHARS} characters"
)


class Payload(msgspec.Struct, frozen=True, kw_only=True):
    """What a record keeps sealed: every setting (secrets included) and the note."""

    fields: dict[str, Any]
    note: str | None = None


@dataclass(frozen=True, slots=True)
class OpenedRecord:
    """A record's sealed part, opened; `current`: sealed with the current encryption key."""

    fields: dict[str, Any]
    note: str | None
    current: bool


class UnreadableError(PrismgateError):
    """A stored virtual key that does not open: the operator's to fix (500). Its message
    names the record and the setting; it is for the operator (the management API, the
    log), never for a caller who only names the key."""

    default_code = "virtual_key_unreadable"


def seal_record(
    sealer: Sealer, name: str, provider: str, payload: Payload, *, created: float, updated: float
) -> ProviderKeyRecord:
    """The record of a virtual key, its payload sealed for its name and provider."""
    sealed = sealer.seal(msgspec.json.encode(payload), name=name, provider=provider)
    return ProviderKeyRecord(
        name=name, provider=provider, sealed=sealed, created_at=created, updated_at=updated
    )


def open_record(sealer: Sealer | None, record: ProviderKeyRecord) -> OpenedRecord:
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
    return OpenedRecord(fields=payload.fields, note=payload.note, current=opened.current)
