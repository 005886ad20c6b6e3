"""The access log and /metrics of `prismgate serve` itself: a mixed load gives exactly one
line per request and counters that match the lines; several workers add up; the log level
turns the lines off."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulators import OpenAIEmulator
from tests.observability.logs import ServeProcess
from tests.observability.test_metrics import samples
from tests.serving import MASTER_KEY, model

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
FAST_RETRIES = {"base_delay": 0.01, "max_delay": 0.05}


def upstream(name: str, emulator: OpenAIEmulator, model_id: str) -> dict[str, Any]:
    return model(name, model_id, api_base=emulator.base_url + "/v1", api_key=emulator.api_key)


def mixed_load(proxy: ServeProcess, emulator: OpenAIEmulator) -> None:
    """100 requests: successes, cache hits, 4xx, retried and failed upstream 5xx, a
    fallback, streams, refusals (a key's rpm, a budget, every deployment cooling down),
    and requests that make no call."""
    sent = 0

    def send(method: str, path: str, *, key: str | None = MASTER_KEY, **kwargs: Any) -> int:
        nonlocal sent
        sent += 1
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return client.request(method, path, headers=headers, **kwargs).status_code

    def image(model: str = "art", prompt: str | None = None, **fields: Any) -> dict[str, Any]:
        return {"model": model, "prompt": prompt or uuid.uuid4().hex, "size": "1024x1024", **fields}

    chat = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=proxy.base_url, timeout=30) as client:
        slow = client.post(
            "/key/generate", json={"key_alias": "slow", "rpm_limit": 1}, headers=ADMIN
        )
        poor = client.post(
            "/key/generate", json={"key_alias": "poor", "max_budget": 1e-6}, headers=ADMIN
        )
        sent += 2
        for _ in range(47):
            assert send("POST", "/v1/images/generations", json=image()) == 200
        same = image(prompt="the same otter")
        assert [send("POST", "/v1/images/generations", json=same) for _ in range(3)] == [200] * 3
        for _ in range(5):
            assert send("POST", "/v1/images/generations", json=image(size="7x7")) == 400
            assert send("POST", "/v1/images/generations", json=image(model="nope")) == 404
            assert send("POST", "/v1/images/generations", key=None, json=image()) == 401
        emulator.fail_next("status", status=500)
        assert send("POST", "/v1/images/generations", json=image()) == 200  # retried
        emulator.fail_next("status", status=500, times=2)
        assert send("POST", "/v1/images/generations", json=image()) == 200  # fell back
        emulator.fail_next("status", status=503, times=2)
        assert send("POST", "/v1/chat/completions", json=chat) == 503  # retried, failed
        for _ in range(10):
            assert send("POST", "/v1/chat/completions", json={**chat, "stream": True}) == 200
        for _ in range(5):
            assert send("POST", "/v1/chat/completions", json=chat) == 200
        statuses = [send("POST", "/v1/images/generations", key=slow.json()["key"], json=image())
                    for _ in range(2)]  # fmt: skip
        assert statuses == [200, 429]
        assert send("POST", "/v1/images/generations", key=poor.json()["key"], json=image()) == 429
        emulator.fail_next("status", status=429, retry_after=60, times=2)
        assert send("POST", "/v1/images/generations", json=image(model="pair")) == 429
        assert send("POST", "/v1/images/generations", json=image(model="pair")) == 503
        for _ in range(5):
            assert send("GET", "/health/readiness", key=None) == 200
        for _ in range(3):
            assert send("GET", "/v1/models") == 200
        for _ in range(2):
            assert send("GET", "/no/such/path") == 404
    assert sent == 100


def test_a_mixed_load_gives_one_line_per_request_and_matching_counters(
    tmp_path: Path, openai_emulator: OpenAIEmulator
) -> None:
    config = {
        "model_list": [
            upstream("art", openai_emulator, "openai/dall-e-3"),
            upstream("backup", openai_emulator, "openai/dall-e-2"),
            upstream("chat", openai_emulator, "openai/gpt-4o"),
            upstream("pair", openai_emulator, "openai/dall-e-2"),
            {**upstream("pair", openai_emulator, "openai/dall-e-2"), "model_info": {"id": "b"}},
        ],
        "router_settings": {"num_retries": 1, "fallbacks": [{"art": ["backup"]}]},
        "litellm_settings": {"cache": True},
        "general_settings": {
            "master_key": MASTER_KEY,
            "retries": FAST_RETRIES,
            # The cache keeps the images the emulator links to: fetched from loopback.
            "media": {"allowed_hosts": [openai_emulator.base_url.removeprefix("http://")]},
        },
    }
    proxy = ServeProcess(config, tmp_path, "--log-format", "json").wait_ready()
    try:
        mixed_load(proxy, openai_emulator)
        scraped = httpx.get(proxy.base_url + "/metrics").text
    finally:
        assert proxy.stop()
    # wait_ready's probes (/health/liveliness) aside: the 100, then the scrape, none lost
    # at shutdown.
    lines = [line for line in proxy.access_lines() if line["path"] != "/health/liveliness"]
    assert len(lines) == 101
    assert lines[-1]["path"] == "/metrics"
    calls = lines[:100]

    def group(line: dict[str, Any]) -> str:
        return line["model_group"] or ""

    counted = collections.Counter(
        (line["route"] or "unmatched", group(line), line["provider"] or "", str(line["status"]))
        for line in calls
    )
    requests = samples(scraped, "prismgate_requests_total")
    assert {
        (dict(k)["route"], dict(k)["model_group"], dict(k)["provider"], dict(k)["status"]): v
        for k, v in requests.items()
        if dict(k)["route"] != "/health/liveliness"
    } == counted

    def without_probes(name: str) -> list[float]:
        found = samples(scraped, name)
        return [v for k, v in found.items() if dict(k)["route"] != "/health/liveliness"]

    assert sum(without_probes("prismgate_request_duration_seconds_count")) == 100
    total = sum(without_probes("prismgate_request_duration_seconds_sum"))
    assert total == pytest.approx(sum(line["latency_ms"] for line in calls) / 1000, abs=2e-3)
    upstream_counts = collections.Counter(
        (group(line), line["provider"])
        for line in calls
        if line["model_group"] and line["upstream_ms"]
    )
    assert {
        (dict(k)["model_group"], dict(k)["provider"]): v
        for k, v in samples(scraped, "prismgate_upstream_duration_seconds_count").items()
    } == upstream_counts

    def by_group(name: str) -> dict[str, float]:
        found: dict[str, float] = collections.defaultdict(float)
        for labels, value in samples(scraped, name).items():
            found[dict(labels)["model_group"]] += value
        return dict(found)

    def summed(field: str) -> dict[str, float]:
        found: dict[str, float] = collections.defaultdict(float)
        for line in calls:
            if line[field]:
                found[group(line)] += line[field]
        return dict(found)

    assert by_group("prismgate_images_total") == summed("images")
    assert (
        by_group("prismgate_retries_total") == summed("retries") == {"art": 2, "chat": 1, "pair": 1}
    )
    assert by_group("prismgate_fallbacks_total") == summed("fallbacks") == {"art": 1}
    spend = by_group("prismgate_spend_usd_total")
    assert spend.keys() == summed("cost").keys()
    assert all(spend[g] == pytest.approx(v) for g, v in summed("cost").items())
    cache = {(dict(k)["model_group"], dict(k)["result"]): v
             for k, v in samples(scraped, "prismgate_cache_lookups_total").items()}  # fmt: skip
    assert cache == collections.Counter(
        (group(line), line["cache"]) for line in calls if line["cache"]
    )
    assert cache[("art", "HIT")] == 2
    refusals = {
        dict(k)["reason"]: v for k, v in samples(scraped, "prismgate_refusals_total").items()
    }
    assert refusals == {"requests": 1, "budget": 1, "cooldown": 1}
    cooling = samples(scraped, "prismgate_deployments_cooling_down")
    assert cooling[(("model_group", "pair"),)] == 2
    assert samples(scraped, "prismgate_requests_in_flight") == {(): 0.0}
    assert MASTER_KEY not in proxy.stdout.read_text() + proxy.stderr.read_text()


def scraped_until(proxy: ServeProcess, done: Callable[[str], bool], timeout: float) -> str:
    """Scrape until `done(scrape)` (or `timeout` seconds): numbers reach a scrape within
    a push interval, and a worker that was replaced answers once it has started."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            scraped = httpx.get(proxy.base_url + "/metrics", timeout=5).text
            if done(scraped):
                return scraped
        except httpx.HTTPError:
            scraped = ""
        if time.monotonic() > deadline:
            return scraped
        time.sleep(0.2)


def in_flight(scraped: str) -> float:
    return samples(scraped, "prismgate_requests_in_flight").get((), -1.0)


def test_several_workers_add_up_and_a_dead_one_leaves_nothing_in_flight(
    tmp_path: Path, openai_emulator: OpenAIEmulator
) -> None:
    """Two workers: a scrape (answered by either) counts every worker's requests, at most
    a push interval (1 s) late; a worker killed with a call in flight is replaced, and its
    call leaves the in-flight gauge (its counts stay in the sums)."""
    config = {"model_list": [upstream("art", openai_emulator, "openai/dall-e-3")]}
    proxy = ServeProcess(config, tmp_path, "--workers", "2", "--log-format", "json").wait_ready()
    try:
        workers: set[int] = set()
        health = 0
        while len(workers) < 2 and health < 400:
            for _ in range(20):  # a fresh connection each: the workers share the socket
                httpx.get(proxy.base_url + "/health/readiness").raise_for_status()
            health += 20
            lines = proxy.wait_for_lines(health)
            workers = {line["worker"] for line in lines if line["path"] == "/health/readiness"}
        assert len(workers) == 2

        def readiness(scraped: str) -> float:
            counts = samples(scraped, "prismgate_requests_total")
            return sum(v for k, v in counts.items() if dict(k)["route"] == "/health/readiness")

        assert readiness(scraped_until(proxy, lambda s: readiness(s) == health, 5)) == health

        openai_emulator.fail_next("delay", delay=10)

        def slow_call() -> None:
            with contextlib.suppress(httpx.HTTPError):  # its worker is killed under it
                body = {"model": "art", "prompt": "a slow otter"}
                httpx.post(proxy.base_url + "/v1/images/generations", json=body, timeout=30)

        threading.Thread(target=slow_call, daemon=True).start()
        assert in_flight(scraped_until(proxy, lambda s: in_flight(s) == 1, 5)) == 1
        for worker in workers:
            os.kill(worker, signal.SIGKILL)
        after = scraped_until(proxy, lambda s: in_flight(s) == 0, 60)
        assert in_flight(after) == 0
        assert readiness(after) == health
    finally:
        assert proxy.stop()


def test_log_level_warning_silences_the_access_log_not_the_metrics(tmp_path: Path) -> None:
    config = {"model_list": [model("art", "mock/dall-e-3")]}
    proxy = ServeProcess(config, tmp_path, "--log-level", "warning").wait_ready()
    try:
        for _ in range(3):
            httpx.get(proxy.base_url + "/health/readiness").raise_for_status()
        scraped = httpx.get(proxy.base_url + "/metrics").text
        time.sleep(0.3)  # past the access log's batch delay
    finally:
        assert proxy.stop()
    counts = samples(scraped, "prismgate_requests_total")
    assert sum(v for k, v in counts.items() if dict(k)["route"] == "/health/readiness") == 3
    stdout = proxy.stdout.read_text()
    assert "listening on" in stdout and "/health/readiness" not in stdout
