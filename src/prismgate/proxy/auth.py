"""Inbound authentication: the master key, compared in constant time, on the raw path."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from prismgate.errors import AuthenticationError
from prismgate.proxy.responses import error_response

__all__ = ["PUBLIC_PATHS", "MasterKeyAuth", "presented_key"]

# Exactly these paths answer without a key (the router sees the same raw path), and
# stored images, whose links carry their own signature.
PUBLIC_PATHS = frozenset({"/health/liveliness", "/health/liveness", "/health/readiness"})
PUBLIC_PREFIX = "/v1/images/files/"


def presented_key(headers: dict[str, str]) -> str | None:
    """The caller's gateway key: a non-empty `x-portkey-api-key` (Portkey clients, whose
    Authorization header carries a provider key), else `Authorization: Bearer`,
    `x-api-key` or `api-key`."""
    portkey = headers.get("x-portkey-api-key", "").strip()
    if portkey:
        return portkey
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or headers.get("api-key") or None


class MasterKeyAuth:
    """Plain-ASGI middleware: every path but PUBLIC_PATHS needs the master key."""

    def __init__(self, app: ASGIApp, master_key: str | None) -> None:
        self.app = app
        self._key = master_key.encode() if master_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if self._key is None or not path or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        key = presented_key(headers)
        if key is None or not hmac.compare_digest(key.encode(), self._key):
            error = AuthenticationError(
                "missing or wrong API key: send the gateway key as 'Authorization: Bearer "
                "<key>' (or x-api-key, api-key, x-portkey-api-key)"
                if key is None
                else "the API key is not valid for this gateway"
            )
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)
