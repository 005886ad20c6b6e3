"""Sealing secrets at rest: the provider keys of virtual keys made over the API.

A sealed blob is

    version (1 byte) | key id (8 bytes) | nonce (12 bytes) | AES-256-GCM ciphertext + tag

The AES key is derived by HKDF-SHA256 from a secret the operator provides
(`general_settings.encryption_key`, else the environment's `PRISMGATE_ENCRYPTION_KEY`, else
LiteLLM's `LITELLM_SALT_KEY`); the key id is a second HKDF output, so a blob says which
secret sealed it without revealing anything of it. The record's name and provider are
bound as associated data: a blob copied to another name or provider does not open.

Rotation: `encryption_key` may be a list. The first secret seals; every one opens. A record
sealed with an older secret keeps working, and is sealed again with the first one when
it is next updated. A record no listed secret opens is reported to the operator (the
admin's view of it, the log) naming the record and the setting; it is never guessed at
with the master key.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from prismgate.config import Config
from prismgate.errors import ConfigError

__all__ = [
    "ENCRYPTION_KEY_ENV",
    "ENCRYPTION_KEY_SETTING",
    "LITELLM_SALT_KEY_ENV",
    "MIN_SECRET_CHARS",
    "Opened",
    "SealError",
    "Sealer",
    "sealer_from_config",
]

ENCRYPTION_KEY_SETTING = "general_settings.encryption_key"
ENCRYPTION_KEY_ENV = "PRISMGATE_ENCRYPTION_KEY"
LITELLM_SALT_KEY_ENV = "LITELLM_SALT_KEY"  # LiteLLM's name for the same secret
# HKDF does not stretch a weak secret: ask for one that needs no stretching.
MIN_SECRET_CHARS = 16

_VERSION = 1
_KEY_ID_BYTES = 8
_NONCE_BYTES = 12
_HEADER_BYTES = 1 + _KEY_ID_BYTES + _NONCE_BYTES
_SALT = b"prismgate sealed records"


class SealError(Exception):
    """A blob that does not open: the reason, never any secret."""


@dataclass(frozen=True, slots=True)
class Opened:
    """What a blob held, and whether the sealing secret (the first) sealed it."""

    plaintext: bytes
    current: bool


@dataclass(frozen=True, slots=True)
class _Key:
    key_id: bytes
    aead: AESGCM


def _derive(secret: str) -> _Key:
    def hkdf(info: bytes, length: int) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT, info=info).derive(
            secret.encode()
        )

    return _Key(
        key_id=hkdf(b"prismgate/sealing/v1/key-id", _KEY_ID_BYTES),
        aead=AESGCM(hkdf(b"prismgate/sealing/v1/aes-256-gcm", 32)),
    )


class Sealer:
    """Seals with the first of `secrets_` and opens with any of them."""

    def __init__(self, secrets_: Sequence[str]) -> None:
        if not secrets_:
            raise ValueError("a sealer needs at least one secret")
        self._keys = [_derive(secret) for secret in secrets_]

    def seal(self, plaintext: bytes, *, name: str, provider: str) -> bytes:
        """`plaintext` sealed for the record `name` of `provider` (a fresh nonce each time)."""
        key = self._keys[0]
        nonce = secrets.token_bytes(_NONCE_BYTES)
        header = bytes([_VERSION]) + key.key_id + nonce
        return header + key.aead.encrypt(nonce, plaintext, _bound(header, name, provider))

    def open(self, sealed: bytes, *, name: str, provider: str) -> Opened:
        """What `sealed` holds, or a `SealError` saying why it does not open."""
        if len(sealed) < _HEADER_BYTES or sealed[0] != _VERSION:
            version = sealed[0] if sealed else None
            raise SealError(
                f"it was sealed in a format this version does not read (version {version}); "
                "run the prismgate version that stored it, or store it again"
            )
        key_id = sealed[1 : 1 + _KEY_ID_BYTES]
        for index, key in enumerate(self._keys):
            if key.key_id != key_id:
                continue
            header = sealed[:_HEADER_BYTES]
            nonce = header[1 + _KEY_ID_BYTES :]
            try:
                plaintext = key.aead.decrypt(
                    nonce, sealed[_HEADER_BYTES:], _bound(header, name, provider)
                )
            except InvalidTag:
                raise SealError(
                    "it does not open with the secret that sealed it: the stored record was "
                    "altered, or copied from another name"
                ) from None
            return Opened(plaintext, current=index == 0)
        raise SealError(
            f"it was sealed with an encryption key this gateway does not have; add that key "
            f"to {ENCRYPTION_KEY_SETTING} (a list: the first seals, every one opens), or "
            "store the virtual key again"
        )


def _bound(header: bytes, name: str, provider: str) -> bytes:
    # The associated data: the header, then the record it belongs to (NUL cannot occur in
    # a name or provider, so no two records share one encoding).
    return header + name.encode() + b"\x00" + provider.encode()


def sealer_from_config(config: Config) -> Sealer | None:
    """The sealer for `config`'s encryption key, or None when it names none. A ConfigError
    for a secret too short to be one."""
    configured = config.general_settings.encryption_key
    where = ENCRYPTION_KEY_SETTING
    if configured is None:
        for name in (ENCRYPTION_KEY_ENV, LITELLM_SALT_KEY_ENV):
            if config.environ.get(name):
                configured, where = config.environ[name], name
                break
    if configured is None:
        return None
    listed = [configured] if isinstance(configured, str) else list(configured)
    if not listed:
        return None
    for index, secret in enumerate(listed):
        if len(secret) < MIN_SECRET_CHARS:
            at = where if isinstance(configured, str) else f"{where}[{index}]"
            raise ConfigError(
                f"{at}: an encryption key needs at least {MIN_SECRET_CHARS} characters; "
                "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
    return Sealer(listed)
