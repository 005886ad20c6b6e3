"""/health checks every deployment without a paid call; the probes need no key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from tests.emulators import OpenAIEmulator
from tests.processes import free_port
from tests.proxy.conftest import RunningProxy, model


def test_liveness_and_readiness(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve({"model_list": [model("otters", "mock/otters")]})
    assert httpx.get(proxy.base_url + "/health/liveliness").json() == "I'm alive!"
    ready = httpx.get(proxy.base_url + "/health/readiness").json()
    assert ready["status"] == "healthy" and ready["models"] == ["otters"]
    # The embedded SQLite database and the local store answer; no Redis is configured.
    assert (ready["db"], ready["cache"], ready["image_store"]) == ("connected", None, "connected")


def test_readiness_says_which_dependency_does_not_answer(
    serve: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proxy = serve({
        "model_list": [model("otters", "mock/otters")],
        "router_settings": {"redis_host": "127.0.0.1", "redis_port": free_port()},
        "general_settings": {"image_store": {"path": str(blocker / "images")}},
    })  # fmt: skip
    answer = httpx.get(proxy.base_url + "/health/readiness", timeout=10)
    # Still ready: every instance shares these, and the gateway serves on without them.
    assert answer.status_code == 200
    ready = answer.json()
    assert ready["status"] == "degraded"
    assert ready["db"] == "connected"
    assert ready["cache"].startswith("unreachable (") and "127.0.0.1" not in ready["cache"]
    assert ready["image_store"] == "unreachable (PermissionError)"
    # b64_json answers need neither.
    served = httpx.post(
        proxy.base_url + "/v1/images/generations",
        json={"model": "otters", "prompt": "x", "response_format": "b64_json"},
        timeout=10,
    )
    assert served.status_code == 200


def test_health_checks_each_deployment_without_generating(
    serve: Callable[..., RunningProxy],
    openai_emulator: OpenAIEmulator,
    azure_emulator: OpenAIEmulator,
) -> None:
    base = openai_emulator.base_url + "/v1"
    proxy = serve(
        {
            "model_list": [
                model("good", "openai/dall-e-3", api_base=base, api_key=openai_emulator.api_key),
                model("azure", "azure/dall-e-3", api_base=azure_emulator.base_url,
                      api_key=azure_emulator.api_key),
                model("bad-key", "openai/dall-e-3", api_base=base, api_key="sk-wrong-key-1234"),
                model("no-key", "openai/dall-e-3", api_base="https://api.openai.com/v1"),
                model("down", "openai/dall-e-3", api_base="http://127.0.0.1:9/v1", api_key="k"),
                model("otters", "mock/otters"),
            ]
        }
    )  # fmt: skip
    report = httpx.get(proxy.base_url + "/health").json()
    healthy = {e["model"]: e for e in report["healthy_endpoints"]}
    unhealthy = {e["model"]: e for e in report["unhealthy_endpoints"]}
    assert set(healthy) == {"good", "azure", "otters"}
    assert set(unhealthy) == {"bad-key", "no-key", "down"}
    assert (report["healthy_count"], report["unhealthy_count"]) == (3, 3)
    assert healthy["good"]["checks"] == {"credentials": "present", "list_models": "200"}
    # What the provider said comes along, through the redactor.
    assert unhealthy["bad-key"]["error"] == (
        "the provider rejected the credentials: Incorrect API key provided: *************1234."
    )
    assert unhealthy["no-key"]["checks"] == {"credentials": "missing"}
    assert unhealthy["down"]["checks"]["list_models"] == "unreachable"
    assert "sk-wrong-key-1234" not in httpx.get(proxy.base_url + "/health").text
    # Only free listings reached the providers: no image was generated.
    for emulator in (openai_emulator, azure_emulator):
        assert emulator.requests and all(r.method == "GET" for r in emulator.requests)
