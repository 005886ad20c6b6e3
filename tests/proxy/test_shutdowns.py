"""A shut-down model through the proxy: a 400 naming the date and the replacement before
any upstream call, while a deployment with its own api_base still sends the name; and
`/model/info` shows the shutdown with where the catalog learnt it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.emulators import OpenAIEmulator
from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def config(emulator: OpenAIEmulator) -> dict[str, Any]:
    return {
        "model_list": [
            model("old-art", "openai/dall-e-3", api_key="sk-not-used"),
            model(
                "emulated-art",
                "openai/dall-e-3",
                api_base=emulator.base_url + "/v1",
                api_key=emulator.api_key,
            ),
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }


def generate(proxy: RunningProxy, name: str) -> httpx.Response:
    body = {"model": name, "prompt": "an otter", "response_format": "b64_json"}
    return httpx.post(
        proxy.base_url + "/v1/images/generations", json=body, headers=ADMIN, timeout=30
    )


def test_a_shut_down_model_is_a_400_at_the_providers_endpoint_only(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    proxy = serve(config(openai_emulator))
    refused = generate(proxy, "old-art")
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert error["type"] == "invalid_request_error"
    assert "openai/dall-e-3 was shut down by its provider on 2026-05-12" in error["message"]
    assert "gpt-image-2.5-sunburst" in error["message"]
    assert "router_settings.model_group_alias" in error["message"]
    assert openai_emulator.requests == []
    served = generate(proxy, "emulated-art")
    assert served.status_code == 200, served.text
    assert [r.json["model"] for r in openai_emulator.requests] == ["dall-e-3"]


def test_model_info_shows_the_shutdown_date_and_replacement(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    proxy = serve(config(openai_emulator))
    answer = httpx.get(proxy.base_url + "/model/info", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    infos = {entry["model_name"]: entry["model_info"] for entry in answer.json()["data"]}
    for name in ("old-art", "emulated-art"):
        info = infos[name]
        assert info["shutdown_date"] == "2026-05-12"
        assert info["replacement"] == "gpt-image-2.5-sunburst"
        assert info["checked"] and info["sources"]
