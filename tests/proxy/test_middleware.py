"""RequestContext: ids on every answer, a bug never shows its traceback, and every
request is logged and counted."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from prismgate.config import load_config
from prismgate.gateway import Gateway
from prismgate.identity import Authenticator
from prismgate.proxy.middleware import RequestContext
from prismgate.proxy.routes import ROUTES
from prismgate.proxy.telemetry import ProxyTelemetry
from tests.serving import model


async def broken_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("internal detail: db password hunter2")


async def test_unexpected_errors_become_a_plain_500(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="prismgate.proxy")
    transport = httpx.ASGITransport(app=RequestContext(broken_app), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
        answer = await client.get("/anything", headers={"x-portkey-trace-id": "t-1"})
    assert answer.status_code == 500
    request_id = answer.headers["x-request-id"]
    assert answer.json() == {
        "error": {
            "message": f"internal error; quote request id {request_id} when reporting it",
            "type": "api_error",
            "param": None,
            "code": None,
        }
    }
    assert answer.headers["x-portkey-trace-id"] == "t-1"
    assert "hunter2" not in answer.text and "Traceback" not in answer.text
    # The operator's log says it in one line, tied to the same request id; the traceback
    # is at debug level only.
    loud = [r for r in caplog.records if r.levelno > logging.DEBUG]
    assert [r.getMessage() for r in loud] == [
        f"request {request_id} failed: unexpected RuntimeError (traceback at debug level)"
    ]
    assert not any(r.exc_info for r in loud)
    assert any(request_id in r.getMessage() and r.exc_info for r in caplog.records)


def test_log_records_are_redacted_tracebacks_included(caplog: pytest.LogCaptureFixture) -> None:
    from prismgate.observability.logging import redact_logger
    from prismgate.observability.redaction import Redactor

    logger = logging.getLogger("prismgate.test-redaction")
    redact_logger(logger, Redactor(["hunter2-password"]))
    try:
        raise RuntimeError("connect failed with hunter2-password and Bearer sk-abcdefghijkl")
    except RuntimeError:
        logger.exception("request %s failed for %s", "r-1", "hunter2-password")
    (record,) = [r for r in caplog.records if r.name == "prismgate.test-redaction"]
    text = logging.Formatter().format(record)
    assert "request r-1 failed for [REDACTED]" in text
    assert "RuntimeError: connect failed with [REDACTED]" in text
    assert "hunter2" not in text and "sk-abcdefghijkl" not in text


async def test_a_bug_and_a_client_that_left_are_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The outer layer keeps the access log and metrics: a request whose app raised is
    # logged with the 500 it was answered with, one cancelled before any answer with 499.
    config = load_config({"model_list": [model("art", "mock/dall-e-3")]})
    gateway = Gateway(config, direct_models=False)
    telemetry = ProxyTelemetry(config, gateway, Authenticator(None, None), ROUTES)

    async def never_answers(scope: Scope, receive: Receive, send: Send) -> None:
        raise asyncio.CancelledError  # as a call cancelled when its client left

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await (broken_app if scope["path"] == "/broken" else never_answers)(scope, receive, send)

    caplog.set_level(logging.INFO, logger="prismgate.access")
    transport = httpx.ASGITransport(app=RequestContext(app, telemetry), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
        answer = await client.get("/broken")
        with pytest.raises(asyncio.CancelledError):
            await client.get("/left")
    assert answer.status_code == 500
    lines = [r.getMessage() for r in caplog.records if r.name == "prismgate.access"]
    assert len(lines) == 2
    assert " GET /broken 500 " in lines[0] and answer.headers["x-request-id"] in lines[0]
    assert " GET /left 499 " in lines[1]
    telemetry.metrics.push()
    scraped = telemetry.metrics.exposition().decode()
    assert (
        'prismgate_requests_total{model_group="",provider="",route="unmatched",status="500"} 1.0'
        in scraped
    )
    assert 'status="499"} 1.0' in scraped
    assert "prismgate_requests_in_flight 0.0" in scraped
    await gateway.aclose()
