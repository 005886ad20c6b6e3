"""Models their provider has shut down (routing/shutdowns.py): a 400 before any upstream
call at the provider's own endpoint, the name sent as it is anywhere else."""

from __future__ import annotations

import datetime

import pytest

import prismgate
from prismgate.catalog import ModelInfo
from prismgate.errors import BadRequestError
from prismgate.providers.base import CredentialSpec, Deployment
from prismgate.routing.shutdowns import at_provider_endpoint, refuse_shut_down, shut_down_error
from tests.emulators import OpenAIEmulator

OPENAI = CredentialSpec(
    api_key_env=("OPENAI_API_KEY",),
    api_base_env=("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    default_api_base="https://api.openai.com/v1",
)
RETIRED = ModelInfo(provider="openai", shutdown_date="2026-05-12", replacement="gpt-image-2")
DAY = datetime.date(2026, 12, 3)


def deployment(api_base: str | None = None, info: ModelInfo | None = RETIRED) -> Deployment:
    return Deployment(provider="openai", model="dall-e-3", api_base=api_base, info=info)


def test_the_message_names_the_date_the_replacement_and_the_alias_setting() -> None:
    with pytest.raises(BadRequestError) as caught:
        refuse_shut_down(deployment(), OPENAI, {}, today=DAY)
    error = caught.value
    assert error.status_code == 400 and error.param == "model"
    assert error.code == "model_not_found"
    assert error.provider is None  # the gateway's refusal: no deployment cools down
    assert error.message == (
        "openai/dall-e-3 was shut down by its provider on 2026-05-12; its provider suggests "
        "gpt-image-2 instead. Call another model, or map this name to another model group "
        "with router_settings.model_group_alias."
    )


def test_a_model_still_answers_until_its_shutdown_date() -> None:
    assert shut_down_error("openai/gpt-5", "2026-12-11", "gpt-6.1-sol", today=DAY) is None
    on_the_day = shut_down_error(
        "openai/gpt-5", "2026-12-11", None, today=datetime.date(2026, 12, 11)
    )
    assert on_the_day is not None and "suggests" not in on_the_day.message


@pytest.mark.parametrize(
    ("api_base", "environ", "own"),
    [
        (None, {}, True),
        ("https://api.openai.com/v1/", {}, True),  # the default, written out
        ("http://127.0.0.1:9/v1", {}, False),  # a compatible server, a proxy, an emulator
        (None, {"OPENAI_API_BASE": "http://127.0.0.1:9/v1"}, False),
        (None, {"OPENAI_BASE_URL": "https://api.openai.com/v1"}, True),
    ],
)
def test_only_the_providers_own_endpoint_refuses(
    api_base: str | None, environ: dict[str, str], own: bool
) -> None:
    assert at_provider_endpoint(deployment(api_base), OPENAI, environ) is own
    if own:
        with pytest.raises(BadRequestError):
            refuse_shut_down(deployment(api_base), OPENAI, environ, today=DAY)
    else:
        refuse_shut_down(deployment(api_base), OPENAI, environ, today=DAY)


def test_models_without_a_shutdown_pass() -> None:
    refuse_shut_down(deployment(info=None), OPENAI, {}, today=DAY)
    refuse_shut_down(deployment(info=ModelInfo(provider="openai")), OPENAI, {}, today=DAY)


def test_the_sdk_refuses_before_any_upstream_call(openai_emulator: OpenAIEmulator) -> None:
    # No api_base: api.openai.com, which this machine cannot reach; the 400 comes first.
    with pytest.raises(prismgate.BadRequestError) as caught:
        prismgate.image_generation(prompt="an otter", model="openai/dall-e-3", api_key="sk-x")
    assert caught.value.code == "model_not_found"
    assert "shut down by its provider on 2026-05-12" in caught.value.message
    assert "gpt-image-2.5-sunburst" in caught.value.message
    # Pointed at a server of its own, the name is sent as it is.
    answer = prismgate.image_generation(
        prompt="an otter",
        model="openai/dall-e-3",
        api_key=openai_emulator.api_key,
        api_base=openai_emulator.base_url + "/v1",
    )
    assert len(answer.data) == 1
    assert openai_emulator.requests[-1].json["model"] == "dall-e-3"


def test_get_model_info_shows_the_shutdown_and_its_source() -> None:
    info = prismgate.get_model_info("dall-e-3")
    assert (info.shutdown_date, info.replacement) == ("2026-05-12", "gpt-image-2.5-sunburst")
    assert info.sources and info.checked
    assert info.to_dict()["shutdown_date"] == "2026-05-12"
    # A mock model takes dall-e-3's rules, not OpenAI's shutdown: it keeps answering.
    mock = prismgate.get_model_info("mock/dall-e-3")
    assert mock.image is not None and mock.image.max_n == 1
    assert mock.shutdown_date is None and mock.replacement is None
    answer = prismgate.image_generation(prompt="an otter", model="mock/dall-e-3")
    assert len(answer.data) == 1


def test_chat_models_are_refused_the_same_way() -> None:
    # gpt-5 shuts down on 2026-12-11; a model_info override stands in for a date passed.
    retired = {"shutdown_date": "2026-01-01", "replacement": "gpt-6.1-sol"}
    with pytest.raises(prismgate.BadRequestError) as caught:
        prismgate.completion(
            model="openai/gpt-5",
            messages=[{"role": "user", "content": "hello"}],
            api_key="sk-x",
            model_info=retired,
        )
    assert caught.value.code == "model_not_found"
    assert "on 2026-01-01; its provider suggests gpt-6.1-sol" in caught.value.message
    assert prismgate.get_model_info("openai/gpt-5").shutdown_date == "2026-12-11"
