"""Portkey's virtual-key API: `/v1/virtual-keys` (and without `/v1`), master key only.

    POST   /v1/virtual-keys          create (name, provider, key, note, provider settings)
    GET    /v1/virtual-keys          list (`current_page` from 0, `page_size`, default 50)
    GET    /v1/virtual-keys/{slug}   retrieve
    PUT    /v1/virtual-keys/{slug}   update: rotate the key, change settings
    DELETE /v1/virtual-keys/{slug}   delete

The slug is the name. No answer ever holds a secret (see `identity/virtual_key_wire.py`).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from prismgate.errors import ServiceUnavailableError
from prismgate.identity.virtual_keys import StoredVirtualKeys
from prismgate.proxy.auth import require_admin
from prismgate.proxy.body import management_body
from prismgate.proxy.query import int_query
from prismgate.proxy.responses import json_response
from prismgate.proxy.state import ProxyState

__all__ = ["ROUTES"]

_MAX_PAGE_SIZE = 1000


def _service(request: Request) -> StoredVirtualKeys:
    """The virtual-key service, for the master key only."""
    require_admin(request)
    state: ProxyState = request.app.state.proxy
    if state.virtual_keys is None:
        raise ServiceUnavailableError(
            "this gateway has no key store: stored virtual keys need its database "
            "(general_settings.database_url, or the embedded SQLite file when serving)"
        )
    return state.virtual_keys


async def create(request: Request) -> Response:
    """`POST /v1/virtual-keys`: store a new virtual key; answers its view (no secret)."""
    service = _service(request)
    return json_response(await service.create(await management_body(request)))


async def list_keys(request: Request) -> Response:
    """`GET /v1/virtual-keys`: the config's and the stored virtual keys."""
    service = _service(request)
    size = int_query(request, "page_size", 50, most=_MAX_PAGE_SIZE)
    page = int_query(request, "current_page", 0)
    return json_response(await service.list(page=page, size=max(size, 1)))


async def retrieve(request: Request) -> Response:
    """`GET /v1/virtual-keys/{slug}`."""
    service = _service(request)
    return json_response(await service.retrieve(request.path_params["slug"]))


async def update(request: Request) -> Response:
    """`PUT /v1/virtual-keys/{slug}`: change the fields sent (null removes one)."""
    service = _service(request)
    body = await management_body(request)
    return json_response(await service.update(request.path_params["slug"], body))


async def delete(request: Request) -> Response:
    """`DELETE /v1/virtual-keys/{slug}`."""
    service = _service(request)
    return json_response(await service.delete(request.path_params["slug"]))


ROUTES: list[tuple[str, Any, str]] = [
    (prefix + path, handler, method)
    for prefix in ("/v1", "")
    for path, handler, method in (
        ("/virtual-keys", create, "POST"),
        ("/virtual-keys", list_keys, "GET"),
        ("/virtual-keys/{slug}", retrieve, "GET"),
        ("/virtual-keys/{slug}", update, "PUT"),
        ("/virtual-keys/{slug}", delete, "DELETE"),
    )
]
