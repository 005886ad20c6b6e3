"""The access log through the real proxy: one line per request, with the call's facts, and
nothing a caller can use to forge a line or leak a secret into it."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.emulators import OpenAIEmulator
from tests.observability.logs import captured
from tests.serving import MASTER_KEY, RunningProxy, model

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def upstream(name: str, emulator: OpenAIEmulator, model_id: str) -> dict[str, Any]:
    return model(name, model_id, api_base=emulator.base_url + "/v1", api_key=emulator.api_key)


def keyed(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"model_list": list(entries), "general_settings": {"master_key": MASTER_KEY}}


def test_a_call_is_one_line_with_what_it_did(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    with captured() as log:
        proxy = serve(keyed(upstream("art", openai_emulator, "openai/dall-e-3")))
        made = httpx.post(
            proxy.base_url + "/key/generate", json={"key_alias": "otter-bot"}, headers=ADMIN
        )
        key = made.json()["key"]
        answer = httpx.post(
            proxy.base_url + "/v1/images/generations",
            json={"model": "art", "prompt": "an otter", "size": "1024x1024"},
            headers={"Authorization": f"Bearer {key}", "x-portkey-trace-id": "trace-42"},
        )
        assert answer.status_code == 200, answer.text
        lines = log.json(2)
        text = log.text()
    assert [line["path"] for line in lines] == ["/key/generate", "/v1/images/generations"]
    line = lines[1]
    assert {k: line[k] for k in ("method", "route", "status", "model_group", "provider")} == {
        "method": "POST",
        "route": "/v1/images/generations",
        "status": 200,
        "model_group": "art",
        "provider": "openai",
    }
    assert line["deployment"] == "openai/dall-e-3"
    assert line["images"] == 1
    assert line["cost"] == pytest.approx(float(answer.headers["x-prismgate-response-cost"]))
    assert (line["cache"], line["retries"], line["fallbacks"], line["error"]) == (None, 0, 0, None)
    assert line["request_id"] == answer.headers["x-request-id"]
    assert line["trace_id"] == "trace-42"
    assert line["key_alias"] == "otter-bot"
    assert line["worker"] == os.getpid()
    assert 0 < line["upstream_ms"] <= line["latency_ms"]
    assert line["ts"].endswith("Z")
    assert key not in text and MASTER_KEY not in text
    assert "an otter" not in text  # never the prompt


def test_requests_that_make_no_call_get_a_line_too(serve: Callable[..., RunningProxy]) -> None:
    with captured() as log:
        proxy = serve(keyed(model("art", "mock/dall-e-3")))
        with httpx.Client(base_url=proxy.base_url) as client:
            statuses = [
                client.get("/health/liveliness").status_code,
                client.get("/v1/models", headers=ADMIN).status_code,
                client.post("/v1/images/generations", json={"model": "art"}).status_code,
                client.post("/openai/deployments/art/images/generations", json={}).status_code,
                client.get("/no/such/path", headers=ADMIN).status_code,
                client.get("/v1/images/generations", headers=ADMIN).status_code,
            ]
        lines = log.json(6)
    assert statuses == [200, 200, 401, 401, 404, 405]
    assert [(line["route"], line["status"]) for line in lines] == [
        ("/health/liveliness", 200),
        ("/v1/models", 200),
        ("/v1/images/generations", 401),  # refused before the router: matched all the same
        ("/openai/deployments/{deployment}/images/generations", 401),
        (None, 404),
        ("/v1/images/generations", 405),
    ]
    assert lines[3]["path"] == "/openai/deployments/art/images/generations"
    assert all(line["model_group"] is None and line["upstream_ms"] is None for line in lines)
    assert len({line["request_id"] for line in lines}) == 6


def test_a_stream_is_logged_when_it_ends(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    with captured() as log:
        proxy = serve({"model_list": [upstream("chat", openai_emulator, "openai/gpt-4o")]})
        with httpx.stream(
            "POST",
            proxy.base_url + "/v1/chat/completions",
            json={"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        ) as answer:
            body = answer.read().decode()
        (line,) = log.json(1)
    assert body.rstrip().endswith("data: [DONE]")
    assert (line["status"], line["model_group"], line["deployment"]) == (
        200,
        "chat",
        "openai/gpt-4o",
    )
    assert line["upstream_ms"] is not None and line["upstream_ms"] <= line["latency_ms"]


def test_parallel_upstream_calls_count_once(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    """dall-e-3 makes one image a call: n=2 is two calls at once, each held 0.4 s."""
    openai_emulator.fail_next("delay", delay=0.4, times=2)
    with captured() as log:
        proxy = serve({"model_list": [upstream("art", openai_emulator, "openai/dall-e-3")]})
        answer = httpx.post(
            proxy.base_url + "/v1/images/generations",
            json={"model": "art", "prompt": "an otter", "n": 2},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        (line,) = log.json(1)
    assert len(openai_emulator.requests) == 2
    assert line["images"] == 2
    assert 400 <= line["upstream_ms"] < 750  # both calls overlapped: not 800 ms


def test_text_lines_cannot_be_forged_or_carry_secrets(serve: Callable[..., RunningProxy]) -> None:
    """Every caller-chosen text at once: a model name, a path, a trace id, a query."""
    secrets = ["sk-live-0123456789abcdefXYZ", "sk-path-0123456789abcdef", "sk-trace-0123456789ab"]
    with captured(json_lines=False) as log:
        proxy = serve({"model_list": [model("art", "mock/dall-e-3")]})
        with httpx.Client(base_url=proxy.base_url) as client:
            client.post(
                "/v1/images/generations",
                json={"model": f"{secrets[0]}\n2025-01-01T00:00:00.000Z GET / 200", "prompt": "x"},
            )
            client.get(f"/v1/{secrets[1]}%0Aforged%20200?key=query-secret-1234")
            client.get(
                "/health/liveliness",
                headers={"x-portkey-trace-id": f'x" status=200 {secrets[2]}'},
            )
        lines = log.raw(3)
        text = log.text()
    assert len(text.splitlines()) == 3
    for secret in [*secrets, "query-secret-1234"]:
        assert secret not in text
    assert lines[0].split()[1:4] == ["POST", "/v1/images/generations", "404"]
    assert 'model_group="[REDACTED]\\n2025-01-01T00:00:00.000Z GET / 200"' in lines[0]
    assert "error=model_not_found" in lines[0]
    assert ' GET "/v1/[REDACTED]\\nforged 200" 404 ' in lines[1]
    assert 'trace_id="x\\" status=200 [REDACTED]"' in lines[2]


def test_an_embedded_app_logs_through_logging_at_its_level(
    serve: Callable[..., RunningProxy], caplog: pytest.LogCaptureFixture
) -> None:
    """Without the access log's own handler each line is an ordinary INFO record, so the
    logger's level decides, as `--log-level warning` does for `serve`."""

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "prismgate.access"]

    with caplog.at_level(logging.INFO, logger="prismgate.access"):
        proxy = serve({"model_list": [model("art", "mock/dall-e-3")]})
        httpx.get(proxy.base_url + "/health/liveliness")
        # The line is logged once the answer has gone out: wait for it.
        deadline = time.monotonic() + 5
        while not lines() and time.monotonic() < deadline:
            time.sleep(0.01)
    with caplog.at_level(logging.WARNING, logger="prismgate.access"):
        httpx.get(proxy.base_url + "/health/readiness")
        time.sleep(0.3)
    (line,) = lines()
    assert " GET /health/liveliness 200 " in line and "\n" not in line
