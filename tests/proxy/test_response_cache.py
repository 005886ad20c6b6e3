"""The response cache through the real proxy: hits without upstream calls, scoped by
caller, fresh signed links on a hit, refreshes, TTLs, nothing cached on failure, and the
Redis store shared by two gateways."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from tests.emulators import OpenAIEmulator
from tests.proxy.conftest import RunningProxy, model

BODY = {"model": "art", "prompt": "an otter", "size": "1024x1024", "quality": "low"}


def config(emulator: OpenAIEmulator, tmp_path: Any, **litellm: Any) -> dict[str, Any]:
    return {
        "model_list": [
            model(
                "art",
                "openai/gpt-image-1",
                api_base=emulator.base_url + "/v1",
                api_key=emulator.api_key,
            ),
            model(
                "chat",
                "openai/gpt-4o-mini",
                api_base=emulator.base_url + "/v1",
                api_key=emulator.api_key,
            ),
        ],
        "litellm_settings": litellm,
        "general_settings": {
            "image_store": {"path": str(tmp_path / "images")},
            "redis_prefix": f"t-{uuid.uuid4().hex}:",
        },
    }


def post(
    proxy: RunningProxy, key: str = "sk-alice", body: Any = None, **headers: str
) -> httpx.Response:
    return httpx.post(
        proxy.base_url + "/v1/images/generations",
        json=body or BODY,
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=30,
    )


def test_second_identical_request_is_a_hit_and_another_key_a_miss(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator, tmp_path: Any
) -> None:
    proxy = serve(config(openai_emulator, tmp_path, cache=True))
    first = post(proxy)
    assert first.headers["x-portkey-cache-status"] == "MISS"
    second = post(proxy)
    assert second.headers["x-portkey-cache-status"] == "HIT"
    assert second.json()["data"] == first.json()["data"]
    assert second.headers["x-prismgate-response-cost"] == "0.000000"
    assert len(openai_emulator.requests) == 1
    other = post(proxy, key="sk-bob")
    assert other.headers["x-portkey-cache-status"] == "MISS"
    assert len(openai_emulator.requests) == 2
    # Field order and spelling do not matter: the decoded request is the key.
    reordered = post(
        proxy, body={"quality": "low", "size": "1024x1024", "prompt": "an otter", "model": "art"}
    )
    assert reordered.headers["x-portkey-cache-status"] == "HIT"


def test_a_hit_returns_fresh_signed_links_to_the_same_image(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator, tmp_path: Any
) -> None:
    proxy = serve(config(openai_emulator, tmp_path, cache=True))
    body = {**BODY, "model": "art", "response_format": "url"}
    first = post(proxy, body=body)
    time.sleep(1.1)  # links carry their expiry in whole seconds
    second = post(proxy, body=body)
    assert second.headers["x-portkey-cache-status"] == "HIT"
    old, new = first.json()["data"][0]["url"], second.json()["data"][0]["url"]
    assert "/v1/images/files/" in new and new != old
    assert httpx.get(new).content == httpx.get(old).content
    assert len(openai_emulator.requests) == 1


def test_refresh_headers_skip_the_lookup(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator, tmp_path: Any
) -> None:
    proxy = serve(config(openai_emulator, tmp_path, cache=True))
    post(proxy)
    refreshed = post(proxy, **{"x-portkey-cache-force-refresh": "true"})
    assert refreshed.headers["x-portkey-cache-status"] == "REFRESH"
    no_cache = post(proxy, **{"Cache-Control": "no-cache"})
    assert no_cache.headers["x-portkey-cache-status"] == "REFRESH"
    assert len(openai_emulator.requests) == 3
    # The refreshed answer is the one kept.
    assert post(proxy).json()["data"] == no_cache.json()["data"]


def test_failures_are_never_cached(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator, tmp_path: Any
) -> None:
    proxy = serve(config(openai_emulator, tmp_path, cache=True, num_retries=0))
    openai_emulator.fail_next("status", status=500)
    assert post(proxy).status_code == 500
    answer = post(proxy)
    assert answer.status_code == 200
    assert answer.headers["x-portkey-cache-status"] == "MISS"
    assert len(openai_emulator.requests) == 2


def test_cache_off_says_disabled(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator, tmp_path: Any
) -> None:
    proxy = serve(config(openai_emulator, tmp_path))
    assert post(proxy).headers["x-portkey-cache-status"] == "DISABLED"
    assert post(proxy).headers["x-portkey-cache-status"] == "DISABLED"
    assert len(openai_emulator.requests) == 2


def test_ttl_expires_entries(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator, tmp_path: Any
) -> None:
    proxy = serve(config(openai_emulator, tmp_path))
    portkey = json.dumps({"cache": {"mode": "simple", "max_age": 1}, "override_params": {}})
    headers = {"x-portkey-config": portkey}
    # A Portkey config turns the cache on for its calls, routed by the request's model.
    assert post(proxy, **headers).headers["x-portkey-cache-status"] == "MISS"
    assert post(proxy, **headers).headers["x-portkey-cache-status"] == "HIT"
    time.sleep(1.2)
    assert post(proxy, **headers).headers["x-portkey-cache-status"] == "MISS"
    assert len(openai_emulator.requests) == 2


def test_chat_completions_are_cached_too(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator, tmp_path: Any
) -> None:
    proxy = serve(config(openai_emulator, tmp_path, cache=True))
    body = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}
    url = proxy.base_url + "/v1/chat/completions"
    first = httpx.post(url, json=body, headers={"Authorization": "Bearer sk-a"}, timeout=30)
    second = httpx.post(url, json=body, headers={"Authorization": "Bearer sk-a"}, timeout=30)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.headers["x-portkey-cache-status"] == "HIT"
    assert second.json()["choices"] == first.json()["choices"]
    assert len(openai_emulator.requests) == 1


def test_redis_cache_is_shared_by_two_gateways(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator, tmp_path: Any
) -> None:
    redis = {"type": "redis", "host": "127.0.0.1", "port": 6379}
    shared = config(openai_emulator, tmp_path, cache=True, cache_params=redis)
    # Cache keys are HMACs keyed from the master key: instances that share it share entries.
    master = "sk-master-shared-0001"
    shared["general_settings"]["master_key"] = master
    one, two = serve(shared), serve(shared)
    first = post(one, key=master)
    assert first.headers["x-portkey-cache-status"] == "MISS"
    hit = post(two, key=master)
    assert hit.headers["x-portkey-cache-status"] == "HIT"
    assert base64.b64decode(hit.json()["data"][0]["b64_json"]) == base64.b64decode(
        first.json()["data"][0]["b64_json"]
    )
    assert len(openai_emulator.requests) == 1


def test_a_hit_never_links_to_an_image_this_gateway_lacks(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator, tmp_path: Any
) -> None:
    # Two gateways share the cache (Redis) but not their image stores (local folders).
    redis = {"type": "redis", "host": "127.0.0.1", "port": 6379}
    shared = config(openai_emulator, tmp_path / "one", cache=True, cache_params=redis)
    other = {
        **shared,
        "general_settings": {
            **shared["general_settings"],
            "image_store": {"path": str(tmp_path / "two" / "images")},
        },
    }
    body = {**BODY, "response_format": "url"}
    assert post(serve(shared), body=body).headers["x-portkey-cache-status"] == "MISS"
    answer = post(serve(other), body=body)
    assert answer.headers["x-portkey-cache-status"] == "MISS"  # not a link to nothing
    assert httpx.get(answer.json()["data"][0]["url"]).status_code == 200
    assert len(openai_emulator.requests) == 2
