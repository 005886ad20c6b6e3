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

from prismgate.errors import BadRequestError, PermissionDeniedError, ServiceUnavailableError
from prismgate.identity.virtual_keys import StoredVirtualKeys
from prismgate.proxy.auth import principal_of
from prismgate.proxy.body import decode_json_object, read_body
from prismgate.proxy.responses import json_response
from prismgate.proxy.state import ProxyState

__all__ = ["ROUTES"]

# A virtual key's body is small; a service-account JSON is a few kilobytes.
_MAX_BODY = 1 << 20
_MAX_PAGE_SIZE = 1000


def _service(request: Request) -> StoredVirtualKeys:
    """The virtual-key service, for the master key only."""
    principal = principal_of(request.scope)
    if not principal.is_admin:
        who = (
            "this gateway has no master key"
            if principal.role == "open"
            else f"the key {principal.key_alias} is not the master key"
        )
        raise PermissionDeniedError(
            f"virtual keys are managed with the master key only, and {who}: set "
            "general_settings.master_key and send it as 'Authorization: Bearer <master key>'",
            code="master_key_required",
        )
    state: ProxyState = request.app.state.proxy
    if state.virtual_keys is None:
        raise ServiceUnavailableError(
            "this gateway has no key store: stored virtual keys need its database "
            "(general_settings.database_url, or the embedded SQLite file when serving)"
        )
    return state.virtual_keys


async def _body(request: Request) -> dict[str, Any]:
    return decode_json_object(await read_body(request, _MAX_BODY))


def _page(request: Request, name: str, default: int, most: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdecimal()) or len(value) > 6 or int(value) > most:
        raise BadRequestError(f"{name} must be a whole number from 0 to {most}", param=name)
    return int(value)


async def create(request: Request) -> Response:
    """`POST /v1/virtual-keys`: store a new virtual key; answers its view (no secret)."""
    service = _service(request)
    return json_response(await service.create(await _body(request)))


async def list_keys(request: Request) -> Response:
    """`GET /v1/virtual-keys`: the config's and the stored virtual keys."""
    service = _service(request)
    size = _page(request, "page_size", 50, _MAX_PAGE_SIZE)
    page = _page(request, "current_page", 0, 1_000_000)
    return json_response(await service.list(page=page, size=max(size, 1)))


async def retrieve(request: Request) -> Response:
    """`GET /v1/virtual-keys/{slug}`."""
    service = _service(request)
    return json_response(await service.retrieve(request.path_params["slug"]))


async def update(request: Request) -> Response:
    """`PUT /v1/virtual-keys/{slug}`: change the fields sent (null removes one)."""
    service = _service(request)
    body = await _body(request)
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
