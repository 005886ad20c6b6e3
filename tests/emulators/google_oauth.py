"""Google's OAuth 2.0 token endpoint, for a test service account the emulator owns.

:class:`ServiceAccount` holds an RSA key pair (made once per process) and renders
the service-account JSON that ``google.oauth2.service_account.Credentials`` loads.
:func:`verify_assertion` checks a JWT-bearer grant as Google does: RS256 signature
against that key, issuer, audience, a lifetime of at most an hour. Nothing here
does I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JsonObject = dict[str, Any]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # google-auth always uses it as `aud`
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
_LEGACY_AUDIENCES = (
    "https://accounts.google.com/o/oauth2/token",
    "https://www.googleapis.com/oauth2/v4/token",
)
_SHORT_LIVED = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the assertion and use a clock with skew to account for "
    "clock differences between systems."
)
_SKEW = 300


class OAuthError(Exception):
    """``{"error": code, "error_description": ...}`` with status 400 (401 for bad clients)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> JsonObject:
        return {"error": self.error, "error_description": self.description}


@lru_cache(maxsize=1)
def _private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    project_id: str
    client_email: str
    client_id: str

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        return _private_key()

    @property
    def private_key_id(self) -> str:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha1(public).hexdigest()  # an id, not security

    def info(self, token_uri: str) -> JsonObject:
        """The service-account key file, as Google's console downloads it."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": self.client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
            + self.client_email.replace("@", "%40"),
            "universe_domain": "googleapis.com",
        }


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def verify_assertion(
    assertion: str, account: ServiceAccount, token_uri: str, now: float | None = None
) -> JsonObject:
    """The JWT's claims, if Google would grant a token for it; else :class:`OAuthError`."""
    parts = assertion.split(".")
    if len(parts) != 3:
        raise OAuthError("invalid_grant", "Invalid JWT: JWT must have three segments.")
    try:
        header = json.loads(_b64url(parts[0]))
        claims = json.loads(_b64url(parts[1]))
        signature = _b64url(parts[2])
    except (ValueError, binascii.Error):
        raise OAuthError("invalid_grant", "Invalid JWT: could not decode the JWT.") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise OAuthError("invalid_grant", "Invalid JWT: could not decode the JWT.")
    if claims.get("iss") != account.client_email:
        raise OAuthError("invalid_grant", "Invalid grant: account not found")
    if header.get("alg") != "RS256":
        raise OAuthError("invalid_grant", "Invalid JWT Signature.")
    signed = f"{parts[0]}.{parts[1]}".encode()
    try:
        account.private_key.public_key().verify(
            signature, signed, padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        raise OAuthError("invalid_grant", "Invalid JWT Signature.") from None
    if claims.get("aud") not in (token_uri, GOOGLE_TOKEN_URI, *_LEGACY_AUDIENCES):
        raise OAuthError("invalid_grant", "Invalid JWT: Failed audience check.")
    iat, exp = claims.get("iat"), claims.get("exp")
    now = time.time() if now is None else now
    if not isinstance(iat, int | float) or not isinstance(exp, int | float):
        raise OAuthError("invalid_grant", _SHORT_LIVED)
    if exp - iat > 3600 or exp <= iat or iat > now + _SKEW or exp < now - _SKEW:
        raise OAuthError("invalid_grant", _SHORT_LIVED)
    scope = claims.get("scope")
    if not isinstance(scope, str) or not scope.strip():
        raise OAuthError("invalid_scope", "Empty or missing scope not allowed.")
    return claims
