"""The exception tree. Every failure a caller can see is one of these.

    PrismgateError                      500 api_error
    ├── AuthenticationError             401 authentication_error
    ├── PermissionDeniedError           403 permission_error
    ├── NotFoundError                   404 invalid_request_error   (code: model_not_found, ...)
    ├── ConflictError                   409 invalid_request_error   (code: already_exists)
    ├── BadRequestError                 400 invalid_request_error
    │   ├── UnsupportedParamsError      400 invalid_request_error   (code: unsupported_parameter)
    │   └── ContentPolicyViolationError 400 invalid_request_error   (code: content_policy_violation)
    ├── RequestTooLargeError            413 invalid_request_error   (code: request_too_large)
    ├── RequestTimeoutError             408 invalid_request_error   (code: request_timeout)
    ├── RateLimitError                  429 rate_limit_error        (retry_after, when known)
    │   └── LimitReachedError           429 requests, tokens, images or parallel_requests
    │                                       (a caller's own limit; code: rate_limit_exceeded)
    ├── BudgetExceededError             429 budget_exceeded         (LiteLLM's type and status)
    ├── Timeout                         504 timeout                 (also a builtin TimeoutError)
    ├── ServiceUnavailableError         503 service_unavailable
    ├── ImageStoreError                 503 service_unavailable     (code: image_store_unavailable)
    │   └── InsufficientStorageError    507 api_error               (code: image_store_full)
    ├── APIError                        5xx api_error               (the upstream status kept)
    │   └── UnreadableAnswerError       502 api_error       (code: upstream_answer_unreadable)
    │       └── AnswerTooLargeError     502 api_error       (code: upstream_answer_too_large)
    └── APIConnectionError              502 api_connection_error

Each error carries its HTTP `status`, the OpenAI `type`, `code` and `param`, the
`provider` that produced it, and the `upstream_status` and `upstream_message` as the
provider sent them (secrets redacted), and `retry_after` when the provider gave one.
`request_sent` says the request reached the provider before the failure (it may have been
served), and `attempts` what the router tried (`<target>=<status>` each). A limited
caller's errors carry its `rate_limits` (the `x-ratelimit-*` headers).
`wire_body()` gives the OpenAI wire body.

Read as the openai client's `APIStatusError` is read: `status_code`, `message`, `code`,
`param`, `type`, `body` (the inside of the wire body, `{"message", "type", "param",
"code"}`, as a dict), and `response` / `request` (an `httpx.Response` carrying that body,
the status and headers, built each time it is read; None without httpx).

Upstream failures are translated once, at the provider boundary, by `from_upstream`,
which keeps at most `MAX_UPSTREAM_MESSAGE_CHARS` of the provider's message.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from prismgate.rate_limit_headers import rate_limit_headers
from prismgate.types.errors import ErrorBody, ErrorDetail
from prismgate.types.meta import RateLimitStatus

if TYPE_CHECKING:
    import httpx

__all__ = [
    "MAX_UPSTREAM_MESSAGE_CHARS",
    "APIConnectionError",
    "APIError",
    "AnswerTooLargeError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ConfigError",
    "ConflictError",
    "ContentPolicyViolationError",
    "ImageStoreError",
    "InsufficientStorageError",
    "LimitReachedError",
    "NotFoundError",
    "PermissionDeniedError",
    "PrismgateError",
    "RateLimitError",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "ServiceUnavailableError",
    "Timeout",
    "UnreadableAnswerError",
    "UnsupportedParamsError",
    "from_upstream",
    "unreadable_answer",
]


# Where `error.request` says an SDK error came from: there was no HTTP request to prismgate.
SDK_REQUEST_URL = "prismgate://sdk"


class PrismgateError(Exception):
    """Base of every error prismgate raises to a caller."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    default_code: ClassVar[str | None] = None
    # False: a client retrying at once gets the same answer (OpenAI's clients read
    # `x-should-retry`). A class default that one error may change.
    retryable: bool = True

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        provider: str | None = None,
        upstream_status: int | None = None,
        upstream_message: str | None = None,
        retry_after: float | None = None,
        request_sent: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.provider = provider
        self.upstream_status = upstream_status
        self.upstream_message = upstream_message
        self.retry_after = retry_after  # seconds, from the provider's Retry-After
        # The request reached the provider before this failure: it may have been served.
        self.request_sent = request_sent
        # What the router tried before giving up (`x-prismgate-attempts`).
        self.attempts: tuple[str, ...] = ()
        # The last attempt failed after every retry it was allowed (Portkey's retry count -1).
        self.retries_exhausted = False
        # Where a limited caller's rate limits stand (`x-ratelimit-*` on the answer).
        self.rate_limits: tuple[RateLimitStatus, ...] = ()

    @property
    def status_code(self) -> int:
        """The HTTP status to answer with (an upstream 5xx keeps its own)."""
        return self.status

    def error_detail(self) -> ErrorDetail:
        """The inside of this error's OpenAI body: `{"message", "type", "param", "code"}`."""
        return ErrorDetail(message=self.message, type=self.type, param=self.param, code=self.code)

    def wire_body(self) -> ErrorBody:
        """The OpenAI error body the proxy answers with: `{"error": {...}}`."""
        return ErrorBody(error=self.error_detail())

    @property
    def body(self) -> dict[str, Any]:
        """The inside of the OpenAI error body as a dict (`message`, `type`, `param`,
        `code`), as the openai client's errors have it: `error.body["code"]`."""
        detail = self.error_detail()
        return {
            "message": detail.message,
            "type": detail.type,
            "param": detail.param,
            "code": detail.code,
        }

    def response_headers(self) -> dict[str, str]:
        """The headers the proxy answers this error with: `retry-after` (rounded up: a
        client that waits this long finds the wait over), `x-should-retry: false` when
        retrying at once cannot help, what the router tried (and Portkey's retry count),
        and the caller's `x-ratelimit-*`."""
        headers = {"content-type": "application/json"}
        if self.retry_after is not None:
            headers["retry-after"] = str(max(1, math.ceil(self.retry_after)))
        if not self.retryable:
            headers["x-should-retry"] = "false"
        if self.attempts:
            headers["x-prismgate-attempts"] = ", ".join(self.attempts)
            # Portkey's value: -1 when every retry was used and the call still failed.
            count = -1 if self.retries_exhausted else len(self.attempts) - 1
            headers["x-portkey-retry-attempt-count"] = str(count)
        if self.rate_limits:
            headers.update(rate_limit_headers(self.rate_limits))
        return headers

    @property
    def request(self) -> httpx.Request | None:
        """An `httpx.Request` standing for the call, as openai's errors carry one: an SDK
        call made no HTTP request to prismgate, so its URL is `prismgate://sdk`. None
        when httpx is not installed."""
        try:
            import httpx
        except ImportError:  # pragma: no cover - httpx comes with the openai client
            return None
        return httpx.Request("POST", SDK_REQUEST_URL)

    @property
    def response(self) -> httpx.Response | None:
        """This error as the HTTP answer the proxy gives for it: an `httpx.Response` with
        its status, headers and OpenAI body (`error.response.json()`), as openai's
        `APIStatusError.response`. Built when read; None when httpx is not installed."""
        request = self.request
        if request is None:  # pragma: no cover - see `request`
            return None
        import httpx

        return httpx.Response(
            self.status_code,
            headers=self.response_headers(),
            content=msgspec.json.encode(self.wire_body()),
            request=request,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status_code})"


class AuthenticationError(PrismgateError):
    """The credentials were missing or wrong (401)."""

    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(PrismgateError):
    """The credentials are valid but may not do this (403)."""

    status = 403
    type = "permission_error"


class NotFoundError(PrismgateError):
    """The model, deployment or resource does not exist (404)."""

    status = 404
    type = "invalid_request_error"


class ConflictError(PrismgateError):
    """The thing to create exists already: a key alias, a team id (409)."""

    status = 409
    type = "invalid_request_error"
    default_code = "already_exists"


class BadRequestError(PrismgateError):
    """The request is malformed or asks for something the model cannot do (400)."""

    status = 400
    type = "invalid_request_error"


class UnsupportedParamsError(BadRequestError):
    """A parameter the model has no meaning for; `drop_params=True` drops it instead."""

    default_code = "unsupported_parameter"


class ContentPolicyViolationError(BadRequestError):
    """The provider's safety system refused the prompt or every image."""

    default_code = "content_policy_violation"


class RequestTooLargeError(PrismgateError):
    """The request body is larger than allowed (413)."""

    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"


class RequestTimeoutError(PrismgateError):
    """The client did not send its request in time (408): the server closes the connection."""

    status = 408
    type = "invalid_request_error"
    default_code = "request_timeout"


class RateLimitError(PrismgateError):
    """The provider (or the gateway) is rate limiting this caller (429)."""

    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class LimitReachedError(RateLimitError):
    """A key's, team's or user's own limit refused the call before any upstream call
    (429). As in OpenAI's rate-limit errors, its `type` names the limit (`requests`,
    `tokens`, `images`, or `parallel_requests`) and its code is `rate_limit_exceeded`."""

    def __init__(self, message: str, *, limit_type: str = "requests", **details: Any) -> None:
        super().__init__(message, **details)
        self.limit_type = limit_type

    def error_detail(self) -> ErrorDetail:
        """The inside of the OpenAI-style error body, its `type` naming the limit."""
        return ErrorDetail(message=self.message, type=self.limit_type, param=None, code=self.code)


class BudgetExceededError(PrismgateError):
    """A key's, team's or user's budget does not cover the call (429, LiteLLM's status);
    refused before any upstream call. Retry-After says when the budget resets, if it does;
    clients are told not to retry sooner (`x-should-retry: false`)."""

    status = 429
    type = "budget_exceeded"
    default_code = "budget_exceeded"
    retryable = False


class Timeout(PrismgateError, TimeoutError):
    """The provider did not answer in time (504); the upstream call was cancelled."""

    status = 504
    type = "timeout"
    default_code = "timeout"


class ServiceUnavailableError(PrismgateError):
    """The provider is overloaded or down (503)."""

    status = 503
    type = "service_unavailable"
    default_code = "service_unavailable"


class ImageStoreError(PrismgateError):
    """The gateway's own image store cannot keep the answer for a link (503: it cannot
    be reached, or refused). The gateway's fault, not the provider's: never retried, and
    no deployment cools down; the caller may ask for `b64_json`."""

    status = 503
    type = "service_unavailable"
    default_code = "image_store_unavailable"


class InsufficientStorageError(ImageStoreError):
    """The gateway's own image store is full (507): the answer cannot be kept for a link."""

    status = 507
    type = "api_error"
    default_code = "image_store_full"


class APIError(PrismgateError):
    """The provider failed with a 5xx; the upstream status is kept as ours."""

    status = 500

    @property
    def status_code(self) -> int:
        up = self.upstream_status
        return up if up is not None and 500 <= up <= 599 else self.status


class UnreadableAnswerError(APIError):
    """The provider answered, but not with anything readable (502). The call may have
    been served: only the answer was lost."""

    status = 502
    default_code = "upstream_answer_unreadable"

    @property
    def status_code(self) -> int:
        return self.status


class AnswerTooLargeError(UnreadableAnswerError):
    """The answer (as inflated) is larger than that kind of answer can be: reading
    stopped at the cap (502). Never retried: the next try would cost as much."""

    default_code = "upstream_answer_too_large"


class APIConnectionError(PrismgateError):
    """The provider could not be reached, or the connection broke (502)."""

    status = 502
    type = "api_connection_error"
    default_code = "connection_error"


class ConfigError(ValueError):
    """The configuration is invalid. The message names the exact path (`model_list[2]...`)."""


_BY_STATUS: dict[int, type[PrismgateError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: Timeout,
    409: BadRequestError,
    413: RequestTooLargeError,
    422: BadRequestError,
    429: RateLimitError,
    503: ServiceUnavailableError,
    504: Timeout,
    529: ServiceUnavailableError,
}

_CONTENT_POLICY_CODES = frozenset(
    {"content_policy_violation", "moderation_blocked", "content_filter"}
)


# An upstream message longer than this is cut (one provider echoed 1 MB of base64).
MAX_UPSTREAM_MESSAGE_CHARS = 4096


def _clipped(message: str) -> str:
    if len(message) <= MAX_UPSTREAM_MESSAGE_CHARS:
        return message
    cut = len(message) - MAX_UPSTREAM_MESSAGE_CHARS
    return f"{message[:MAX_UPSTREAM_MESSAGE_CHARS]}… ({cut} more characters not shown)"


def unreadable_answer(provider: str, status: int, reason: str) -> UnreadableAnswerError:
    """A `status` answer from `provider` that could not be read. It says `request_sent`:
    the provider may have served (and billed) the call whose answer was lost."""
    return UnreadableAnswerError(
        f"{provider} answered {status}, but the answer could not be read: {_clipped(reason)}",
        provider=provider,
        upstream_status=status,
        request_sent=True,
    )


def from_upstream(
    status: int,
    message: str,
    *,
    provider: str,
    code: str | None = None,
    param: str | None = None,
    retry_after: float | None = None,
) -> PrismgateError:
    """Translate a provider's failed answer into the tree, keeping its status and message.

    `message` must already be redacted. The caller-facing message names the provider so
    a user knows whose refusal it is.
    """
    message = _clipped(message)
    if status == 400 and code in _CONTENT_POLICY_CODES:
        cls: type[PrismgateError] = ContentPolicyViolationError
    else:
        cls = _BY_STATUS.get(status) or (APIError if status >= 500 else BadRequestError)
    return cls(
        f"{provider} returned {status}: {message}",
        code=code,
        param=param,
        provider=provider,
        upstream_status=status,
        upstream_message=message,
        retry_after=retry_after,
    )
