from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from prismgate.config import load_config
from prismgate.errors import ConfigError
from tests.emulators import OpenAIEmulator
from tests.serving import RunningProxy

LITELLM_CONFIG = """
model_list:
  - model_name: gpt-image-1
    litellm_params:
      model: azure/gpt-image-1
      api_base: https://my-endpoint-europe.openai.azure.com/
      api_key: "os.environ/AZURE_API_KEY_EU"
  - model_name: llava-hf
    litellm_params:
      model: openai/llava-hf/llava-v1.6-vicuna-7b-hf
      api_base: http://localhost:8000
      api_key: fake-key
    model_info:
      supports_vision: true
general_settings:
  master_key: os.environ/PRISMGATE_MASTER_KEY
litellm_settings:
  drop_params: true
router_settings:
  routing_strategy: simple-shuffle
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_litellm_config_loads_with_environment_references(tmp_path: Path) -> None:
    environ = {"AZURE_API_KEY_EU": "azure-secret", "PRISMGATE_MASTER_KEY": "sk-master"}
    config = load_config(write(tmp_path, LITELLM_CONFIG), environ=environ)
    first, second = config.model_list
    assert first.litellm_params.api_key == "azure-secret"
    assert first.litellm_params.model == "azure/gpt-image-1"
    assert second.model_info is not None and second.model_info.supports_vision is True
    assert config.general_settings.master_key == "sk-master"
    assert config.litellm_settings.drop_params is True
    assert config.environ == environ


def test_missing_environment_variable_names_it_and_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, LITELLM_CONFIG), environ={"PRISMGATE_MASTER_KEY": "x"})
    assert str(caught.value) == (
        "model_list[0].litellm_params.api_key: environment variable AZURE_API_KEY_EU is not set"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"model_list": [{"model_name": "a", "litellm_params": {"model": "openai/x"}},
                         {"model_name": "b", "litellm_params": {"model": "openai/y"}},
                         {"model_name": "c", "litellm_params": {"model": "x", "api_base": 5}}]},
         "model_list[2].litellm_params.api_base: Expected `str | null`, got `int`"),
        ({"model_list": [{"model_name": "a"}]},
         "model_list[0]: Object missing required field `litellm_params`"),
        ({"general_settings": {"max_request_size_mb": "big"}},
         "general_settings.max_request_size_mb: Expected `float`, got `str`"),
        ({"model_list": {"a": 1}}, "model_list: Expected `array`, got `object`"),
    ],
)  # fmt: skip
def test_wrong_types_name_the_exact_path(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(raw, environ={})
    assert str(caught.value) == message


def test_unknown_keys_are_errors_naming_each_with_a_suggestion() -> None:
    raw = {
        "surprise": 1,
        "general_settings": {"master_key": "k", "master_kye": "k"},
        "model_list": [
            {"model_name": "a", "litellm_params": {"model": "openai/x"}, "model_info": {"z": 1}}
        ],
    }
    with pytest.raises(ConfigError) as caught:
        load_config(raw, environ={})
    assert str(caught.value).splitlines() == [
        "3 problems:",
        "  surprise: not a setting; the top level takes callback_settings, "
        "environment_variables, general_settings, litellm_settings, model_list, "
        "portkey_configs, router_settings, virtual_keys",
        "  general_settings.master_kye: not a setting; did you mean master_key?",
        "  model_list[0].model_info.z: not a setting of model_list[0].model_info (the "
        "README's Configuration section lists them)",
    ]


def test_litellm_settings_not_acted_on_are_refused_unless_allowed() -> None:
    raw: dict[str, Any] = {
        "model_list": [
            {
                "model_name": "a",
                "litellm_params": {"model": "openai/x", "tags": ["t"], "max_retries": 3},
                "model_info": {"max_tokens": 9},
            }
        ],
        "general_settings": {"alerting": ["slack"]},
        "router_settings": {"enable_pre_call_checks": True},
    }
    with pytest.raises(ConfigError) as caught:
        load_config(raw, environ={})
    assert str(caught.value) == (
        "LiteLLM settings that prismgate does not act on: "
        "model_list[0].litellm_params.tags, "
        "model_list[0].litellm_params.max_retries (prismgate reads router_settings.num_retries), "
        "model_list[0].model_info.max_tokens (prismgate reads model_info.max_output_tokens), "
        "general_settings.alerting, router_settings.enable_pre_call_checks. Remove them, or set "
        "general_settings.allow_unused_litellm_settings: true to start with them ignored"
    )
    raw["general_settings"]["allow_unused_litellm_settings"] = True
    config = load_config(raw, environ={})
    assert config.unused_settings == (
        "model_list[0].litellm_params.tags",
        "model_list[0].litellm_params.max_retries",
        "model_list[0].model_info.max_tokens",
        "general_settings.alerting",
        "router_settings.enable_pre_call_checks",
    )
    params = config.model_list[0].litellm_params
    # Ignored means ignored: never sent to the provider as a request parameter.
    assert params.provider_params == {}


def test_litellm_only_names_are_never_settings_prismgate_acts_on() -> None:
    from prismgate.config import (
        Config,
        GeneralSettings,
        LiteLLMParams,
        LiteLLMSettings,
        RouterSettings,
    )
    from prismgate.config_keys import LITELLM_ONLY, litellm_only, litellm_transport
    from prismgate.providers import provider_settings

    acted_on = {
        "": Config,
        "general_settings": GeneralSettings,
        "router_settings": RouterSettings,
        "litellm_settings": LiteLLMSettings,
        "litellm_params": LiteLLMParams,
    }
    for section, struct in acted_on.items():
        assert not litellm_only(section) & set(struct.__struct_fields__), section
    assert not litellm_only("litellm_params") & set(provider_settings())
    # LiteLLM's transport settings, the providers' unsupported ones among them, are
    # LiteLLM settings of litellm_params like the others.
    assert litellm_transport() <= litellm_only("litellm_params")
    assert {"aws_role_name", "azure_ad_token", "tenant_id"} <= litellm_transport()
    assert not LITELLM_ONLY["litellm_params"] & {"aws_role_name", "azure_ad_token"}


def test_empty_sections_are_defaults(tmp_path: Path) -> None:
    text = "model_list:\n  - model_name: a\n    litellm_params: {model: mock/a}\n"
    config = load_config(write(tmp_path, text + "general_settings:\nrouter_settings:\n"))
    assert config.general_settings.master_key is None
    assert config.router_settings.routing_strategy == "simple-shuffle"


def test_unknown_litellm_params_become_provider_parameters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    raw = {"model_list": [{"model_name": "a", "litellm_params": {"model": "openai/x", "seed": 7}}]}
    with caplog.at_level(logging.WARNING, logger="prismgate.config"):
        config = load_config(raw, environ={})
    assert config.model_list[0].litellm_params.provider_params == {"seed": 7}
    assert any("litellm_params.seed" in r.getMessage() for r in caplog.records)


def test_environment_variables_section_feeds_the_snapshot_not_os_environ() -> None:
    import os

    raw = {
        "environment_variables": {"MY_KEY": "from-file"},
        "model_list": [
            {
                "model_name": "a",
                "litellm_params": {"model": "openai/x", "api_key": "os.environ/MY_KEY"},
            }
        ],
    }
    config = load_config(raw, environ={})
    assert config.model_list[0].litellm_params.api_key == "from-file"
    assert "MY_KEY" not in os.environ


def test_repr_hides_secrets() -> None:
    config = load_config(
        {"general_settings": {"master_key": "sk-very-secret"}}, environ={"OPENAI_API_KEY": "sk-x"}
    )
    assert "sk-very-secret" not in repr(config)
    assert "sk-x" not in repr(config)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not valid YAML at line 3, column 1"):
        load_config(write(tmp_path, "model_list:\n  - [unclosed\n"), environ={})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_defaults() -> None:
    config = load_config(environ={})
    assert config.model_list == []
    assert config.general_settings.default_image_model == "gpt-image-2"
    assert config.general_settings.max_request_size_mb == 32
    assert config.general_settings.allow_client_provider_keys is False
    assert config.litellm_settings.drop_params is False


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"general_settings": {"image_store": {"type": "s3"}}},
            "general_settings.image_store: type: s3 needs a bucket",
        ),
        (
            {"litellm_settings": {"cache": True, "cache_params": {"type": "redis-semantic"}}},
            "litellm_settings.cache_params.type: 'redis-semantic' is not supported",
        ),
    ],
)
def test_a_backend_without_code_fails_at_load(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(raw, environ={})


ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_the_examples_load(path: Path) -> None:
    names = re.findall(r"os\.environ/([A-Z0-9_]+)", path.read_text())
    config = load_config(path, environ={name: "x" * 40 for name in names})
    assert config.model_list and config.unused_settings == ()


def test_every_config_in_the_readme_loads() -> None:
    import yaml

    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 5
    for block in blocks:
        names = re.findall(r"os\.environ/([A-Z0-9_]+)", block)
        config = load_config(yaml.safe_load(block), environ={name: "x" * 40 for name in names})
        assert config.unused_settings == (), block


def test_top_level_x_keys_hold_yaml_anchors(tmp_path: Path) -> None:
    text = (
        "x-defaults: &defaults {api_key: sk-1, timeout: 30}\n"
        "model_list:\n"
        "  - model_name: a\n"
        "    litellm_params: {<<: *defaults, model: mock/a, timeout: 60}\n"
    )
    params = load_config(write(tmp_path, text), environ={}).model_list[0].litellm_params
    assert (params.api_key, params.timeout) == ("sk-1", 60)


IMAGES = {"model_name": "images", "litellm_params": {"model": "mock/dall-e-3"}}


@pytest.mark.parametrize(
    ("alias", "message"),
    [
        ("imagez", "'imagez' is not a model_name in model_list; did you mean 'images'?"),
        ({"model": "nope", "hidden": True}, "'nope' is not a model_name in model_list"),
    ],
)
def test_an_alias_must_name_a_model_group(alias: Any, message: str) -> None:
    raw = {"model_list": [IMAGES], "router_settings": {"model_group_alias": {"b": alias}}}
    with pytest.raises(ConfigError) as caught:
        load_config(raw, environ={})
    assert str(caught.value) == f"router_settings.model_group_alias.b: {message}"


def test_a_config_built_in_code_meets_the_same_routing_checks() -> None:
    """The router and the model names check a Config that load_config never saw with the
    same functions, so with the same messages."""
    from prismgate.catalog import builtin_catalog
    from prismgate.config import Config, LiteLLMParams, ModelEntry, RouterSettings
    from prismgate.routing import DeploymentResolver
    from prismgate.routing.router import Router, router_policy
    from prismgate.storage import MemoryRoutingState

    entries = [ModelEntry(model_name="images", litellm_params=LiteLLMParams(model="mock/x"))]
    hint = "is not a model_name in model_list; did you mean 'images'?"
    fallbacks = Config(
        model_list=entries, router_settings=RouterSettings(fallbacks=[{"images": ["imgs"]}])
    )
    resolver = DeploymentResolver(fallbacks, builtin_catalog())
    with pytest.raises(ConfigError, match=re.escape(f"router_settings.fallbacks: 'imgs' {hint}")):
        Router(resolver.candidates, router_policy(fallbacks), MemoryRoutingState())
    alias = Config(
        model_list=entries, router_settings=RouterSettings(model_group_alias={"b": "imagez"})
    )
    with pytest.raises(ConfigError, match=re.escape(f"model_group_alias.b: 'imagez' {hint}")):
        DeploymentResolver(alias, builtin_catalog())


def test_environment_variables_errors_never_show_the_values() -> None:
    for value, shown in (({"secret": "sk-live-abc"}, "object"), (["sk-live-abc"], "array")):
        with pytest.raises(ConfigError) as caught:
            load_config({"environment_variables": {"A": value}}, environ={})
        assert str(caught.value) == f"environment_variables.A: Expected a string, got {shown}"
    with pytest.raises(ConfigError) as caught:
        load_config({"environment_variables": ["A=sk-live-abc"]}, environ={})
    assert "sk-live-abc" not in str(caught.value)


def test_a_mangled_api_base_is_refused_without_its_text() -> None:
    entry = {"model_name": "a", "litellm_params": {"model": "openai/x", "api_key": "k"}}
    entry["litellm_params"]["api_base"] = "https://key:sk-live-abc/x@host/v1"
    with pytest.raises(ConfigError) as caught:
        load_config({"model_list": [entry]}, environ={})
    assert str(caught.value) == (
        "model_list[0].litellm_params: api_base is not a valid URL (what follows the host's "
        "':' is not a port from 0 to 65535)"
    )


def priced(**prices: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"model_name": "a", "litellm_params": {"model": "openai/gpt-4o"}}
    entry["litellm_params"].update(prices)
    if "model_info" in prices:
        entry["model_info"] = entry["litellm_params"].pop("model_info")
    return {"model_list": [entry]}


def test_litellm_prices_in_litellm_params_become_the_deployments_model_info() -> None:
    raw = priced(input_cost_per_token=1e-6, output_cost_per_token=3e-6, output_cost_per_image=0.5)
    info = load_config(raw, environ={}).model_list[0].model_info
    assert info is not None
    assert (info.input_cost_per_token, info.output_cost_per_token) == (1e-6, 3e-6)
    assert info.image is not None and info.image.pricing is not None
    assert info.image.pricing.per_image == {"*": {"*": 0.5}}
    # Beside model_info's own fields, which stay; the same price in both places is fine.
    both = priced(
        input_cost_per_token=1e-6,
        model_info={"input_cost_per_token": 1e-6, "supports_vision": True},
    )
    info = load_config(both, environ={}).model_list[0].model_info
    assert info is not None and (info.input_cost_per_token, info.supports_vision) == (1e-6, True)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            priced(input_cost_per_token=1e-6, model_info={"input_cost_per_token": 2e-6}),
            "model_list[0].litellm_params.input_cost_per_token: model_list[0].model_info"
            ".input_cost_per_token gives another price; give it in one place",
        ),
        (
            priced(
                output_cost_per_image=0.5,
                model_info={"image": {"pricing": {"per_image": {"hd": {"*": 1.0}}}}},
            ),
            "model_list[0].litellm_params.output_cost_per_image: model_list[0].model_info"
            ".image.pricing.per_image gives another price; give it in one place",
        ),
        (
            priced(output_cost_per_token=-1),
            "model_list[0].litellm_params.output_cost_per_token: Expected `float` >= 0.0",
        ),
    ],
)
def test_litellm_prices_are_checked(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(raw, environ={})
    assert message in str(caught.value)


async def test_a_chat_call_costs_the_deployments_litellm_prices(
    openai_emulator: OpenAIEmulator,
) -> None:
    from prismgate import acompletion, aimage_generation
    from prismgate.gateway import Gateway

    where = {"api_base": openai_emulator.base_url + "/v1", "api_key": openai_emulator.api_key}
    config = load_config(
        {
            "model_list": [
                {"model_name": "vision", "litellm_params": {
                    "model": "openai/gpt-4o", **where,
                    "input_cost_per_token": 0.001, "output_cost_per_token": 0.002,
                }},
                {"model_name": "art", "litellm_params": {
                    "model": "openai/dall-e-3", **where, "output_cost_per_image": 0.5,
                }},
            ]
        },
        environ={},
    )  # fmt: skip
    async with Gateway(config) as gateway:
        answer: Any = await acompletion(
            "vision", [{"role": "user", "content": "hello there"}], gateway=gateway
        )
        image = await aimage_generation("an otter", model="art", n=2, gateway=gateway)
    usage = answer.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    expected = usage.prompt_tokens * 0.001 + usage.completion_tokens * 0.002
    assert answer._hidden_params.response_cost == pytest.approx(expected)
    assert image._hidden_params is not None
    assert image._hidden_params.response_cost == pytest.approx(2 * 0.5)  # not dall-e-3's $0.04


def test_stream_timeout_is_accepted_and_said_to_be_not_acted_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    raw = {"model_list": [{"model_name": "a", "litellm_params": {
        "model": "openai/x", "timeout": 120, "stream_timeout": 30,
    }}]}  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="prismgate.config"):
        config = load_config(raw, environ={})
    params = config.model_list[0].litellm_params
    assert (params.timeout, params.stream_timeout, params.provider_params) == (120, 30, {})
    assert config.unused_settings == ()
    assert [r.getMessage() for r in caplog.records] == [
        "config: model_list[0].litellm_params.stream_timeout is not acted on: prismgate "
        "bounds a streamed call by timeout, as any other"
    ]
    raw["model_list"][0]["litellm_params"]["stream_timeout"] = "soon"
    with pytest.raises(ConfigError, match=r"litellm_params\.stream_timeout: Expected `float"):
        load_config(raw, environ={})


# Deployment settings a hostile caller might send: LiteLLM's transport settings that
# prismgate does not act on among them.
OPERATOR_ONLY = {
    "stream_timeout": 86_400, "timeout": 86_400, "connect_timeout": 86_400, "max_retries": 50,
    "num_retries": 50, "api_base": "http://169.254.169.254/latest", "api_key": "sk-caller",
    "extra_headers": {"x-admin": "1"}, "input_cost_per_token": 0, "output_cost_per_image": 0,
}  # fmt: skip


@pytest.mark.parametrize("name", OPERATOR_ONLY)
def test_a_caller_never_sends_a_deployment_setting_upstream(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator, name: str
) -> None:
    where = {"api_base": openai_emulator.base_url + "/v1", "api_key": openai_emulator.api_key}
    proxy = serve({"model_list": [
        {"model_name": "art", "litellm_params": {"model": "openai/dall-e-3", **where}},
        {"model_name": "vision", "litellm_params": {"model": "openai/gpt-4o", **where}},
    ]})  # fmt: skip
    value = OPERATOR_ONLY[name]
    override = {"x-portkey-config": json.dumps({"override_params": {name: value}})}
    image = {"model": "art", "prompt": "x"}
    chat = {"model": "vision", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=proxy.base_url, timeout=30) as client:
        answers = [
            client.post("/v1/images/generations", json={**image, name: value}),
            client.post("/v1/images/generations", json={**image, "extra_body": {name: value}}),
            client.post("/v1/chat/completions", json={**chat, name: value}),
            client.post("/v1/chat/completions", json={**chat, "stream": True, name: value}),
            client.post("/v1/images/generations", json=image, headers=override),
        ]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "setting_not_allowed"
    assert openai_emulator.requests == []
