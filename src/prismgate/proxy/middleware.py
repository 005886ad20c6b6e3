"""Plain-ASGI middleware: request ids on every answer, and no traceback ever leaving."""

from __future__ import annotations

import logging
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prismgate.errors import PrismgateError
from prismgate.proxy.responses import error_response

__all__ = ["RequestContext"]

log = logging.getLogger("prismgate.proxy")


class RequestContext:
    """Gives each request an id (`x-request-id`), echoes the trace id, and turns any
    unexpected exception into a 500 OpenAI error that names the request id only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        trace_id = request_id
        for name, value in scope["headers"]:
            if name == b"x-portkey-trace-id" and value:
                trace_id = value.decode("latin-1")
        scope.setdefault("state", {})["request_id"] = request_id
        extra = [
            (b"x-request-id", request_id.encode()),
            (b"x-portkey-trace-id", trace_id.encode("latin-1")),
        ]
        started = False

        async def send_with_ids(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_ids)
        except Exception as exc:
            # Handlers turn PrismgateErrors into answers; anything here is a bug. Log it
            # with the request id, and tell the caller only that id.
            log.exception("unhandled error in request %s", request_id)
            if started:
                raise
            error = (
                exc
                if isinstance(exc, PrismgateError)
                else PrismgateError(
                    f"internal error; quote request id {request_id} when reporting it"
                )
            )
            await error_response(error)(scope, receive, send_with_ids)
