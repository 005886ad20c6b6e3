"""The console's own routes: its pages, sign-in and sign-out, and the session's CSRF
token. Everything else the console shows it reads from the API a client calls."""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from prismgate.errors import AuthenticationError, PrismgateError
from prismgate.identity import Principal
from prismgate.proxy.auth import headers_of, session_cookie, session_principal
from prismgate.proxy.responses import json_response
from prismgate.proxy.state import ProxyState
from prismgate.ui.sessions import ADMIN, COOKIE, CSRF_HEADER

__all__ = ["ROUTES"]

_HERE = Path(__file__).parent
_SHELL = (_HERE / "html" / "index.html").read_text()
_SIGN_IN = (_HERE / "html" / "login.html").read_text()

# The pages load only their own files; images may also come from the image store's
# signed links (same origin) and data: URLs (the playground's previews).
_PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
_NO_MASTER_KEY = (
    "The console needs a master key: set general_settings.master_key in the config, "
    "then sign in with it."
)


async def shell(request: Request) -> Response:
    """`GET /ui`: the console, for a signed-in admin; anyone else goes to sign in."""
    if await _signed_in(request) is None:
        return RedirectResponse("/ui/login", status_code=303, headers=_PAGE_HEADERS)
    return HTMLResponse(_SHELL, headers=_PAGE_HEADERS)


async def sign_in_page(request: Request) -> Response:
    """`GET /ui/login`: the sign-in form."""
    state = _state(request)
    if state.sessions is None:
        return _sign_in(_NO_MASTER_KEY, 503)
    return _sign_in("")


async def sign_in(request: Request) -> Response:
    """`POST /ui/login` (form field `key`): a session cookie for the master key or an
    admin's key, and on to the console. The key goes in the form body, never a URL."""
    state = _state(request)
    if state.sessions is None:
        return _sign_in(_NO_MASTER_KEY, 503)
    form = await request.form(max_files=0, max_fields=4)
    key = form.get("key")
    if not isinstance(key, str) or not key.strip():
        return _sign_in("Enter a key.", 400)
    try:
        principal = await state.authenticator.authenticate(key.strip())
    except AuthenticationError as error:
        return _sign_in(f"That key does not sign in: {error.message}.", 401)
    except PrismgateError as error:
        return _sign_in(error.message, error.status_code)
    if not principal.is_admin:
        return _sign_in(
            "That key works for the API, but the console needs the master key or a key "
            "whose user has the proxy_admin role.",
            403,
        )
    subject = ADMIN if principal.key is None else principal.key.token
    cookie = state.sessions.issue(subject)
    response = RedirectResponse("/ui", status_code=303, headers=_PAGE_HEADERS)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(state.sessions.lifetime),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def sign_out(request: Request) -> Response:
    """`POST /ui/logout`: ends the session (its CSRF token, from the form or header,
    proves the page asked)."""
    state = _state(request)
    cookie = session_cookie(headers_of(request.scope))
    if state.sessions is not None and cookie is not None:
        form = await request.form(max_files=0, max_fields=4)
        token = form.get("csrf_token") or request.headers.get(CSRF_HEADER)
        if not state.sessions.csrf_ok(cookie, token if isinstance(token, str) else None):
            return _sign_in("Sign-out was refused: reload the console and try again.", 403)
    response = RedirectResponse("/ui/login", status_code=303, headers=_PAGE_HEADERS)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def session_info(request: Request) -> Response:
    """`GET /ui/session`: who is signed in, the session's CSRF token and the seconds it has
    left, and what the console keeps (readable by the console's own origin only: no CORS
    headers are ever sent)."""
    state = _state(request)
    principal = await _signed_in(request)
    cookie = session_cookie(headers_of(request.scope))
    session = None if state.sessions is None else state.sessions.read(cookie)
    if principal is None or cookie is None or state.sessions is None or session is None:
        raise AuthenticationError("not signed in to the console: sign in at /ui/login")
    console = state.config.general_settings.console
    body: dict[str, Any] = {
        "csrf_token": state.sessions.csrf_token(cookie),
        "role": "proxy_admin" if principal.key is not None else "master_key",
        "key_alias": principal.key_alias if principal.key is not None else None,
        "expires_in": max(0, int(session.expires - time.time())),
        # What the pages may show: thumbnails and details only exist when they are kept.
        "console": {
            "keep_images": console.keep_images,
            "keep_request_details": console.keep_request_details,
            "keep_images_days": console.keep_images_days,
        },
    }
    return json_response(body, headers={"cache-control": "no-store"})


async def _signed_in(request: Request) -> Principal | None:
    state = _state(request)
    if state.sessions is None:
        return None
    cookie = session_cookie(headers_of(request.scope))
    return await session_principal(state.authenticator, state.sessions, cookie)


def _sign_in(error: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        _SIGN_IN.replace("{error}", html.escape(error)), status_code=status, headers=_PAGE_HEADERS
    )


def _state(request: Request) -> ProxyState:
    state: ProxyState = request.app.state.proxy
    return state


ROUTES: list[BaseRoute] = [
    Route("/ui", shell, methods=["GET"]),
    Route("/ui/", shell, methods=["GET"]),
    Route("/ui/login", sign_in_page, methods=["GET"]),
    Route("/ui/login", sign_in, methods=["POST"]),
    Route("/ui/logout", sign_out, methods=["POST"]),
    Route("/ui/session", session_info, methods=["GET"]),
    Mount("/ui/static", StaticFiles(directory=_HERE / "static"), name="console-static"),
]
