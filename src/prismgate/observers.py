"""The one point where a served call is reported: spend, metrics and logs listen here.

The gateway reports each call once, served or failed (a call whose caller left included),
with its principal and metadata, to every observer it was given. Observers are called on
the event loop and must return at once: anything slow (a database write) goes to a queue
of their own. An observer that raises is logged and never fails the call.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from prismgate.errors import PrismgateError
from prismgate.identity.principal import Principal
from prismgate.types.meta import CallMeta

if TYPE_CHECKING:
    from prismgate.call_records import CallRecord

__all__ = ["CallReport", "Observer", "report_to"]

log = logging.getLogger(__name__)

# The status a call whose caller left is recorded with (nginx's "client closed request").
CLIENT_CLOSED = 499


class CallReport(msgspec.Struct, frozen=True, kw_only=True):
    """One call as observers see it (a Struct: one is made for every call, and a Struct
    is made in C)."""

    request_id: str
    operation: str  # image_generation, image_edit, image_variation, chat_completion
    model: str  # as the caller named it
    request: msgspec.Struct  # the typed request (prompt, size, n, user, ...)
    principal: Principal
    started_at: float  # Unix seconds
    latency: float  # seconds inside the gateway
    value: Any  # the answer; None on failure
    meta: CallMeta | None  # None on failure
    failure: BaseException | None
    trace_id: str | None = None
    metadata: Mapping[str, str] | None = None
    # The console's record of the call (call_records.py), when it keeps one: the spend
    # recorder finishes it, off the request path.
    record: CallRecord | None = None

    @property
    def status(self) -> int:
        """The HTTP status the call was answered with."""
        if self.failure is None:
            return 200
        if isinstance(self.failure, PrismgateError):
            return self.failure.status_code
        if isinstance(self.failure, Exception):
            return 500
        return CLIENT_CLOSED  # cancelled: the caller left

    @property
    def attempts(self) -> tuple[str, ...]:
        """What the router tried, as `<target>=<status>`."""
        if self.meta is not None:
            return self.meta.attempts
        if isinstance(self.failure, PrismgateError):
            return self.failure.attempts
        return ()


class Observer(Protocol):
    """Something that wants to know about every call."""

    def observe(self, report: CallReport) -> None:
        """Take one report; must not block."""
        ...


def report_to(observers: Sequence[Observer], report: CallReport) -> None:
    """Give `report` to each observer; one that fails is logged and skipped."""
    for observer in observers:
        try:
            observer.observe(report)
        except Exception:
            log.exception("observer %s failed on request %s", observer, report.request_id)
