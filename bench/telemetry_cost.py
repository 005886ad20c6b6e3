"""What the access log and the metrics cost per request: a microbenchmark.

    .venv/bin/python bench/telemetry_cost.py

Times, in one process and without a network, each piece of work telemetry adds to a
request: what the outer middleware does with telemetry beyond what it does without
(timer, track, status noted, record, metrics counted, access line made and buffered), a
call's report kept by the observer (an upstream request's timing, in the transport, is
left out: it needs a server), the metrics pushed into prometheus-client (once a second
in the proxy; here once per 1,000 requests, which is more often than a second at any
rate worth measuring), and the lines written (in batches, to /dev/null). Prints the
fastest of 7 runs (the one the rest of the machine disturbed least), in µs of CPU per
request, beside the cost of one `logging.info` line measured the same way as a
yardstick.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prismgate.config import load_config
from prismgate.gateway import Gateway
from prismgate.identity import Authenticator
from prismgate.identity.principal import Principal
from prismgate.observability.access_log import AccessLogHandler
from prismgate.observability.call_tracking import CallCollector
from prismgate.observers import CallReport
from prismgate.proxy.memory import freeze_startup_heap
from prismgate.proxy.middleware import RequestContext
from prismgate.proxy.routes import ROUTES
from prismgate.proxy.telemetry import ProxyTelemetry
from prismgate.storage.records import KeyRecord
from prismgate.types import CallMeta, ImageGenerationRequest, ImageObject, ImageResponse

ROUNDS = 20_000
RUNS = 7
CONFIG = {
    "model_list": [
        {"model_name": "art", "litellm_params": {"model": "openai/dall-e-3", "api_key": "sk-x"}}
    ]
}


def a_report(request_id: str) -> CallReport:
    """A served image call, as the gateway reports one."""
    meta = CallMeta(
        provider="openai", model="dall-e-3", model_group="art", response_cost=0.04,
        cache_status="MISS", attempts=("art@model_list[0]=200",),
    )  # fmt: skip
    key = KeyRecord(token="t" * 64, key_name="sk-...abcd", key_alias="bot")
    return CallReport(
        request_id=request_id, operation="image_generation", model="art",
        request=ImageGenerationRequest(prompt="an otter", model="art", size="1024x1024"),
        principal=Principal(role="key", scope="s", key=key), started_at=time.time(),
        latency=0.01, value=ImageResponse(created=1, data=[ImageObject(url="https://x/y.png")]),
        meta=meta, failure=None,
    )  # fmt: skip


def a_scope() -> dict[str, Any]:
    """An image generation request's ASGI scope, as the middleware sees it."""
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/images/generations",
        "headers": [(b"content-type", b"application/json")],
        "state": {"request_id": "r"},
    }


async def per_call(work: Callable[[], Awaitable[None] | None], rounds: int = ROUNDS) -> float:
    """Microseconds per call of `work`."""
    started = time.process_time()
    for _ in range(rounds):
        result = work()
        if result is not None:
            await result
    return (time.process_time() - started) / rounds * 1e6


async def run_once(json_lines: bool) -> dict[str, float]:
    config = load_config(CONFIG)
    with open(os.devnull, "w") as sink:  # noqa: ASYNC230 (a benchmark: nothing else waits)
        access = logging.getLogger("prismgate.access")
        access.handlers = [AccessLogHandler(sink, json=json_lines)]
        access.setLevel(logging.INFO)
        access.propagate = False
        gateway = Gateway(config, direct_models=False)
        telemetry = ProxyTelemetry(config, gateway, Authenticator(None, None), ROUTES)
        report = a_report("r")
        results: dict[str, float] = {}

        async def app(scope: Any, receive: Any, send: Any) -> None:
            # The call's report reaches the observer while the request runs.
            CallCollector().observe(report)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

        async def send(message: Any) -> None:
            return None

        async def receive() -> Any:
            return {"type": "http.request"}

        # The outer layer with and without the telemetry it is given.
        bare, wrapped = RequestContext(app), RequestContext(app, telemetry)
        freeze_startup_heap()  # as a serving worker does: the collector skips what startup made
        baseline = await per_call(lambda: bare(a_scope(), receive, send))
        results["track + report kept + record + metrics + line"] = (
            await per_call(lambda: wrapped(a_scope(), receive, send)) - baseline
        )
        telemetry.access_log.flush()

        pushing = 0.0
        for _ in range(20):
            for _ in range(1000):
                await wrapped(a_scope(), receive, send)
            started = time.process_time()
            telemetry.metrics.push()
            pushing += time.process_time() - started
        results["push into prometheus-client (per request)"] = pushing / 20_000 * 1e6
        telemetry.access_log.flush()
        await gateway.aclose()
        results["all of it"] = sum(results.values())
    return results


def logging_reference() -> float:
    """µs of CPU per `logger.info` of one short line through a StreamHandler to /dev/null."""
    logger = logging.getLogger("bench.reference")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    with open(os.devnull, "w") as sink:
        logger.handlers = [logging.StreamHandler(sink)]
        fastest = float("inf")
        for _ in range(RUNS):
            started = time.process_time()
            for _ in range(ROUNDS):
                logger.info("GET /health/liveliness %d %s", 200, "ok")
            fastest = min(fastest, (time.process_time() - started) / ROUNDS * 1e6)
        return fastest


def say(line: str) -> None:
    sys.stdout.write(line + "\n")


def main() -> None:
    say(f"reference: one logging.info line costs {logging_reference():.2f} µs here")
    for json_lines in (False, True):
        runs = [asyncio.run(run_once(json_lines)) for _ in range(RUNS)]
        form = "JSON" if json_lines else "text"
        say(f"access log as {form}: µs of CPU per request, fastest of {RUNS} runs")
        for name in runs[0]:
            say(f"  {name:52s} {min(run[name] for run in runs):6.2f}")


if __name__ == "__main__":
    main()
