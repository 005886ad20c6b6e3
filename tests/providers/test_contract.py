"""What every registered provider declares, checked for each one the registry knows."""

from __future__ import annotations

import msgspec
import pytest

from prismgate.errors import RateLimitError
from prismgate.observability.redaction import REDACTED, Redactor
from prismgate.providers import canonical_provider, get_provider, provider_names
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
