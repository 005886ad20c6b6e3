"""Portkey configs and virtual keys through the real proxy, with the portkey-ai client:
fallback, loadbalance, conditional, retries, nested inheritance, override_params (multipart
edits too), timeouts, and the response headers Portkey's users read."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from portkey_ai import Portkey

from tests.emulators import OpenAIEmulator
from tests.emulators.images import make_image
from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

BODY = {"model": "dall-e-2", "prompt": "an otter", "size": "256x256", "response_format": "url"}


def virtual_key(emulator: OpenAIEmulator) -> dict[str, str]:
    return {
        "provider": "openai",
        "api_key": emulator.api_key,
        "api_base": emulator.base_url + "/v1",
    }


def gateway_config(east: OpenAIEmulator, west: OpenAIEmulator, **extra: Any) -> dict[str, Any]:
    return {
        "model_list": [
            model("art", "openai/dall-e-2", api_base=east.base_url + "/v1", api_key=east.api_key),
            model(
                "dall-e-2", "openai/dall-e-2", api_base=west.base_url + "/v1", api_key=west.api_key
            ),
        ],
        "virtual_keys": {"east": virtual_key(east), "west": virtual_key(west)},
        "general_settings": {
            "master_key": MASTER_KEY,
            "retries": {"base_delay": 0.01, "max_delay": 0.05},
            "redis_prefix": f"t-{uuid.uuid4().hex}:",
        },
        **extra,
    }


def client(proxy: RunningProxy, config: dict[str, Any] | str, **options: Any) -> Portkey:
    return Portkey(api_key=MASTER_KEY, base_url=proxy.base_url + "/v1", config=config, **options)


def raw_generate(
    proxy: RunningProxy, config: dict[str, Any] | str, **headers: str
) -> httpx.Response:
    value = config if isinstance(config, str) else json.dumps(config)
    return httpx.post(
        proxy.base_url + "/v1/images/generations",
        json=BODY,
        headers={"Authorization": f"Bearer {MASTER_KEY}", "x-portkey-config": value, **headers},
        timeout=30,
    )


FALLBACK = {
    "strategy": {"mode": "fallback"},
    "targets": [{"virtual_key": "east"}, {"virtual_key": "west"}],
}


def test_fallback_moves_on_after_a_503(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, west: OpenAIEmulator
) -> None:
    proxy = serve(gateway_config(east, west))
    east.fail_next("status", status=503)
    image = client(proxy, FALLBACK).images.generate(
        prompt="an otter", model="dall-e-2", size="256x256"
    )
    assert image.data
    assert (len(east.requests), len(west.requests)) == (1, 1)
    east.fail_next("status", status=503)
    answer = raw_generate(proxy, FALLBACK)
    assert answer.headers["x-portkey-last-used-option-index"] == "config.targets[1]"
    assert answer.headers["x-prismgate-attempts"] == (
        "config.targets[0]=503, config.targets[1]=200"
    )


def test_fallback_on_status_codes_limits_when_it_moves_on(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, west: OpenAIEmulator
) -> None:
    proxy = serve(gateway_config(east, west))
    config = {**FALLBACK, "strategy": {"mode": "fallback", "on_status_codes": [429]}}
    east.fail_next("status", status=503)
    answer = raw_generate(proxy, config)
    assert answer.status_code == 503
    assert (len(east.requests), len(west.requests)) == (1, 0)
    east.fail_next("status", status=429)
    assert raw_generate(proxy, config).status_code == 200
    assert len(west.requests) == 1


def test_loadbalance_follows_weights(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, west: OpenAIEmulator
) -> None:
    proxy = serve(gateway_config(east, west))
    config = json.dumps(
        {
            "strategy": {"mode": "loadbalance"},
            "targets": [
                {"virtual_key": "east", "weight": 0.7},
                {"virtual_key": "west", "weight": 0.3},
            ],
        }
    )
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "x-portkey-config": config}
    with httpx.Client(base_url=proxy.base_url, headers=headers, timeout=30) as http:
        for _ in range(1000):
            assert http.post("/v1/images/generations", json=BODY).status_code == 200
    assert len(east.requests) + len(west.requests) == 1000
    assert abs(len(east.requests) / 1000 - 0.7) <= 0.05


def test_conditional_routes_on_metadata(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, west: OpenAIEmulator
) -> None:
    proxy = serve(gateway_config(east, west))
    config = {
        "strategy": {
            "mode": "conditional",
            "conditions": [{"query": {"metadata.plan": {"$eq": "paid"}}, "then": "fast"}],
            "default": "slow",
        },
        "targets": [
            {"name": "fast", "virtual_key": "east"},
            {"name": "slow", "virtual_key": "west"},
        ],
    }
    paid = client(proxy, config, metadata={"plan": "paid"})
    free = client(proxy, config, metadata={"plan": "free"})
    assert paid.images.generate(prompt="an otter", model="dall-e-2", size="256x256").data
    assert free.images.generate(prompt="an otter", model="dall-e-2", size="256x256").data
    assert (len(east.requests), len(west.requests)) == (1, 1)


def test_conditional_routes_on_params(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, west: OpenAIEmulator
) -> None:
    proxy = serve(gateway_config(east, west))
    config = {
        "strategy": {
            "mode": "conditional",
            "conditions": [{"query": {"params.size": {"$in": ["512x512"]}}, "then": "big"}],
            "default": "small",
        },
        "targets": [
            {"name": "big", "virtual_key": "east"},
            {"name": "small", "virtual_key": "west"},
        ],
    }
    assert raw_generate(proxy, config).status_code == 200
    assert (len(east.requests), len(west.requests)) == (0, 1)


def test_retry_with_attempts_and_retry_after(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, west: OpenAIEmulator
) -> None:
    proxy = serve(gateway_config(east, west))
    config = {
        "retry": {"attempts": 3, "on_status_codes": [429], "use_retry_after_header": True},
        "virtual_key": "east",
    }
    east.fail_next("status", status=429, retry_after=1, times=2)
    started = time.monotonic()
    image = client(proxy, config).images.generate(
        prompt="an otter", model="dall-e-2", size="256x256"
    )
    assert image.data
    assert time.monotonic() - started >= 1.8  # two Retry-After waits of 1 s
    assert len(east.requests) == 3
    east.fail_next("status", status=429, retry_after=0.1)
    answer = raw_generate(proxy, config)
    assert answer.headers["x-portkey-retry-attempt-count"] == "1"


def test_retry_only_on_its_status_codes(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, west: OpenAIEmulator
) -> None:
    proxy = serve(gateway_config(east, west))
    config = {"retry": {"attempts": 3, "on_status_codes": [429]}, "virtual_key": "east"}
    east.fail_next("status", status=500, times=3)
    assert raw_generate(proxy, config).status_code == 500
    assert len(east.requests) == 1


def test_nested_targets_inherit_and_the_child_wins(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, west: OpenAIEmulator
) -> None:
    proxy = serve(gateway_config(east, west))
    config = {
        "strategy": {"mode": "fallback"},
        "retry": {"attempts": 2, "on_status_codes": [500]},
        "override_params": {"size": "512x512", "user": "parent"},
        "targets": [
            {
                "strategy": {"mode": "single"},
                "override_params": {"user": "child"},
                "targets": [{"virtual_key": "east"}],
            },
            {"virtual_key": "west", "retry": {"attempts": 0}},
        ],
    }
    east.fail_next("status", status=500, times=3)
    answer = raw_generate(proxy, config)
    assert answer.status_code == 200
    # The nested target retried twice (inherited), then the fallback answered.
    assert len(east.requests) == 3
    assert answer.headers["x-portkey-last-used-option-index"] == "config.targets[1]"
    sent = west.requests[-1].json or {}
    assert (sent["size"], sent["user"]) == ("512x512", "parent")
    assert (east.requests[-1].json or {})["user"] == "child"


def test_override_params_apply_to_multipart_edits(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, west: OpenAIEmulator
) -> None:
    proxy = serve(gateway_config(east, west))
    config = json.dumps({"virtual_key": "east", "override_params": {"size": "512x512", "n": 2}})
    image = make_image(256, 256, "png", seed=3, transparent=True)
    answer = httpx.post(
        proxy.base_url + "/v1/images/edits",
        files={"image": ("otter.png", io.BytesIO(image), "image/png")},
        data={"model": "dall-e-2", "prompt": "add a hat", "size": "256x256"},
        headers={"Authorization": f"Bearer {MASTER_KEY}", "x-portkey-config": config},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["data"]) == 2
    form = east.requests[-1].raw
    assert b"512x512" in form and b"256x256" not in form


def test_a_target_may_name_a_model_group(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, west: OpenAIEmulator
) -> None:
    proxy = serve(gateway_config(east, west))
    config = {"strategy": {"mode": "single"}, "targets": [{"override_params": {"model": "art"}}]}
    assert raw_generate(proxy, config).status_code == 200
    assert (len(east.requests), len(west.requests)) == (1, 0)


def test_request_timeout_in_a_config(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, west: OpenAIEmulator
) -> None:
    proxy = serve(gateway_config(east, west))
    east.fail_next("delay", delay=3)
    started = time.monotonic()
    answer = raw_generate(proxy, {"virtual_key": "east", "request_timeout": 300})
    assert answer.status_code == 504
    assert time.monotonic() - started < 2


def test_saved_config_by_id(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, west: OpenAIEmulator
) -> None:
    proxy = serve(gateway_config(east, west, portkey_configs={"pc-fallback": FALLBACK}))
    east.fail_next("status", status=500)
    answer = raw_generate(proxy, "pc-fallback")
    assert answer.status_code == 200
    assert answer.headers["x-portkey-last-used-option-index"] == "config.targets[1]"
    unknown = raw_generate(proxy, "pc-nope")
    assert unknown.status_code == 400
    assert "pc-nope" in unknown.json()["error"]["message"]
    assert "pc-fallback" not in unknown.json()["error"]["message"]  # the operator's ids


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (
            {"strategy": {"mode": "roundrobin"}, "targets": [{"virtual_key": "east"}]},
            "strategy.mode",
        ),
        (
            {
                "strategy": {"mode": "loadbalance"},
                "targets": [{"virtual_key": "east", "weight": "x"}],
            },
            "targets[0].weight",
        ),
        ({"retry": {"attempts": "many"}, "virtual_key": "east"}, "retry.attempts"),
        ('{"strategy":', "JSON"),
    ],
)
def test_an_invalid_config_is_a_400_naming_the_field(
    serve: Callable[..., RunningProxy],
    east: OpenAIEmulator,
    west: OpenAIEmulator,
    config: dict[str, Any] | str,
    field: str,
) -> None:
    proxy = serve(gateway_config(east, west))
    answer = raw_generate(proxy, config)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "x-portkey-config"
    assert field in error["message"]
    assert len(east.requests) == 0


def test_virtual_key_header(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, west: OpenAIEmulator
) -> None:
    proxy = serve(gateway_config(east, west))
    portkey = Portkey(api_key=MASTER_KEY, base_url=proxy.base_url + "/v1", virtual_key="west")
    assert portkey.images.generate(prompt="an otter", model="dall-e-2", size="256x256").data
    assert (len(east.requests), len(west.requests)) == (0, 1)
    # The provider key never left the gateway: the client never held it.
    assert west.requests[-1].headers["authorization"] == f"Bearer {west.api_key}"
    unknown = httpx.post(
        proxy.base_url + "/v1/images/generations",
        json=BODY,
        headers={"Authorization": f"Bearer {MASTER_KEY}", "x-portkey-virtual-key": "nope"},
    )
    assert unknown.status_code == 400
    assert "'nope'" in unknown.json()["error"]["message"]
    assert "east" not in unknown.json()["error"]["message"]  # the operator's names


def test_caller_provider_keys_in_a_config_need_permission(
    serve: Callable[..., RunningProxy], east: OpenAIEmulator, west: OpenAIEmulator
) -> None:
    proxy = serve(gateway_config(east, west))
    config = {"provider": "openai", "api_key": "sk-caller", "custom_host": east.base_url + "/v1"}
    answer = raw_generate(proxy, config)
    assert answer.status_code == 403
    assert len(east.requests) == 0
