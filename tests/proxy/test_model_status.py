"""`GET /model/status` (the console's Models page): cooldowns and usage from the routing
state (in-process and Redis), this worker's latency average, recent calls from the spend
log, and the last `/health` result; admin only. Also `/health?model=`, which checks one
model group. Two OpenAI emulators stand in for a group's two deployments."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from tests.emulators import OpenAIEmulator
from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
BODY = {"model": "art", "prompt": "an otter", "size": "256x256", "response_format": "url"}


def deployment(name: str, emulator: OpenAIEmulator, **params: Any) -> dict[str, Any]:
    return model(
        name, "openai/dall-e-2", api_base=emulator.base_url + "/v1", api_key=emulator.api_key,
        **params,
    )  # fmt: skip


def config(*entries: dict[str, Any], **router: Any) -> dict[str, Any]:
    return {
        "model_list": [*entries, model("otters", "mock/otters")],
        "router_settings": {"num_retries": 1, **router},
        "general_settings": {
            "master_key": MASTER_KEY,
            "retries": {"base_delay": 0.01, "max_delay": 0.05},
            "redis_prefix": f"t-{uuid.uuid4().hex}:",
        },
    }


def status(proxy: RunningProxy) -> dict[str, Any]:
    answer = httpx.get(proxy.base_url + "/model/status", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body: dict[str, Any] = answer.json()
    return body


def by_label(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["label"]: entry for entry in body["data"]}


def generate(proxy: RunningProxy, model_name: str = "art") -> httpx.Response:
    return httpx.post(
        proxy.base_url + "/v1/images/generations",
        json={**BODY, "model": model_name},
        headers=ADMIN,
        timeout=30,
    )


def test_a_cooldown_usage_and_recent_calls(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, west: OpenAIEmulator
) -> None:
    proxy = serve(
        config(
            deployment("art", east, weight=1, rpm=100),
            deployment("art", west, weight=0.000001),
        )
    )
    east.fail_next("status", status=429, retry_after=30, message="east is busy")
    assert generate(proxy).status_code == 200  # east refused, west served
    body = status(proxy)
    assert body["routing_strategy"] == "simple-shuffle"
    found = by_label(body)
    assert list(found) == ["model_list[0]", "model_list[1]", "model_list[2]"]
    east_state, west_state, mock_state = found.values()
    assert east_state["model_group"] == "art" and east_state["provider"] == "openai"
    assert east_state["model"] == "dall-e-2"
    assert 28 <= east_state["cooldown"]["seconds_left"] <= 30
    assert "east is busy" in east_state["cooldown"]["reason"]
    assert west_state["cooldown"] is None
    # east has an rpm limit, so its requests are counted this minute; nothing counts the
    # others; simple-shuffle keeps no latency.
    assert east_state["usage"] == {"requests": 1, "tokens": 0}
    assert west_state["usage"] is None and mock_state["usage"] is None
    assert east_state["latency_ms"] is None and east_state["in_flight"] is None
    assert east_state["health"] is None
    # A call west refuses (east cools down): a failure, counted for west.
    west.fail_next("status", status=400, message="west refuses this one")
    assert generate(proxy).status_code == 400
    # The spend log is written in the background: its rows show within a second or so.
    deadline = time.monotonic() + 5
    while (by_label(status(proxy))["model_list[1]"]["recent"] or {}).get("calls") != 2:
        assert time.monotonic() < deadline, "the calls never reached the spend log"
        time.sleep(0.1)
    found = by_label(status(proxy))
    recent = found["model_list[1]"]["recent"]
    assert recent["calls"] == 2 and recent["failures"] == 1
    assert recent["p50_ms"] > 0 and recent["p95_ms"] >= recent["p50_ms"]
    assert recent["last_call_at"].endswith("+00:00")
    # east is the same provider and model as west, but no call ended there: its figures
    # are its own (none), not west's.
    assert found["model_list[0]"]["recent"] is None
    # No secret of a deployment is shown.
    text = httpx.get(proxy.base_url + "/model/status", headers=ADMIN).text
    assert east.api_key not in text and west.api_key not in text


def test_the_latency_strategy_shows_its_average(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, west: OpenAIEmulator
) -> None:
    proxy = serve(
        config(
            deployment("art", east),
            deployment("art", west),
            routing_strategy="latency-based-routing",
        )
    )
    for _ in range(4):
        assert generate(proxy).status_code == 200
    found = by_label(status(proxy))
    measured = [found[label]["latency_ms"] for label in ("model_list[0]", "model_list[1]")]
    assert any(latency is not None and latency > 0 for latency in measured)
    assert [found[label]["in_flight"] for label in ("model_list[0]", "model_list[1]")] == [0, 0]


def test_redis_cooldowns_show_on_every_gateway(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, west: OpenAIEmulator
) -> None:
    shared = config(
        deployment("art", east, weight=1),
        deployment("art", west, weight=0.000001),
        redis_url="redis://127.0.0.1:6379/0",
    )
    # A loaded test machine must not trip the breaker to in-process state.
    shared["general_settings"]["redis_timeout"] = 2.0
    one, two = serve(shared), serve(shared)
    east.fail_next("status", status=429, retry_after=30, message="east is busy")
    assert generate(one).status_code == 200
    east_on_two = by_label(status(two))["model_list[0]"]
    assert 28 <= east_on_two["cooldown"]["seconds_left"] <= 30
    assert "east is busy" in east_on_two["cooldown"]["reason"]


def test_health_of_one_group_is_kept_for_the_status(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator
) -> None:
    proxy = serve(config(deployment("art", east)))
    report = httpx.get(proxy.base_url + "/health", params={"model": "otters"}, headers=ADMIN)
    assert report.status_code == 200, report.text
    assert [e["model"] for e in report.json()["healthy_endpoints"]] == ["otters"]
    assert east.requests == []  # art was not checked
    found = by_label(status(proxy))
    assert found["model_list[0]"]["health"] is None
    mock_health = found["model_list[1]"]["health"]
    assert mock_health["healthy"] is True and mock_health["error"] is None
    assert mock_health["checks"] == {
        "credentials": "present",
        "list_models": "skipped (the provider has no free call to make)",
    }
    # Checking every group updates each; a rejected key shows as unhealthy.
    east.fail_next("status", status=401)
    assert httpx.get(proxy.base_url + "/health", headers=ADMIN).status_code == 200
    east_health = by_label(status(proxy))["model_list[0]"]["health"]
    assert east_health["healthy"] is False
    # What the provider said comes along, through the redactor.
    assert east_health["error"] == (
        "the provider rejected the credentials: Incorrect API key provided."
    )


def test_health_of_an_unknown_group_is_a_404(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator
) -> None:
    proxy = serve(config(deployment("art", east)))
    hostile = ["nope", "art'; DROP TABLE spend_logs; --", "<script>alert(1)</script>", "x" * 4000]
    for name in hostile:
        answer = httpx.get(proxy.base_url + "/health", params={"model": name}, headers=ADMIN)
        assert answer.status_code == 404
        error = answer.json()["error"]
        assert error["code"] == "model_not_found" and error["param"] == "model"
        assert "art, otters" in error["message"]
        assert "Traceback" not in answer.text
    assert east.requests == []


def test_only_an_admin_reads_the_status(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator
) -> None:
    proxy = serve(config(deployment("art", east)))
    made = httpx.post(proxy.base_url + "/key/generate", json={"key_alias": "app"}, headers=ADMIN)
    key = made.json()["key"]
    refused = httpx.get(
        proxy.base_url + "/model/status", headers={"Authorization": f"Bearer {key}"}
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "master_key_required"
    assert "app" in refused.json()["error"]["message"]
    anonymous = httpx.get(proxy.base_url + "/model/status")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"
    forged = httpx.get(
        proxy.base_url + "/model/status", cookies={"prismgate_session": "e30.forged"}
    )
    assert forged.status_code == 401
    wrong_method = httpx.post(proxy.base_url + "/model/status", headers=ADMIN, json={})
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
