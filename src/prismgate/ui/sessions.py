"""Console sessions: a signed, HTTP-only cookie that names who signed in, and the CSRF
token that every state-changing request made with it must carry.

The cookie holds no key: the master key's session says `admin`, a generated key's says
the key's token (its SHA-256, what the key store keys it by), so a key revoked or blocked
ends its sessions at its next request. Cookies are signed with a secret derived from the
master key: every worker and every instance of the gateway reads the same sessions, and
changing the master key ends them all. Nothing is kept on the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import msgspec

__all__ = ["ADMIN", "COOKIE", "CSRF_HEADER", "Session", "SessionSigner"]

COOKIE = "prismgate_session"
CSRF_HEADER = "x-csrf-token"
# Who a session of the master key is.
ADMIN = "admin"
# How long a sign-in lasts.
SESSION_SECONDS = 12 * 3600


class Session(msgspec.Struct, frozen=True):
    """Who signed in (`ADMIN`, or a generated key's token) and until when (Unix s)."""

    subject: str
    expires: float


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Session).decode


class SessionSigner:
    """Issues and reads session cookies and their CSRF tokens."""

    def __init__(self, master_key: str, *, lifetime: float = SESSION_SECONDS) -> None:
        self._secret = hashlib.sha256(b"prismgate console session\0" + master_key.encode()).digest()
        self.lifetime = lifetime

    def issue(self, subject: str, *, now: float | None = None) -> str:
        """A cookie value for `subject`, valid for the session lifetime."""
        expires = (time.time() if now is None else now) + self.lifetime
        payload = base64.urlsafe_b64encode(_encode(Session(subject, expires))).rstrip(b"=")
        return f"{payload.decode()}.{self._sign(b'session', payload)}"

    def read(self, cookie: str | None, *, now: float | None = None) -> Session | None:
        """The session `cookie` carries, or None when it is missing, forged or expired."""
        # A signed cookie is ASCII; anything else (a hostile client's bytes) is forged.
        if not cookie or not cookie.isascii():
            return None
        payload, _, signature = cookie.partition(".")
        raw = payload.encode("ascii")
        if not _same(signature, self._sign(b"session", raw)):
            return None
        try:
            session = _decode(base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4)))
        except (ValueError, msgspec.DecodeError):
            return None
        if session.expires <= (time.time() if now is None else now):
            return None
        return session

    def csrf_token(self, cookie: str) -> str:
        """The CSRF token of the session `cookie`: the page reads it from `/ui/session`
        (same origin only) and sends it back as the `x-csrf-token` header."""
        return self._sign(b"csrf", cookie.encode("ascii", "replace"))

    def csrf_ok(self, cookie: str, token: str | None) -> bool:
        """Whether `token` is the CSRF token of `cookie`."""
        return token is not None and _same(token, self.csrf_token(cookie))

    def _sign(self, purpose: bytes, data: bytes) -> str:
        digest = hmac.new(self._secret, purpose + b"\0" + data, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _same(given: str, expected: str) -> bool:
    """Whether `given` is `expected` (ASCII), in constant time. `hmac.compare_digest`
    raises on a str that is not ASCII: such a value is simply not a match."""
    return given.isascii() and hmac.compare_digest(given, expected)
