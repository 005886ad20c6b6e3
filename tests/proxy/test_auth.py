"""The master key: every accepted header form, refusals, and the public health paths."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import openai
import pytest
from portkey_ai import Portkey

from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

CONFIG = {
    "model_list": [model("otters", "mock/otters")],
    "general_settings": {"master_key": MASTER_KEY},
}


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {MASTER_KEY}"},
        {"x-api-key": MASTER_KEY},
        {"api-key": MASTER_KEY},
        {"x-portkey-api-key": MASTER_KEY, "Authorization": "Bearer OPENAI_API_KEY"},
    ],
)
def test_every_key_header_is_accepted(
    serve: Callable[..., RunningProxy], headers: dict[str, str]
) -> None:
    proxy = serve(CONFIG)
    answer = httpx.get(proxy.base_url + "/v1/models", headers=headers)
    assert answer.status_code == 200
    assert answer.json()["data"][0]["id"] == "otters"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing API key"),
        ({"Authorization": "Bearer sk-guess"}, "the API key is not valid for this gateway"),
        ({"Authorization": f"Basic {MASTER_KEY}"}, "missing API key"),
        ({"x-portkey-api-key": "", "Authorization": "Bearer OPENAI_API_KEY"},
         "the API key is not valid"),
    ],
)  # fmt: skip
def test_missing_or_wrong_key_is_401(
    serve: Callable[..., RunningProxy], headers: dict[str, str], message: str
) -> None:
    proxy = serve(CONFIG)
    for path in ("/v1/models", "/v1/images/generations", "/health", "/model/info"):
        answer = httpx.request(
            "POST" if "images" in path else "GET", proxy.base_url + path, headers=headers
        )
        assert answer.status_code == 401
        error = answer.json()["error"]
        assert error["type"] == "authentication_error"
        assert message in error["message"]
        assert "sk-guess" not in answer.text


def test_health_probes_are_public_and_only_them(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(CONFIG)
    for path in ("/health/liveliness", "/health/liveness", "/health/readiness"):
        assert httpx.get(proxy.base_url + path).status_code == 200
    # Near-misses of a public path are not public.
    for path in ("/health/liveliness/", "/Health/liveliness", "/health/liveliness%2F..%2Fhealth"):
        assert httpx.get(proxy.base_url + path).status_code == 401


def test_openai_sdk_with_the_master_key(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(CONFIG)
    client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url + "/v1")
    image = client.images.generate(prompt="an otter", model="otters", size="64x64")
    assert image.data
    refused = openai.OpenAI(api_key="sk-wrong", base_url=proxy.base_url + "/v1")
    with pytest.raises(openai.AuthenticationError):
        refused.images.generate(prompt="an otter", model="otters")


def test_portkey_client_with_the_master_key(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(CONFIG)
    client = Portkey(api_key=MASTER_KEY, base_url=proxy.base_url + "/v1")
    image = client.images.generate(prompt="A cute baby sea otter", model="otters", size="64x64")
    assert image.data and image.data[0].b64_json


def test_no_master_key_means_open_on_loopback(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve({"model_list": [model("otters", "mock/otters")]})
    assert httpx.get(proxy.base_url + "/v1/models").status_code == 200
