"""Reloading the config without a restart (SIGHUP, `POST /config/reload`): new model
groups and routing settings serve at once, with no failed request under load; calls in
flight finish on the config they started with; a config that does not load, or that
changes what only a restart applies, is refused and the running one stays."""

from __future__ import annotations

import concurrent.futures
import copy
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.emulators.openai import OpenAIEmulator
from tests.processes import GatewayProcess
from tests.serving import MASTER_KEY

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator() as emulator:
        yield emulator


def group(upstream: OpenAIEmulator, name: str) -> dict[str, Any]:
    return {
        "model_name": name,
        "litellm_params": {"model": "openai/dall-e-3", "api_base": upstream.base_url + "/v1",
                           "api_key": upstream.api_key},
    }  # fmt: skip


def generate(base_url: str, model: str) -> httpx.Response:
    return httpx.post(
        base_url + "/v1/images/generations",
        headers=ADMIN,
        json={"model": model, "prompt": "a lighthouse", "response_format": "b64_json"},
        timeout=30,
    )


def models(base_url: str) -> list[str]:
    # A new connection each time: with several workers, any of them may answer.
    with httpx.Client(headers=ADMIN, timeout=5) as client:
        return [m["id"] for m in client.get(base_url + "/v1/models").json()["data"]]


def rewrite(folder: Path, config: dict[str, Any]) -> None:
    (folder / "gateway.yaml").write_text(yaml.safe_dump(config))


def wait_for(check: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not reloaded in time"
        time.sleep(0.05)


@pytest.fixture
def served(
    upstream: OpenAIEmulator, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[GatewayProcess, dict[str, Any]]]:
    upstream.reset()
    config = {"model_list": [group(upstream, "alpha")],
              "general_settings": {"master_key": MASTER_KEY}}  # fmt: skip
    workers = getattr(request, "param", 1)
    gateway = GatewayProcess(config, tmp_path, args=("--workers", str(workers))).wait_ready()
    try:
        yield gateway, config  # config now holds the data folder the gateway was given
    finally:
        gateway.stop()


def test_sighup_serves_the_new_model_list_without_a_failed_request(
    served: tuple[GatewayProcess, dict[str, Any]], upstream: OpenAIEmulator, tmp_path: Path
) -> None:
    gateway, config = served
    stop = threading.Event()
    failures: list[str] = []
    calls = 0

    def load() -> None:
        nonlocal calls
        while not stop.is_set():
            answer = generate(gateway.base_url, "alpha")
            calls += 1
            if answer.status_code != 200:
                failures.append(answer.text)

    new = copy.deepcopy(config)
    new["model_list"].append(group(upstream, "beta"))
    new["router_settings"] = {"model_group_alias": {"gamma": "beta"}}
    new["virtual_keys"] = {"painter-key": {"provider": "openai", "api_key": upstream.api_key,
                                           "api_base": upstream.base_url + "/v1"}}  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        loaders = [pool.submit(load) for _ in range(4)]
        time.sleep(0.3)
        rewrite(tmp_path, new)
        gateway.signal(signal.SIGHUP)
        wait_for(lambda: "beta" in models(gateway.base_url))
        time.sleep(0.3)
        stop.set()
        for loader in loaders:
            loader.result()
    assert calls > 10 and failures == []
    assert generate(gateway.base_url, "beta").status_code == 200
    assert generate(gateway.base_url, "gamma").status_code == 200  # routing settings too
    by_virtual_key = httpx.post(  # and virtual keys
        gateway.base_url + "/v1/images/generations",
        headers={**ADMIN, "x-portkey-virtual-key": "painter-key"},
        json={"model": "dall-e-3", "prompt": "a lighthouse", "response_format": "b64_json"},
        timeout=30,
    )
    assert by_virtual_key.status_code == 200, by_virtual_key.text
    assert "config reloaded" in gateway.log.read_text()


def test_a_call_in_flight_finishes_on_the_config_it_started_with(
    served: tuple[GatewayProcess, dict[str, Any]], upstream: OpenAIEmulator, tmp_path: Path
) -> None:
    gateway, config = served
    upstream.fail_next("delay", delay=1.5)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(generate, gateway.base_url, "alpha")
        wait_for(lambda: len(upstream.requests) == 1)
        new = copy.deepcopy(config)
        new["model_list"] = [group(upstream, "beta")]  # alpha is gone
        rewrite(tmp_path, new)
        answer = httpx.post(gateway.base_url + "/config/reload", headers=ADMIN, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"status": "reloaded", "models": ["beta"]}
        assert slow.result().status_code == 200  # alpha served it to the end
    gone = generate(gateway.base_url, "alpha")
    assert gone.status_code in (400, 404) and "alpha" in gone.json()["error"]["message"]


def test_a_broken_config_is_refused_and_the_running_one_stays(
    served: tuple[GatewayProcess, dict[str, Any]], upstream: OpenAIEmulator, tmp_path: Path
) -> None:
    gateway, config = served
    (tmp_path / "gateway.yaml").write_text("model_list: [{model_name: beta}]\n")
    gateway.signal(signal.SIGHUP)
    wait_for(lambda: "was refused" in gateway.log.read_text())
    answer = httpx.post(gateway.base_url + "/config/reload", headers=ADMIN, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_config"
    assert "the running one stays" in answer.json()["error"]["message"]
    restart = copy.deepcopy(config)
    restart["general_settings"]["master_key"] = "sk-another-master-key"
    rewrite(tmp_path, restart)
    answer = httpx.post(gateway.base_url + "/config/reload", headers=ADMIN, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "restart_required"
    assert "general_settings.master_key" in answer.json()["error"]["message"]
    assert "sk-another" not in answer.text  # names the setting, never its value
    assert models(gateway.base_url) == ["alpha"]
    assert generate(gateway.base_url, "alpha").status_code == 200
    assert "Traceback" not in gateway.log.read_text()


def test_only_an_admin_may_reload(served: tuple[GatewayProcess, dict[str, Any]]) -> None:
    gateway, _ = served
    nobody = httpx.post(gateway.base_url + "/config/reload", timeout=10)
    assert nobody.status_code == 401


@pytest.mark.parametrize("served", [2], indirect=True)
def test_every_worker_reloads(
    served: tuple[GatewayProcess, dict[str, Any]], upstream: OpenAIEmulator, tmp_path: Path
) -> None:
    gateway, config = served
    new = copy.deepcopy(config)
    new["model_list"].append(group(upstream, "beta"))
    rewrite(tmp_path, new)
    answer = httpx.post(gateway.base_url + "/config/reload", headers=ADMIN, timeout=10)
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"status": "reloading", "models": ["alpha", "beta"]}
    wait_for(lambda: all("beta" in models(gateway.base_url) for _ in range(12)))
    wait_for(lambda: gateway.log.read_text().count("config reloaded") == 2)
