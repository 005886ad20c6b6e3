"""Inbound authentication, on the raw path: the request's key becomes a `Principal` in
`scope["state"]["principal"]`, once, before any handler runs; and the one check of the
management routes (`require_admin`)."""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from prismgate.errors import PermissionDeniedError, PrismgateError
from prismgate.identity import Authenticator, Principal
from prismgate.proxy.responses import error_response
from prismgate.ui.sessions import ADMIN, COOKIE, CSRF_HEADER, SessionSigner

__all__ = [
    "PUBLIC_PATHS",
    "Authenticate",
    "headers_of",
    "presented_key",
    "principal_of",
    "require_admin",
    "session_cookie",
    "session_principal",
]

# Exactly these paths answer without a key (the router sees the same raw path), and
# stored images, whose links carry their own signature, and the API reference page and
# its files (proxy/handlers/docs.py), which hold nothing of this gateway's.
PUBLIC_PATHS = frozenset({"/health/liveliness", "/health/liveness", "/health/readiness", "/docs"})
PUBLIC_PREFIXES = ("/v1/images/files/", "/docs/")
# The console's pages, which check their own session (ui/handlers.py).
CONSOLE_PATH = "/ui"
CONSOLE_PREFIX = "/ui/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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
    key, or a console session); the others get a 401 that says why.

    The console's own pages (`/ui`) check their session themselves, so that a visitor
    who is not signed in is sent to the sign-in page rather than given a JSON 401. A
    request with no key but a console session cookie is the session's admin; one that
    changes something (any method but GET and HEAD) must also carry the session's CSRF
    token, so that another site cannot make the browser act with the cookie.
    """

    def __init__(
        self, app: ASGIApp, authenticator: Authenticator, sessions: SessionSigner | None = None
    ) -> None:
        self.app = app
        self._authenticator = authenticator
        self._sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if (
            not path
            or path in PUBLIC_PATHS
            or path.startswith(PUBLIC_PREFIXES)
            or path == CONSOLE_PATH
            or path.startswith(CONSOLE_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        headers = headers_of(scope)
        presented = presented_key(headers)
        try:
            if presented is None and self._sessions is not None and "cookie" in headers:
                principal = await self._from_session(scope, headers, self._sessions)
            else:
                principal = await self._authenticator.authenticate(presented)
        except PrismgateError as error:
            await error_response(error)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    async def _from_session(
        self, scope: Scope, headers: dict[str, str], sessions: SessionSigner
    ) -> Principal:
        cookie = session_cookie(headers)
        principal = await session_principal(self._authenticator, sessions, cookie)
        if principal is None:
            # An ended session is no session: the usual refusal, naming the key to send.
            return await self._authenticator.authenticate(None)
        assert cookie is not None
        if scope["method"] not in SAFE_METHODS and not sessions.csrf_ok(
            cookie, headers.get(CSRF_HEADER)
        ):
            raise PermissionDeniedError(
                f"a console request that changes something needs the {CSRF_HEADER} header "
                "of its session (GET /ui/session gives it)",
                code="csrf_token_invalid",
            )
        return principal


def session_cookie(headers: dict[str, str]) -> str | None:
    """The console session cookie the request carries, if any."""
    raw = headers.get("cookie")
    if not raw:
        return None
    cookies = SimpleCookie()
    try:
        cookies.load(raw)
    except CookieError:
        return None
    morsel = cookies.get(COOKIE)
    return morsel.value if morsel is not None else None


async def session_principal(
    authenticator: Authenticator, sessions: SessionSigner, cookie: str | None
) -> Principal | None:
    """The admin a console session cookie names, while the session and its key last."""
    session = sessions.read(cookie)
    if session is None:
        return None
    if session.subject == ADMIN:
        return authenticator.admin()
    return await authenticator.admin_by_token(session.subject)
