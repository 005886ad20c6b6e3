"""Gateway keys: how they are made, named and digested. A key is shown once, when made;
stores keep only its digest (`token`), so a database dump reveals no key."""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["KEY_PREFIX", "key_name", "new_key", "token_of"]

KEY_PREFIX = "sk-"


def new_key() -> str:
    """A fresh key: `sk-` and 32 random bytes, URL-safe (256 bits: no digest of it can be
    searched back to it)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def token_of(key: str) -> str:
    """The digest a key is stored and looked up by (SHA-256, hex; LiteLLM's `token`)."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_name(key: str) -> str:
    """How a key is shown after it was made: `sk-...wxyz`."""
    return f"{KEY_PREFIX}...{key[-4:]}"
