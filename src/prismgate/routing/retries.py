"""When to try again, and how long to wait: failure classes, backoff, and a retry budget.

A failure is one of:

- **retryable**: the provider said "not now" or could not be reached (429, 408, 5xx,
  timeouts, broken connections). The same call may succeed on another try or deployment.
  Not an answer larger than that kind of answer can be: another try would cost as much.
- **a provider fault that another deployment may not have** (401, 403, 404 from the
  provider: a wrong key or a missing deployment). Not retried, but fallbacks apply.
- **the caller's** (any other 4xx, a refused prompt): never retried; only a refused
  prompt has its own fallbacks (`content_policy_fallbacks`).

An image generation whose request reached the provider and got no usable answer (a
timeout or a broken connection after the body was sent, or a success status whose body
could not be read: garbage, HTML, a bad gzip stream, a body cut short or too large) may
have been accepted and billed: any error that says `request_sent` is final for it. It is
not tried again, nor sent to a fallback, unless the caller sent an idempotency key or the
deployment is marked `safe_to_retry`. An error answer (a 4xx or 5xx status) says the
provider did not serve the call, and follows the classes above.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from prismgate.errors import (
    AnswerTooLargeError,
    APIConnectionError,
    ContentPolicyViolationError,
    ImageStoreError,
    PrismgateError,
    RateLimitError,
    Timeout,
)

__all__ = [
    "RetryBudget",
    "RetrySettings",
    "backoff_delay",
    "falls_back",
    "is_content_refusal",
    "is_retryable",
    "may_have_been_accepted",
]


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """How retries wait (`general_settings.retries`)."""

    # Exponential backoff with full jitter: a wait drawn from [0, min(max, base * 2^n)].
    base_delay: float = 0.5
    max_delay: float = 8.0
    # A provider's Retry-After is waited for up to this long; a longer one is not waited
    # for at all (the failure goes to the fallbacks, or to the caller, with its hint).
    max_retry_after: float = 30.0
    # Retries may add at most this share of the requests of the last `budget_window` s,
    # plus `budget_floor` retries, so a failing provider is not hammered.
    budget_ratio: float = 0.2
    budget_floor: int = 10
    budget_window: int = 10


def is_retryable(error: PrismgateError) -> bool:
    """Whether trying the same call again may succeed."""
    if isinstance(error, AnswerTooLargeError):
        return False  # the next answer would be as large, and cost as much to read
    if isinstance(error, RateLimitError | Timeout | APIConnectionError):
        return True
    if isinstance(error, ImageStoreError):
        return False  # the gateway's own store: another try would be billed and refused
    return error.status_code >= 500


def falls_back(error: PrismgateError) -> bool:
    """Whether another model group may serve what this failure could not (fallbacks)."""
    if is_retryable(error):
        return True
    return error.provider is not None and error.status_code in (401, 403, 404)


def is_content_refusal(error: PrismgateError) -> bool:
    """A refused prompt or image: `content_policy_fallbacks` apply."""
    return isinstance(error, ContentPolicyViolationError)


def may_have_been_accepted(error: PrismgateError) -> bool:
    """The request reached the provider and no usable answer came back: it may have been
    served (and billed) although we never saw the result. Whatever the error's class: the
    boundary that raised it knows, and says so with `request_sent`."""
    return error.request_sent


def backoff_delay(
    retry: int, retry_after: float | None, settings: RetrySettings, rng: random.Random
) -> float:
    """Seconds to wait before retry number `retry` (0-based): the provider's Retry-After
    when it gave one, else exponential backoff with full jitter."""
    if retry_after is not None:
        return retry_after
    ceiling = min(settings.max_delay, settings.base_delay * 2**retry)
    return rng.uniform(0, ceiling)


class RetryBudget:
    """Limits retries to a share of recent requests (per model group, in this process).

    A provider that fails every call would otherwise receive `1 + num_retries` calls per
    request; with the budget, a storm costs it at most `budget_ratio` more. Requests and
    retries are counted in one-second buckets, so counting a request is one addition.
    """

    def __init__(
        self, settings: RetrySettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock
        # [second, requests, retries], oldest first.
        self._buckets: deque[list[int]] = deque()

    def note_request(self) -> None:
        """Count one request (a first attempt)."""
        self._bucket()[1] += 1

    def try_spend(self) -> bool:
        """Take one retry from the budget; False when it is spent."""
        current = self._bucket()
        horizon = current[0] - self._settings.budget_window
        while self._buckets[0][0] <= horizon:
            self._buckets.popleft()
        requests = sum(bucket[1] for bucket in self._buckets)
        retries = sum(bucket[2] for bucket in self._buckets)
        if retries >= self._settings.budget_floor + self._settings.budget_ratio * requests:
            return False
        current[2] += 1
        return True

    def _bucket(self) -> list[int]:
        second = int(self._clock())
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
            if len(self._buckets) > 4 * self._settings.budget_window:
                self._buckets.popleft()  # bounded even when nothing is ever spent
        return self._buckets[-1]
