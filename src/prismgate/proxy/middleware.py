"""Plain-ASGI middleware: request ids on every answer, no traceback ever leaving, each
request logged and counted, and calls cancelled when their caller leaves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from contextvars import Token
from time import perf_counter
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prismgate.errors import PrismgateError, ServiceUnavailableError
from prismgate.observability.call_tracking import CURRENT_TRACK, RequestTrack
from prismgate.observers import CLIENT_CLOSED
from prismgate.proxy.draining import Drain
from prismgate.proxy.handlers.metrics import METRICS_PATH
from prismgate.proxy.responses import error_response
from prismgate.request_ids import new_request_id

if TYPE_CHECKING:
    from prismgate.proxy.telemetry import ProxyTelemetry

__all__ = ["CancelOnDisconnect", "RequestContext", "internal_error"]

log = logging.getLogger("prismgate.proxy")


def internal_error(request_id: str | None) -> PrismgateError:
    """The 500 a caller sees for a bug: the request id to quote, and nothing else."""
    return PrismgateError(f"internal error; quote request id {request_id} when reporting it")


class RequestContext:
    """The outermost layer: gives each request an id (`x-request-id`), echoes the trace
    id, turns any unexpected exception into a 500 OpenAI error that names the request id
    only, and, given the app's `telemetry`, times the request, opens its track
    (observability/call_tracking.py) and hands its record to the access log and the
    metrics when it ends; `GET /metrics` is then answered by `telemetry.endpoint`.

    One layer for all of it: each layer around a request is one more coroutine that every
    resumption of the request passes through, and one more wrapper of each message sent.

    The log gets one line per unexpected exception (its type and the request id); the
    traceback goes to the debug level, so that hostile input cannot flood the log.
    """

    def __init__(self, app: ASGIApp, telemetry: ProxyTelemetry | None = None) -> None:
        self.app = app
        self._telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        request_id = new_request_id()  # time-ordered: the spend log's key appends
        trace_id = request_id
        for name, value in scope["headers"]:
            if name == b"x-portkey-trace-id" and value:
                trace_id = value.decode("latin-1")
        scope.setdefault("state", {})["request_id"] = request_id
        extra = [
            (b"x-request-id", request_id.encode()),
            (b"x-portkey-trace-id", trace_id.encode("latin-1")),
        ]
        status = 0

        # A plain function handing back `send`'s awaitable: no coroutine of its own for
        # each message.
        def send_with_ids(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), *extra]
            return send(message)

        telemetry = self._telemetry
        app = self.app
        track: RequestTrack | None = None
        token: Token[RequestTrack | None] | None = None
        scraping = False
        if telemetry is not None:
            track = RequestTrack(request_id=request_id)
            token = CURRENT_TRACK.set(track)
            scraping = scope["path"] == METRICS_PATH
            if scraping:  # answered by the metrics endpoint; not counted in flight
                app = telemetry.endpoint
            else:
                telemetry.metrics.in_flight += 1
        try:
            await app(scope, receive, send_with_ids)
        except Exception as exc:
            # Handlers turn PrismgateErrors into answers; anything here is a bug.
            log.error(
                "request %s failed: unexpected %s (traceback at debug level)",
                request_id,
                type(exc).__name__,
            )
            log.debug("traceback of request %s", request_id, exc_info=exc)
            # Once the app's own 500 handler answered (or a stream broke after its
            # start), the server closes the connection: nothing more to say.
            if not status:
                error = exc if isinstance(exc, PrismgateError) else internal_error(request_id)
                await error_response(error)(scope, receive, send_with_ids)
        finally:
            if token is not None:
                CURRENT_TRACK.reset(token)
            if telemetry is not None and track is not None:
                if not scraping:
                    telemetry.metrics.in_flight -= 1
                # No answer at all: the client left before it (CancelOnDisconnect).
                telemetry.record(scope, status or CLIENT_CLOSED, started, track)


class CancelOnDisconnect:
    """Cancels a request's work when its client goes away before the answer is complete,
    so that an abandoned call does not keep its upstream request (and its bill) running.

    The app runs as a task. Once it has read the whole body, a watcher waits for
    `http.disconnect` and cancels that task; aiohttp then closes the upstream connection.
    Later `receive()` calls of the app (a streaming response listening for the
    disconnect) get the same event. Requests whose body the app never reads (GETs) are
    not watched: they answer from memory. Each request's work is also in `drain`'s
    in-flight set, so a shutdown's drain deadline can cancel it (answered with a 503).
    """

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        left = asyncio.Event()
        answered = started = False
        watcher: asyncio.Task[None] | None = None

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            left.set()
            # After the whole answer went out the server reports a disconnect too:
            # that is not the client leaving.
            if not answered:
                work.cancel()

        async def app_receive() -> Message:
            nonlocal watcher
            if watcher is not None or left.is_set():
                await left.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                left.set()
            elif not message.get("more_body", False):
                watcher = asyncio.create_task(watch())
            return message

        async def app_send(message: Message) -> None:
            nonlocal answered, started
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        work: asyncio.Future[None] = asyncio.ensure_future(self.app(scope, app_receive, app_send))
        in_flight = self.drain.in_flight
        in_flight.add(work)
        try:
            await work
        except asyncio.CancelledError:
            if not await self._cancelled(scope, receive, send, started, left.is_set()):
                raise
        except ClientDisconnect:
            # The client left while sending its body: nobody to answer.
            log.info("request %s: the client left while sending its body", _request_id(scope))
        finally:
            in_flight.discard(work)
            if watcher is not None:
                watcher.cancel()

    async def _cancelled(
        self, scope: Scope, receive: Receive, send: Send, started: bool, left: bool
    ) -> bool:
        """Whether a request whose work was cancelled is dealt with here: its client
        left, or the drain deadline cut it (answered with a 503 if nothing was sent yet).
        False: the cancellation is the server's own, and goes on."""
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            return False
        if self.drain.cut:
            log.warning("request %s: cut at the drain deadline", _request_id(scope))
            if not started:
                await error_response(_CUT)(scope, receive, send)
            return True
        if not left:
            return False
        log.info("request %s: the client left; its call was cancelled", _request_id(scope))
        return True


_CUT = ServiceUnavailableError(
    "the gateway shut down before this call finished (its drain deadline passed); the call "
    "was cancelled: send it again",
    code="shutting_down",
)


def _request_id(scope: Scope) -> str | None:
    request_id: str | None = scope.get("state", {}).get("request_id")
    return request_id
