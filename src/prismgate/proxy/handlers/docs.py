"""`GET /docs`: an interactive API reference (Swagger UI) over `/openapi.json`.

Swagger UI's files come from the installed `swagger-ui-bundle-v2` package, which ships
Swagger UI's own npm distribution unchanged. They are served under `/docs/` from an
allowlist, so there is no build step and the page loads nothing from another origin (its
Content-Security-Policy allows this origin only; `data:` images are the stylesheet's own
icons). The page and its files are public, like the health checks: they say nothing about
this gateway. The document stays behind the gateway key, so on a gateway with a master
key the page asks for a key before it reads it.

Everything is found and built at import (startup): a request picks a prepared answer.
"""

from __future__ import annotations

import hashlib
import html
import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from prismgate.errors import NotFoundError, ServiceUnavailableError
from prismgate.proxy.state import ProxyState

__all__ = ["SwaggerUI", "asset", "find_swagger_ui", "page"]

# The files of Swagger UI the page uses, and their content types.
_SWAGGER_FILES = MappingProxyType(
    {
        "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
        "swagger-ui.css": "text/css; charset=utf-8",
        "swagger-ui.css.map": "application/json",
        "favicon-16x16.png": "image/png",
        "favicon-32x32.png": "image/png",
    }
)
_START_NAME = "start.js"
_START = (Path(__file__).parent / "docs.js").read_bytes()
# Swagger UI reads OpenAPI 3.1 (this gateway's document) from version 5 on.
_OLDEST_MAJOR = 5
_FOLDER = re.compile(r"swagger-ui-(\d+)\.(\d+)\.(\d+)")
_INSTALL = "pip install swagger-ui-bundle-v2"

_PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
_PAGE_HEADERS = MappingProxyType(
    {
        "content-security-policy": _PAGE_POLICY,
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        # The page names its files by version: it is revalidated, they are kept.
        "cache-control": "no-cache",
    }
)
_KEPT = "public, max-age=31536000, immutable"


@dataclass(frozen=True, slots=True)
class SwaggerUI:
    """The Swagger UI files to serve, or why there are none."""

    folder: Path | None
    version: str
    problem: str | None = None


def find_swagger_ui(vendor: Path | None = None) -> SwaggerUI:
    """The newest Swagger UI (5 or later) under `vendor` (by default the installed
    package's folder). The original `swagger-ui-bundle` package installs the same import
    name with Swagger UI 4, which cannot read OpenAPI 3.1: both may be on disk."""
    if vendor is None:
        try:
            vendor = Path(str(importlib.resources.files("swagger_ui_bundle") / "vendor"))
        except ModuleNotFoundError:
            return SwaggerUI(None, "", f"Swagger UI is not installed: {_INSTALL}")
    found: list[tuple[tuple[int, ...], Path]] = []
    for child in vendor.iterdir() if vendor.is_dir() else ():
        match = _FOLDER.fullmatch(child.name)
        if match and all((child / name).is_file() for name in _SWAGGER_FILES):
            found.append((tuple(int(part) for part in match.groups()), child))
    if not found or max(found)[0][0] < _OLDEST_MAJOR:
        return SwaggerUI(
            None,
            "",
            f"no Swagger UI {_OLDEST_MAJOR} or later is installed (older ones cannot read "
            f"OpenAPI 3.1): {_INSTALL}",
        )
    version, folder = max(found)
    return SwaggerUI(folder, ".".join(map(str, version)))


def _page(version: str, *, needs_key: bool) -> bytes:
    """The HTML page; its files' URLs carry `version`, so that browsers may keep them."""
    v = html.escape(version)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>prismgate API reference</title>
<link rel="stylesheet" href="/docs/swagger-ui.css?v={v}">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png?v={v}" sizes="32x32">
<link rel="icon" type="image/png" href="/docs/favicon-16x16.png?v={v}" sizes="16x16">
</head>
<body data-needs-key="{str(needs_key).lower()}">
<div class="swagger-ui"><div class="wrapper">
<form id="key-form" class="auth-container" hidden>
<h2>This gateway needs a key to show its API</h2>
<p>The master key or a key from <code>/key/generate</code>. It stays in this page.</p>
<label>Gateway key <input name="key" type="password" autocomplete="off" required></label>
<button class="btn authorize" type="submit">Show the API</button>
<p id="key-problem" class="errors" role="alert"></p>
</form>
</div></div>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js?v={v}"></script>
<script src="/docs/{_START_NAME}?v={v}"></script>
</body>
</html>
""".encode()


_SWAGGER = find_swagger_ui()
# One token for every file: Swagger UI's version and this page's own script.
_VERSION = f"{_SWAGGER.version}-{hashlib.sha256(_START).hexdigest()[:10]}"
_OPEN_PAGE = _page(_VERSION, needs_key=False)
_KEYED_PAGE = _page(_VERSION, needs_key=True)


async def page(request: Request) -> Response:
    """The reference page. A gateway with a master key makes the page ask for a key."""
    if _SWAGGER.problem is not None:
        raise ServiceUnavailableError(f"/docs is not available: {_SWAGGER.problem}")
    state: ProxyState = request.app.state.proxy
    body = _OPEN_PAGE if state.authenticator.open else _KEYED_PAGE
    return Response(body, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


async def asset(request: Request) -> Response:
    """One of the page's files, from the allowlist (anything else is a 404). Asked for
    with the current version, it may be kept for a year."""
    name = request.path_params["asset"]
    kept = request.query_params.get("v") == _VERSION
    headers = {"cache-control": _KEPT if kept else "no-cache", "x-content-type-options": "nosniff"}
    if name == _START_NAME:
        return Response(_START, media_type="text/javascript; charset=utf-8", headers=headers)
    media_type = _SWAGGER_FILES.get(name)
    if media_type is None or _SWAGGER.folder is None:
        raise NotFoundError(
            "no such file of the API reference; the reference is at /docs", code="unknown_url"
        )
    return FileResponse(_SWAGGER.folder / name, media_type=media_type, headers=headers)
