"""SIGTERM under load: readiness turns 503 at once while liveness stays 200, calls that
started before it all finish (within `drain_seconds`), the spend log gets every row, and
`prismgate serve` exits 0; a call still running at the deadline is cancelled and answered
with a 503 that says so, not waited for."""

from __future__ import annotations

import concurrent.futures
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulators.openai import OpenAIEmulator
from tests.processes import GatewayProcess
from tests.serving import MASTER_KEY

SLOW = 1.5  # seconds each upstream answer takes
CALLS = 6
STREAMS = 2


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator() as emulator:
        yield emulator


def config(upstream: OpenAIEmulator, **server: float) -> dict[str, Any]:
    return {
        "model_list": [
            {"model_name": name,
             "litellm_params": {"model": model, "api_base": upstream.base_url + "/v1",
                                "api_key": upstream.api_key}}
            for name, model in (("painter", "openai/dall-e-3"), ("streamer", "openai/gpt-image-1"))
        ],
        "general_settings": {"master_key": MASTER_KEY, "server": server},
    }  # fmt: skip


def generate(base_url: str) -> httpx.Response:
    return httpx.post(
        base_url + "/v1/images/generations",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json={"model": "painter", "prompt": "a lighthouse", "response_format": "b64_json"},
        timeout=30,
    )


def streamed(base_url: str) -> list[str]:
    """The event types of a streamed generation, in order."""
    body = {"model": "streamer", "prompt": "a kite", "stream": True, "partial_images": 1}
    with httpx.stream(
        "POST",
        base_url + "/v1/images/generations",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json=body,
        timeout=30,
    ) as answer:
        assert answer.status_code == 200, answer.read()
        return [
            json.loads(line.removeprefix("data: "))["type"]
            for line in answer.iter_lines()
            if line.startswith("data: {")
        ]


def spend_rows(folder: Path) -> int:
    with sqlite3.connect(folder / "gateway-data" / "prismgate.db") as db:
        (count,) = db.execute("SELECT count(*) FROM spend_logs").fetchone()
    return int(count)


def in_flight(upstream: OpenAIEmulator, calls: int, timeout: float = 10) -> None:
    """Wait until `calls` requests have reached the upstream."""
    deadline = time.monotonic() + timeout
    while len(upstream.requests) < calls:
        assert time.monotonic() < deadline, f"{len(upstream.requests)} of {calls} calls arrived"
        time.sleep(0.02)


def readiness_once_draining(base_url: str) -> httpx.Response:
    """Readiness, asked until it stops saying ready: with several workers the supervisor
    passes SIGTERM on within half a second; the shutdown delay keeps them listening."""
    deadline = time.monotonic() + 1.5
    while True:
        ready = httpx.get(base_url + "/health/readiness", timeout=5)
        if ready.status_code != 200 or time.monotonic() > deadline:
            return ready
        time.sleep(0.05)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_calls_in_flight_and_exits_0(
    upstream: OpenAIEmulator, tmp_path: Path, workers: int
) -> None:
    upstream.reset()
    gateway = GatewayProcess(
        config(upstream, shutdown_delay_seconds=2.0, drain_seconds=20),
        tmp_path,
        args=("--workers", str(workers)),
    ).wait_ready()
    try:
        upstream.fail_next("delay", delay=SLOW, times=CALLS + STREAMS)
        with concurrent.futures.ThreadPoolExecutor(CALLS + STREAMS) as pool:
            calls = [pool.submit(generate, gateway.base_url) for _ in range(CALLS)]
            streams = [pool.submit(streamed, gateway.base_url) for _ in range(STREAMS)]
            in_flight(upstream, CALLS + STREAMS)
            gateway.terminate()
            ready = readiness_once_draining(gateway.base_url)
            assert ready.status_code == 503, ready.text
            assert ready.json()["error"]["code"] == "draining"
            live = httpx.get(gateway.base_url + "/health/liveliness", timeout=5)
            assert live.status_code == 200
            answers = [call.result() for call in calls]
            events = [stream.result() for stream in streams]
        assert [a.status_code for a in answers] == [200] * CALLS
        for types in events:
            assert types[-1] == "image_generation.completed", types
        assert all(a.json()["data"][0]["b64_json"] for a in answers)
        assert gateway.wait(timeout=30) == 0
    finally:
        gateway.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(gateway.base_url + "/health/liveliness", timeout=2)
    assert spend_rows(tmp_path) == CALLS + STREAMS  # the queue was flushed before the exit
    log = (tmp_path / "gateway.log").read_text()
    assert "draining" in log and "Traceback" not in log


def test_a_call_past_the_drain_deadline_is_cut(upstream: OpenAIEmulator, tmp_path: Path) -> None:
    upstream.reset()
    gateway = GatewayProcess(config(upstream, drain_seconds=1.0), tmp_path).wait_ready()
    try:
        upstream.fail_next("delay", delay=20, times=1)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            call = pool.submit(generate, gateway.base_url)
            in_flight(upstream, 1)
            started = time.monotonic()
            gateway.terminate()
            assert gateway.wait(timeout=15) == 0
            assert time.monotonic() - started < 10  # the deadline, not the upstream's 20 s
            cut = call.result()
        assert cut.status_code == 503
        assert cut.json()["error"]["code"] == "shutting_down"
    finally:
        gateway.stop()
    log = (tmp_path / "gateway.log").read_text()
    assert "cut at the drain deadline" in log and "Traceback" not in log
    assert spend_rows(tmp_path) == 1  # the cut call is on record too
