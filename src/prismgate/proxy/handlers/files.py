"""`GET /v1/images/files/{name}`: stored images, for links the gateway signed."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from prismgate.errors import NotFoundError, PermissionDeniedError
from prismgate.proxy.state import ProxyState

__all__ = ["image_file"]

_HEADERS = {"cache-control": "private, max-age=3600", "x-content-type-options": "nosniff"}


async def image_file(request: Request) -> Response:
    """The image, if its link's signature is right and it has not expired."""
    state: ProxyState = request.app.state.proxy
    name = request.path_params["name"]
    refusal = state.gateway.image_links.check(
        name,
        request.query_params.get("expires", ""),
        request.query_params.get("signature", ""),
    )
    if refusal is not None:
        raise PermissionDeniedError(refusal, code="invalid_signature")
    image = await state.gateway.image_store.get(name)
    if image is None:
        raise NotFoundError("this image is no longer stored", code="image_not_found")
    # nosniff: a browser takes the bytes as the media type the store recorded, and never
    # guesses a page or a script from them.
    return Response(image.data, media_type=image.media_type, headers=_HEADERS)
