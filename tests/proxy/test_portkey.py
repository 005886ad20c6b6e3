"""Portkey's headers and client: trace ids, metadata, direct-provider mode."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from portkey_ai import Portkey

from tests.emulators import OpenAIEmulator
from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

MOCK_ONLY = {"model_list": [model("otters", "mock/otters")]}
BODY = {"model": "otters", "prompt": "an otter", "size": "64x64"}


def test_portkey_client_gets_an_image(serve: Callable[..., RunningProxy]) -> None:
    # The seed's Portkey usage: base_url at the gateway's /v1, no provider key.
    proxy = serve(MOCK_ONLY)
    client = Portkey(base_url=proxy.base_url + "/v1", api_key="")
    image = client.images.generate(prompt="A cute baby sea otter", model="otters", size="64x64")
    assert image.data and image.data[0].b64_json


def test_trace_id_is_echoed_or_made(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(MOCK_ONLY)
    url = proxy.base_url + "/v1/images/generations"
    traced = httpx.post(url, json=BODY, headers={"x-portkey-trace-id": "trace-42"})
    assert traced.headers["x-portkey-trace-id"] == "trace-42"
    untraced = httpx.post(url, json=BODY)
    assert untraced.headers["x-portkey-trace-id"] == untraced.headers["x-request-id"]
    refused = httpx.get(proxy.base_url + "/nope", headers={"x-portkey-trace-id": "t-9"})
    assert refused.headers["x-portkey-trace-id"] == "t-9"  # on errors too


def test_metadata_must_be_a_json_object(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(MOCK_ONLY)
    url = proxy.base_url + "/v1/images/generations"
    good = httpx.post(url, json=BODY, headers={"x-portkey-metadata": '{"_user": "alice", "n": 2}'})
    assert good.status_code == 200
    bad = httpx.post(url, json=BODY, headers={"x-portkey-metadata": "not json"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "x-portkey-metadata"


def test_tolerates_what_the_portkey_client_always_sends(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(MOCK_ONLY)
    answer = httpx.post(
        proxy.base_url + "/v1/images/generations",
        json=BODY,
        headers={
            "x-portkey-api-key": "",
            "x-portkey-strict-open-ai-compliance": "false",
            "Authorization": "Bearer OPENAI_API_KEY",
        },
    )
    assert answer.status_code == 200


def direct_config(emulator: OpenAIEmulator, allow: bool) -> dict[str, object]:
    return {
        "model_list": [model("otters", "mock/otters")],
        "general_settings": {
            "master_key": MASTER_KEY,
            "allow_client_provider_keys": allow,
            "media": {"allowed_hosts": [emulator.base_url.removeprefix("http://")]},
        },
    }


def test_direct_provider_mode_uses_only_the_callers_key(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    # The operator has a key of its own in the environment: it must never be used here.
    proxy = serve(
        direct_config(openai_emulator, allow=True),
        environ={"OPENAI_API_KEY": "sk-operator-secret-key"},
    )
    client = Portkey(
        api_key=MASTER_KEY,
        base_url=proxy.base_url + "/v1",
        provider="openai",
        Authorization=f"Bearer {openai_emulator.api_key}",
        custom_host=openai_emulator.base_url + "/v1",
    )
    image = client.images.generate(prompt="an otter", model="dall-e-2", size="256x256")
    assert image.data and image.data[0].url
    sent = openai_emulator.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {openai_emulator.api_key}"
    assert sent.json == {"model": "dall-e-2", "prompt": "an otter", "size": "256x256"}


def test_direct_provider_mode_is_off_by_default(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    proxy = serve(direct_config(openai_emulator, allow=False))
    answer = httpx.post(
        proxy.base_url + "/v1/images/generations",
        json={"model": "dall-e-2", "prompt": "x"},
        headers={"x-portkey-api-key": MASTER_KEY, "x-portkey-provider": "openai",
                 "Authorization": "Bearer sk-caller"},
    )  # fmt: skip
    assert answer.status_code == 403
    assert "allow_client_provider_keys" in answer.json()["error"]["message"]
    assert openai_emulator.requests == []


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"Authorization": "Bearer OPENAI_API_KEY"}, 401, "needs your provider key"),
        ({"Authorization": "Bearer sk-caller", "x-portkey-custom-host": "http://10.0.0.7/v1"},
         403, "a non-public address"),
        ({"Authorization": "Bearer sk-caller", "x-portkey-custom-host": "file:///etc/passwd"},
         400, "must be an http or https URL"),
        ({"Authorization": "Bearer sk-caller", "x-portkey-provider": "nobody"}, 400,
         "unknown provider 'nobody'"),
    ],
)  # fmt: skip
def test_direct_provider_mode_refusals(
    serve: Callable[..., RunningProxy],
    openai_emulator: OpenAIEmulator,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    proxy = serve(direct_config(openai_emulator, allow=True))
    answer = httpx.post(
        proxy.base_url + "/v1/images/generations",
        json={"model": "dall-e-2", "prompt": "x"},
        headers={"x-portkey-api-key": MASTER_KEY, "x-portkey-provider": "openai", **headers},
    )
    assert answer.status_code == status
    assert message in answer.json()["error"]["message"]
    assert openai_emulator.requests == []
