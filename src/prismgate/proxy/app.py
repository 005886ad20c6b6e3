"""`create_app(config)`: the proxy as an ASGI application.

The middleware order, outermost first:

    RequestContext      request id and trace id on every answer; no traceback ever leaves;
                        an access-log line and the metrics of every request; GET /metrics
    CancelOnDisconnect  a call whose client left is cancelled, upstream request included
    Authenticate        the caller's key → a Principal, on the raw ASGI path
    Starlette           routes → handlers; PrismgateError → OpenAI error body; any other
                        exception → a JSON 500 naming the request id (logged outside)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from prismgate.config import Config, config_path_from_environment, load_config
from prismgate.errors import NotFoundError, PrismgateError
from prismgate.gateway import Gateway
from prismgate.observability.call_tracking import CallCollector
from prismgate.observability.log_config import redact_handlers
from prismgate.observability.logging import redact_logger
from prismgate.proxy.auth import Authenticate
from prismgate.proxy.draining import Drain
from prismgate.proxy.memory import freeze_startup_heap, tune_allocator
from prismgate.proxy.middleware import CancelOnDisconnect, RequestContext, internal_error
from prismgate.proxy.reload import ConfigReload
from prismgate.proxy.responses import error_response, json_response
from prismgate.proxy.routes import ROUTES
from prismgate.proxy.state import ProxyState
from prismgate.proxy.telemetry import ProxyTelemetry
from prismgate.spend import SpendRecorder
from prismgate.storage.sql import SqlKeyStore, SqlSpendLog, database_url, open_sql_stores
from prismgate.transport import HttpTransport
from prismgate.types import ErrorBody, ErrorDetail

__all__ = ["create_app", "create_app_from_environment"]

log = logging.getLogger("prismgate.proxy")


async def _prismgate_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PrismgateError)
    if exc.status_code >= 500:
        log.warning(
            "request %s failed: %s", request.scope.get("state", {}).get("request_id"), exc.message
        )
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    # The router's own refusals (no such path, wrong method), as OpenAI error bodies.
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(
            NotFoundError(
                f"no endpoint {request.method} {request.url.path}; see /openapi.json",
                code="unknown_url",
            )
        )
    detail = ErrorDetail(
        message=f"{request.method} {request.url.path}: {exc.detail}",
        type="invalid_request_error",
        code="method_not_allowed" if exc.status_code == 405 else None,
    )
    return json_response(ErrorBody(error=detail), status=exc.status_code, headers=exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    # Starlette answers with this, then re-raises for RequestContext to log.
    return error_response(internal_error(request.scope.get("state", {}).get("request_id")))


def create_app(
    config: Config | None = None, *, gateway: Gateway | None = None, serving: bool = False
) -> ASGIApp:
    """The proxy for `config`. It serves exactly the config's model groups.

    Pass `gateway` to share one with other code; otherwise the app owns one and closes
    it on shutdown. `serving`: this process only serves (a `prismgate serve` worker), so
    what it made at startup is frozen out of the garbage collector's way.
    """
    config = config if config is not None else load_config()
    owned = gateway is None
    # An owned gateway's pool: the app closes it after the gateway. (Every request's
    # upstream time, for the access log and the metrics, is kept by the transport.)
    http: HttpTransport | None = None
    if gateway is None:
        http = HttpTransport()
        gateway = Gateway(config, direct_models=False, transport=http)
    served = gateway
    served.observers = (*served.observers, CallCollector())
    state = ProxyState(config, served)
    redact_logger(log, served.redactor)
    if serving:
        redact_handlers(served.redactor)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        general = config.general_settings
        sql: tuple[SqlKeyStore, SqlSpendLog] | None = None
        recorder: SpendRecorder | None = None
        if served.stores.keys is None:
            # Migrated under a lock: several workers and instances may start together.
            sql = await open_sql_stores(database_url(general.database_url, general.data_dir))
            state.use_key_store(sql[0])
            served.use_key_store(sql[0])
            state.spend_log = sql[1]
        if sql is not None and not general.disable_spend_logs:
            recorder = SpendRecorder(
                sql[1],
                spool_folder=Path(general.data_dir, "spend-spool"),
                spool_max_bytes=general.spend_spool_max_bytes,
                keep_prompts=general.store_prompts_in_spend_logs,
            )
            recorder.start()  # replays what processes that ended left in the spool
            served.observers = (*served.observers, recorder)
        telemetry.start()
        with _worker_signals(state.drain, reload) if serving else contextlib.nullcontext():
            if serving:
                freeze_startup_heap()
            yield
        # The latest config's gateway: every one since startup shares what is closed here.
        current: Gateway = app.state.proxy.gateway
        if sql is not None:
            await current.release_key_store()  # settles budget holds while the store is open
        if recorder is not None:
            await recorder.aclose()
        if sql is not None:
            for store in sql:
                await store.aclose()
        if owned:
            await current.aclose()
        if http is not None:
            await http.aclose()
        await telemetry.aclose()  # the last lines, after every request and call ended

    app = Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        exception_handlers={
            PrismgateError: _prismgate_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
    )
    app.state.proxy = state
    telemetry = ProxyTelemetry(config, served, state.authenticator, app.routes)
    reload = app.state.reload = ConfigReload(
        app.state, config_path_from_environment() if serving else None, telemetry.reconfigure
    )
    inner: ASGIApp = CancelOnDisconnect(
        Authenticate(app, state.authenticator, state.sessions), state.drain
    )
    return RequestContext(inner, telemetry)


@contextlib.contextmanager
def _worker_signals(drain: Drain, reload: ConfigReload) -> Iterator[None]:
    """A serving worker's signals: SIGTERM drains it (readiness 503 first, then uvicorn's
    shutdown), SIGHUP reloads the config file."""
    drain.install()
    reload.install()
    try:
        yield
    finally:
        reload.uninstall()
        drain.uninstall()


def create_app_from_environment() -> ASGIApp:
    """The app for the config file named by PRISMGATE_CONFIG (each `serve` worker)."""
    tune_allocator()  # a serving process only: it changes the whole process's malloc
    return create_app(load_config(config_path_from_environment()), serving=True)
