from __future__ import annotations

import msgspec
import pytest

from prismgate import errors
from prismgate.errors import from_upstream


@pytest.mark.parametrize(
    ("status", "code", "expected", "http_status", "error_type"),
    [
        (400, None, errors.BadRequestError, 400, "invalid_request_error"),
        (400, "content_policy_violation", errors.ContentPolicyViolationError, 400,
         "invalid_request_error"),
        (400, "moderation_blocked", errors.ContentPolicyViolationError, 400,
         "invalid_request_error"),
        (401, None, errors.AuthenticationError, 401, "authentication_error"),
        (403, None, errors.PermissionDeniedError, 403, "permission_error"),
        (404, None, errors.NotFoundError, 404, "invalid_request_error"),
        (408, None, errors.Timeout, 504, "timeout"),
        (413, None, errors.RequestTooLargeError, 413, "invalid_request_error"),
        (422, None, errors.BadRequestError, 400, "invalid_request_error"),
        (429, None, errors.RateLimitError, 429, "rate_limit_error"),
        (500, None, errors.APIError, 500, "api_error"),
        (502, None, errors.APIError, 502, "api_error"),
        (503, None, errors.ServiceUnavailableError, 503, "service_unavailable"),
        (504, None, errors.Timeout, 504, "timeout"),
        (529, None, errors.ServiceUnavailableError, 503, "service_unavailable"),
        (599, None, errors.APIError, 599, "api_error"),
        (418, None, errors.BadRequestError, 400, "invalid_request_error"),
    ],
)  # fmt: skip
def test_upstream_status_maps_to_the_tree(
    status: int, code: str | None, expected: type, http_status: int, error_type: str
) -> None:
    error = from_upstream(status, "upstream says no", provider="openai", code=code, param="size")
    assert type(error) is expected
    assert error.status_code == http_status
    assert error.upstream_status == status
    assert error.upstream_message == "upstream says no"
    assert error.provider == "openai"
    assert error.message == f"openai returned {status}: upstream says no"
    body = msgspec.to_builtins(error.wire_body())
    assert body == {
        "error": {
            "message": f"openai returned {status}: upstream says no",
            "type": error_type,
            "param": "size",
            "code": code if code is not None else expected.default_code,
        }
    }


def test_error_body_always_has_the_four_keys() -> None:
    encoded = msgspec.json.decode(msgspec.json.encode(errors.BadRequestError("bad").wire_body()))
    assert set(encoded["error"]) == {"message", "type", "param", "code"}


def test_timeout_is_also_a_builtin_timeout() -> None:
    assert isinstance(errors.Timeout("slow"), TimeoutError)


def test_rate_limit_keeps_retry_after() -> None:
    error = from_upstream(429, "slow down", provider="openai", retry_after=7)
    assert isinstance(error, errors.RateLimitError)
    assert error.retry_after == 7


def test_the_tree_is_drawn_in_the_module_docstring() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, errors.PrismgateError):
            assert name in doc, name
