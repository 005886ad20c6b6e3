from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

from prismgate.config import load_config
from prismgate.errors import ConfigError

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


def test_unknown_keys_warn_and_do_not_crash(caplog: pytest.LogCaptureFixture) -> None:
    raw = {
        "surprise": 1,
        "general_settings": {"master_key": "k", "alerting": ["slack"]},
        "model_list": [
            {"model_name": "a", "litellm_params": {"model": "openai/x"}, "model_info": {"z": 1}}
        ],
    }
    with caplog.at_level(logging.WARNING, logger="prismgate.config"):
        config = load_config(raw, environ={})
    assert config.general_settings.master_key == "k"
    messages = [r.getMessage() for r in caplog.records]
    assert "config: unknown key surprise is ignored" in messages
    assert "config: unknown key general_settings.alerting is ignored" in messages
    assert "config: unknown key model_list[0].model_info.z is ignored" in messages


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
    assert config.general_settings.default_image_model == "gpt-image-1"
    assert config.general_settings.max_request_size_mb == 32
    assert config.general_settings.allow_client_provider_keys is False
    assert config.litellm_settings.drop_params is False


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"general_settings": {"image_store": {"type": "s3"}}},
            "general_settings.image_store.type: 's3' is not available in this version",
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
