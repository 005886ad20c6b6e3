"""The proxy's paths: a plain table of (path, handler).

`GET /metrics` is not here: the outer middleware (`RequestContext`) answers it before
authentication (a scraper on loopback needs no key), and handlers/metrics.py decides who
may read it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from prismgate.proxy.handlers import (
    admin,
    chat,
    config,
    docs,
    files,
    health,
    images,
    model_status,
    models,
    virtual_keys,
)
from prismgate.proxy.responses import json_response
from prismgate.proxy.state import ProxyState
from prismgate.ui import handlers as console

__all__ = ["ROUTES"]


async def openapi(request: Request) -> Response:
    """The OpenAPI document, built once at startup."""
    state: ProxyState = request.app.state.proxy
    return json_response(state.openapi_body)


ROUTES = [
    Route("/v1/images/generations", images.generations, methods=["POST"]),
    Route("/images/generations", images.generations, methods=["POST"]),
    Route(
        "/openai/deployments/{deployment}/images/generations", images.generations, methods=["POST"]
    ),
    Route("/v1/images/edits", images.edits, methods=["POST"]),
    Route("/images/edits", images.edits, methods=["POST"]),
    Route("/openai/deployments/{deployment}/images/edits", images.edits, methods=["POST"]),
    Route("/v1/images/variations", images.variations, methods=["POST"]),
    Route("/images/variations", images.variations, methods=["POST"]),
    Route(
        "/openai/deployments/{deployment}/images/variations", images.variations, methods=["POST"]
    ),
    Route("/v1/chat/completions", chat.completions, methods=["POST"]),
    Route("/chat/completions", chat.completions, methods=["POST"]),
    Route("/openai/deployments/{deployment}/chat/completions", chat.completions, methods=["POST"]),
    # Any path below: a name with a slash is the handler's to refuse (not a redirect).
    Route("/v1/images/files/{name:path}", files.image_file, methods=["GET"]),
    Route("/v1/models", models.list_models, methods=["GET"]),
    Route("/models", models.list_models, methods=["GET"]),
    Route("/model/info", models.model_info, methods=["GET"]),
    Route("/v1/model/info", models.model_info, methods=["GET"]),
    Route("/model_group/info", models.model_group_info, methods=["GET"]),
    Route("/model/status", model_status.model_status, methods=["GET"]),
    Route("/config/reload", config.reload_config, methods=["POST"]),
    Route("/health/liveliness", health.liveliness, methods=["GET"]),
    Route("/health/liveness", health.liveliness, methods=["GET"]),
    Route("/health/readiness", health.readiness, methods=["GET"]),
    Route("/health", health.health, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/docs", docs.page, methods=["GET"]),
    Route("/docs/{asset}", docs.asset, methods=["GET"]),
    *(Route(path, handler, methods=[method]) for path, handler, method in admin.ROUTES),
    *(Route(path, handler, methods=[method]) for path, handler, method in virtual_keys.ROUTES),
    *console.ROUTES,
]
