"""Inbound authentication, on the raw path: the request's key becomes a `Principal` in
`scope["state"]["principal"]`, once, before any handler runs; and the one check of the
management routes (`require_admin`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from prismgate.errors import PermissionDeniedError, PrismgateError
from prismgate.identity import Authenticator, Principal
from prismgate.proxy.responses import error_response

__all__ = [
    "PUBLIC_PATHS",
    "Authenticate",
    "headers_of",
    "presented_key",
    "principal_of",
    "require_admin",
]

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


def headers_of(scope: Scope) -> dict[str, str]:
    """The request's headers as one dict (ASGI gives their names lower-case), made once per
    request and kept in its state for every later reader."""
    state = scope.setdefault("state", {})
    headers: dict[str, str] | None = state.get("headers")
    if headers is None:
        headers = state["headers"] = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
    return headers


def principal_of(scope: Scope) -> Principal:
    """The caller `Authenticate` found for this request."""
    principal: Principal = scope["state"]["principal"]
    return principal


def require_admin(request: Request) -> Principal:
    """The caller of a management route (keys, teams, users, spend, virtual keys), who
    must hold the master key; a 403 `master_key_required` saying how otherwise."""
    principal = principal_of(request.scope)
    if principal.is_admin:
        return principal
    who = (
        "this gateway has no master key: set general_settings.master_key and send it"
        if principal.role == "open"
        else f"the key {principal.key_alias} is not it: send the master key"
    )
    raise PermissionDeniedError(
        "the management API (keys, teams, users, spend, virtual keys) needs the master key, "
        f"and {who} as 'Authorization: Bearer <master key>'",
        code="master_key_required",
    )


class Authenticate:
    """Plain-ASGI middleware: every path but PUBLIC_PATHS needs a caller the authenticator
    accepts (the master key, a live generated key, anyone on a gateway without a master
    key); the others get a 401 that says why."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self._authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if not path or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = headers_of(scope)
        try:
            principal = await self._authenticator.authenticate(presented_key(headers))
        except PrismgateError as error:
            await error_response(error)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)
