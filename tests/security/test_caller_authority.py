"""The caller is not the operator: a caller holding the gateway key may set request
parameters, never an endpoint, credential, region, file, timeout or transport, through
any entry point (README, "Security model").

Each probe names a setting and points it at a canary (a loopback listener that counts
connections): the probe must be refused before any provider is called, and neither the
canary nor the operator's Bedrock endpoint may be dialled."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prismgate
from prismgate import Gateway, load_config
from prismgate.authority import CallerAuthority
from prismgate.errors import BadRequestError
from prismgate.gateway import CallOptions
from prismgate.providers import provider_settings
from prismgate.routing.deployments import CallerOverrides
from prismgate.types import ImageGenerationRequest
from tests.emulators import OpenAIEmulator
from tests.emulators.bedrock import BedrockEmulator
from tests.security.canary import Canary
from tests.serving import MASTER_KEY, RunningProxy

TITAN = "amazon.titan-image-generator-v2:0"
REGION = "eu-west-1"
SESSION_TOKEN = "operator-session-token-0001"

# The settings the defects were found with, written out by hand: the rule must cover them
# whatever the providers declare. The rest come from the declarations themselves, so a
# setting a provider adds tomorrow is probed too.
KNOWN_DANGEROUS = (
    "aws_bedrock_runtime_endpoint", "vertex_credentials", "aws_region_name", "aws_profile_name",
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "vertex_project",
    "vertex_location", "organization", "api_base", "api_key", "api_version",
    "custom_llm_provider", "timeout", "connect_timeout", "max_retries", "safe_to_retry",
)  # fmt: skip
SETTING_NAMES = sorted(
    set(KNOWN_DANGEROUS)
    | set(provider_settings())
    | {s.portkey for s in provider_settings().values() if s.portkey}
)


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    with Canary() as listening:
        yield listening


@pytest.fixture(scope="module")
def bedrock() -> Iterator[BedrockEmulator]:
    with BedrockEmulator(region=REGION, session_token=SESSION_TOKEN) as emulator:
        yield emulator


def operator_config(bedrock: BedrockEmulator, **general: Any) -> dict[str, Any]:
    aws = {
        "aws_access_key_id": bedrock.credentials.access_key_id,
        "aws_secret_access_key": bedrock.credentials.secret_access_key,
        "aws_session_token": SESSION_TOKEN,
        "aws_region_name": REGION,
        "aws_bedrock_runtime_endpoint": bedrock.base_url,
    }
    return {
        "model_list": [
            {"model_name": "titan", "litellm_params": {"model": f"bedrock/{TITAN}", **aws}},
        ],
        "virtual_keys": {"vk-bedrock": {"provider": "bedrock", **aws}},
        "general_settings": {"master_key": MASTER_KEY, **general},
    }


@pytest.fixture(scope="module")
def proxy(bedrock: BedrockEmulator) -> Iterator[RunningProxy]:
    running = RunningProxy(operator_config(bedrock)).start()
    yield running
    running.stop()


@pytest.fixture
def client(proxy: RunningProxy) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=proxy.base_url, headers=headers, timeout=30) as http:
        yield http


def hostile_value(name: str, canary: Canary) -> Any:
    """What an attacker would put in `name`: the canary wherever a URL fits."""
    if "credentials" in name or "service_account" in name:
        return {"type": "service_account", "token_uri": canary.url + "/token"}
    if "timeout" in name or "retries" in name:
        return 86_400
    return canary.url + "/x"


# Each entry point a proxy caller has: (name, how it sends one parameter).
Probe = Callable[[httpx.Client, str, Any], httpx.Response]


def _generation(client: httpx.Client, name: str, value: Any) -> httpx.Response:
    return client.post(
        "/v1/images/generations", json={"model": "titan", "prompt": "x", name: value}
    )


def _extra_body(client: httpx.Client, name: str, value: Any) -> httpx.Response:
    body = {"model": "titan", "prompt": "x", "extra_body": {name: value}}
    return client.post("/v1/images/generations", json=body)


def _chat(client: httpx.Client, name: str, value: Any) -> httpx.Response:
    body = {"model": "titan", "messages": [{"role": "user", "content": "hi"}], name: value}
    return client.post("/v1/chat/completions", json=body)


def _edit_form(client: httpx.Client, name: str, value: Any) -> httpx.Response:
    fields = {"model": "titan", "prompt": "x", name: json.dumps(value)}
    files = {"image": ("a.png", _PNG, "image/png")}
    return client.post("/v1/images/edits", data=fields, files=files)


def _override_params(client: httpx.Client, name: str, value: Any) -> httpx.Response:
    config = {"override_params": {name: value}}
    return client.post(
        "/v1/images/generations",
        json={"model": "titan", "prompt": "x"},
        headers={"x-portkey-config": json.dumps(config)},
    )


def _nested_override_params(client: httpx.Client, name: str, value: Any) -> httpx.Response:
    config = {
        "strategy": {"mode": "fallback"},
        "override_params": {"quality": "standard"},
        "targets": [{"virtual_key": "vk-bedrock", "override_params": {name: value}}],
    }
    return client.post(
        "/v1/images/generations",
        json={"model": TITAN, "prompt": "x"},
        headers={"x-portkey-config": json.dumps(config)},
    )


def _virtual_key_body(client: httpx.Client, name: str, value: Any) -> httpx.Response:
    return client.post(
        "/v1/images/generations",
        json={"model": TITAN, "prompt": "x", name: value},
        headers={"x-portkey-virtual-key": "vk-bedrock"},
    )


PROBES: dict[str, Probe] = {
    "body": _generation,
    "extra_body": _extra_body,
    "chat body": _chat,
    "multipart edit": _edit_form,
    "override_params": _override_params,
    "nested override_params": _nested_override_params,
    "virtual key + body": _virtual_key_body,
}


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


_PNG = _png()


def assert_refused(answer: httpx.Response, name: str) -> None:
    assert answer.status_code == 400, (name, answer.status_code, answer.text)
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "setting_not_allowed", error
    assert name in error["message"] or name in str(error["param"])


@pytest.mark.parametrize("probe", PROBES)
def test_no_entry_point_sets_a_provider_setting(
    client: httpx.Client, canary: Canary, bedrock: BedrockEmulator, probe: str
) -> None:
    bedrock.reset()
    before = canary.hits
    for name in SETTING_NAMES:
        assert_refused(PROBES[probe](client, name, hostile_value(name, canary)), name)
    assert canary.hits == before, "a refused setting was dialled"
    assert bedrock.requests == [], "the operator's provider was called for a refused request"


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(SETTING_NAMES),
    spelling=st.sampled_from(["upper", "camel", "dashes", "as is"]),
    probe=st.sampled_from(sorted(PROBES)),
)
def test_every_spelling_of_a_setting_is_that_setting(
    client: httpx.Client, canary: Canary, name: str, spelling: str, probe: str
) -> None:
    head, *rest = name.split("_")
    spelled = {
        "upper": name.upper(),
        "camel": head + "".join(word.capitalize() for word in rest),
        "dashes": name.replace("_", "-"),
        "as is": name,
    }[spelling]
    before = canary.hits
    answer = PROBES[probe](client, spelled, hostile_value(name, canary))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "setting_not_allowed"
    assert canary.hits == before


def test_the_operators_deployment_still_serves(
    client: httpx.Client, bedrock: BedrockEmulator
) -> None:
    bedrock.reset()
    answer = client.post(
        "/v1/images/generations", json={"model": "titan", "prompt": "an otter", "seed": 7}
    )
    assert answer.status_code == 200, answer.text
    assert len(bedrock.requests) == 1
    # The operator's session token signed it; request parameters still reach the body.
    assert bedrock.requests[0].headers["x-amz-security-token"] == SESSION_TOKEN
    assert bedrock.requests[0].json is not None
    assert bedrock.requests[0].json["imageGenerationConfig"]["seed"] == 7


def test_a_callers_config_cannot_put_provider_options_on_the_operators_key(
    client: httpx.Client, canary: Canary, bedrock: BedrockEmulator
) -> None:
    bedrock.reset()
    for option in ("aws_region", "aws_session_token", "vertex_service_account_json"):
        config = {"virtual_key": "vk-bedrock", option: hostile_value(option, canary)}
        answer = client.post(
            "/v1/images/generations",
            json={"model": TITAN, "prompt": "x"},
            headers={"x-portkey-config": json.dumps(config)},
        )
        assert answer.status_code == 400, answer.text
        assert option in answer.json()["error"]["message"]
    assert bedrock.requests == [] and canary.hits == 0


async def test_sdk_keywords_never_reconfigure_a_configured_gateway(
    bedrock: BedrockEmulator, canary: Canary
) -> None:
    bedrock.reset()
    async with Gateway(load_config(operator_config(bedrock), environ={})) as gateway:
        for name in SETTING_NAMES:
            keywords: dict[str, Any] = {name: hostile_value(name, canary)}
            if name in ("timeout", "api_key", "api_base", "api_version", "custom_llm_provider"):
                continue  # the SDK's own arguments: below
            with pytest.raises(BadRequestError) as caught:
                await prismgate.aimage_generation(
                    prompt="x", model="titan", gateway=gateway, **keywords
                )
            assert caught.value.code == "setting_not_allowed", (name, caught.value.message)
        for name in ("api_key", "api_base", "api_version"):
            with pytest.raises(BadRequestError) as caught:
                await prismgate.aimage_generation(
                    prompt="x", model="titan", gateway=gateway, **{name: canary.url}
                )
            assert caught.value.param == name
    assert bedrock.requests == [] and canary.hits == 0


def test_the_authority_rule_covers_every_declared_setting() -> None:
    rule = CallerAuthority.from_providers()
    for name, setting in provider_settings().items():
        assert rule.is_operators(name)
        assert setting.portkey is None or rule.is_operators(setting.portkey)
    for parameter in ("prompt", "size", "quality", "seed", "negative_prompt", "messages", "n"):
        assert not rule.is_operators(parameter)


# --- caller-chosen endpoints, where the operator lets callers bring provider keys --------


@pytest.fixture(scope="module")
def open_proxy(bedrock: BedrockEmulator) -> Iterator[RunningProxy]:
    running = RunningProxy(operator_config(bedrock, allow_client_provider_keys=True)).start()
    yield running
    running.stop()


@pytest.fixture
def open_client(open_proxy: RunningProxy) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=open_proxy.base_url, headers=headers, timeout=30) as http:
        yield http


@pytest.mark.parametrize(
    "region",
    ["evil.example#", "us-east-1.evil.example", "127.0.0.1:9", "us-east-1/../", "US-EAST-1 ",
     "a" * 300, "us-east-1\r\nHost: x"],
)  # fmt: skip
def test_a_callers_region_is_a_region_and_nothing_else(
    open_client: httpx.Client, canary: Canary, region: str
) -> None:
    config = {
        "provider": "bedrock",
        "api_key": "caller-bedrock-key",
        "aws_region": region,
        "aws_access_key_id": "AKIACALLER",
        "aws_secret_access_key": "caller-secret",
    }
    answer = open_client.post(
        "/v1/images/generations",
        json={"model": TITAN, "prompt": "x"},
        headers={"x-portkey-config": json.dumps(config)},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == "aws_region_name"
    assert canary.hits == 0


def test_a_callers_host_passes_the_address_rules_and_never_gets_the_operators_keys(
    open_client: httpx.Client, canary: Canary
) -> None:
    before = canary.hits
    for headers in (
        {"x-portkey-config": json.dumps(
            {"provider": "openai", "api_key": "sk-caller", "custom_host": canary.url + "/v1"})},
        {"x-portkey-provider": "openai", "x-portkey-custom-host": canary.url + "/v1",
         "x-portkey-api-key": MASTER_KEY, "Authorization": "Bearer sk-caller"},
    ):  # fmt: skip
        answer = open_client.post(
            "/v1/images/generations", json={"model": "dall-e-3", "prompt": "x"}, headers=headers
        )
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "address_not_allowed"
    assert canary.hits == before


async def test_a_callers_google_key_is_exchanged_at_google_only(
    tmp_path: Any, canary: Canary
) -> None:
    present = tmp_path / "exists.json"
    present.write_text("{}")
    hostile = {"type": "service_account", "token_uri": canary.url + "/token",
               "client_email": "a@b.iam.gserviceaccount.com", "private_key": "x"}  # fmt: skip
    cases = {
        "token_uri": json.dumps(hostile),
        "a file that exists": str(present),
        "a file that does not": str(tmp_path / "missing.json"),
        "another kind": json.dumps({"type": "external_account",
                                    "credential_source": {"file": str(present)}}),
    }  # fmt: skip
    messages = {}
    async with Gateway(load_config({}, environ={})) as gateway:
        for case, credentials in cases.items():
            options = CallOptions(
                direct=True,
                overrides=CallerOverrides(custom_llm_provider="vertex_ai"),
                extra={"vertex_credentials": credentials, "vertex_project": "p"},
            )
            with pytest.raises(BadRequestError) as caught:
                await gateway.image_generation(
                    ImageGenerationRequest(prompt="x", model="gemini-2.5-flash-image"), options
                )
            assert caught.value.param == "vertex_credentials", case
            messages[case] = caught.value.message
    assert canary.hits == 0
    # No oracle: a path gets the same answer whether or not the file exists.
    assert messages["a file that exists"] == messages["a file that does not"]


# --- timeouts, links and what errors tell ------------------------------------------------


def test_a_callers_timeout_never_outlasts_the_operators(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    config = {
        "model_list": [{"model_name": "art", "litellm_params": {
            "model": "openai/dall-e-3", "api_key": "sk-op", "timeout": 1,
            "api_base": openai_emulator.base_url + "/v1"}}],
        "general_settings": {"master_key": MASTER_KEY},
    }  # fmt: skip
    proxy = serve(config)
    openai_emulator.fail_next("delay", delay=4)
    started = time.monotonic()
    answer = httpx.post(
        f"{proxy.base_url}/v1/images/generations",
        json={"model": "art", "prompt": "x"},
        headers={"Authorization": f"Bearer {MASTER_KEY}", "x-portkey-request-timeout": "600000"},
        timeout=30,
    )
    assert answer.status_code == 504, answer.text
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    "host", ["a@evil.example/x?", "evil.example", "evil.example:80", "[::1]:1", "x\\y"]
)
def test_image_links_never_follow_the_host_header(
    serve: Callable[..., RunningProxy], host: str
) -> None:
    config = {
        "model_list": [{"model_name": "art", "litellm_params": {"model": "mock/gpt-image-1"}}],
        "general_settings": {"master_key": MASTER_KEY},
    }
    proxy = serve(config)
    answer = httpx.post(
        f"{proxy.base_url}/v1/images/generations",
        json={"model": "art", "prompt": "x", "response_format": "url"},
        headers={"Authorization": f"Bearer {MASTER_KEY}", "Host": host},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"][0]["url"].startswith(proxy.base_url + "/v1/images/files/")


def test_errors_never_list_the_operators_names(client: httpx.Client) -> None:
    for headers in ({"x-portkey-virtual-key": "guess"}, {"x-portkey-config": "pc-guess"}):
        answer = client.post(
            "/v1/images/generations", json={"model": "titan", "prompt": "x"}, headers=headers
        )
        assert answer.status_code == 400
        assert "vk-bedrock" not in answer.text


@pytest.mark.parametrize(
    "header", ["x-portkey-aws-region", "x-portkey-vertex-service-account-json",
               "x-portkey-aws-session-token", "x-portkey-custom-host"],
)  # fmt: skip
def test_provider_option_headers_go_only_with_the_callers_own_key(
    client: httpx.Client, canary: Canary, bedrock: BedrockEmulator, header: str
) -> None:
    bedrock.reset()
    for headers in ({}, {"x-portkey-virtual-key": "vk-bedrock"}):
        answer = client.post(
            "/v1/images/generations",
            json={"model": "titan", "prompt": "x"},
            headers={**headers, header: canary.url},
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["param"] == header
    assert bedrock.requests == [] and canary.hits == 0


def test_direct_mode_honours_the_callers_region_header_and_checks_it(
    open_client: httpx.Client,
) -> None:
    headers = {
        "x-portkey-provider": "bedrock",
        "x-portkey-api-key": MASTER_KEY,
        "Authorization": "Bearer caller-bedrock-key",
        "x-portkey-aws-region": "evil.example#",
    }
    answer = open_client.post(
        "/v1/images/generations", json={"model": TITAN, "prompt": "x"}, headers=headers
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == "aws_region_name"


def test_a_direct_mode_default_on_loopback_passes_the_address_rules(
    open_client: httpx.Client,
) -> None:
    # xinference's default address is 127.0.0.1:9997: the operator did not configure it.
    headers = {
        "x-portkey-provider": "xinference",
        "x-portkey-api-key": MASTER_KEY,
        "Authorization": "Bearer caller-key",
    }
    answer = open_client.post(
        "/v1/images/generations", json={"model": "sd", "prompt": "x"}, headers=headers
    )
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"]["code"] == "address_not_allowed"
