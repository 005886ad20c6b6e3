"""What every registered provider declares, checked for each one the registry knows."""

from __future__ import annotations

import msgspec
import pytest

from prismgate.errors import BadRequestError, RateLimitError
from prismgate.observability.redaction import REDACTED, Redactor
from prismgate.providers import canonical_provider, get_provider, provider_names
from prismgate.providers.base import ProviderSettings, declared_settings
from prismgate.providers.bedrock.auth import BedrockSettings
from prismgate.transport import UpstreamResponse

SECRET = "operator-secret-7c1f"
# One body that every provider's error shape can read its message from: OpenAI's and
# Google's `error.message`, Anthropic's `error.message`, Bedrock's and Stability's
# top-level `message`.
ERROR_BODY = msgspec.json.encode(
    {
        "type": "error",
        "message": f"slow down, {SECRET}",
        "error": {"message": f"slow down, {SECRET}", "type": "rate_limit_error", "code": 429},
    }
)


@pytest.mark.parametrize("name", provider_names())
def test_every_provider_translates_its_errors_with_one_signature(name: str) -> None:
    provider = get_provider(name)
    answer = UpstreamResponse(429, {"retry-after": "7"}, ERROR_BODY)
    error = provider.translate_error(answer, Redactor([SECRET]))
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 7
    assert SECRET not in (error.message + (error.upstream_message or ""))
    assert REDACTED in (error.upstream_message or "")


@pytest.mark.parametrize("name", provider_names())
def test_every_alias_names_its_own_provider(name: str) -> None:
    assert canonical_provider(name) == name
    for alias in get_provider(name).aliases:
        assert canonical_provider(alias) == name
        assert alias not in provider_names()


@pytest.mark.parametrize("name", provider_names())
def test_every_provider_declares_its_settings_as_one_typed_struct(name: str) -> None:
    provider = get_provider(name)
    fields = provider.settings_type.__struct_fields__
    assert tuple(setting.name for setting in provider.settings) == fields
    assert provider.setting_names == frozenset(fields)
    assert provider.typed_settings({}) == provider.settings_type()
    for field in fields:
        with pytest.raises(BadRequestError) as refused:
            provider.typed_settings({field: [1, 2]})  # no setting is a list
        assert refused.value.param == field
        assert refused.value.message.startswith(f"{name} setting {field}: Expected")


def test_a_settings_field_without_its_declaration_is_refused() -> None:
    class Undeclared(ProviderSettings, frozen=True, kw_only=True):
        region: str | None = None

    with pytest.raises(TypeError, match=r"Undeclared\.region must be annotated with one Setting"):
        declared_settings(Undeclared)


def test_settings_are_typed_for_the_provider() -> None:
    settings = get_provider("bedrock").typed_settings({"aws_region_name": "eu-west-1"})
    assert settings == BedrockSettings(aws_region_name="eu-west-1")
    shown = [s.name for s in get_provider("vertex_ai").settings if s.shown]
    assert shown == ["vertex_project", "vertex_ai_project", "vertex_location", "vertex_ai_location"]
    secret = {s.name: s.portkey for s in get_provider("bedrock").settings if s.secret}
    assert secret == {
        "aws_secret_access_key": "aws_secret_access_key",
        "aws_session_token": "aws_session_token",
    }
