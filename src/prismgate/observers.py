"""The one point where a served call is reported: spend, metrics and logs listen here.

The gateway reports each call once, served or failed (a call whose caller left included),
with its principal and metadata, to every observer it was given. Observers are called on
the event loop and must return at once: anything slow (a database write) goes to a queue
of their own. An observer that raises is logged and never fails the call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import msgspec

from prismgate.errors import PrismgateError
from prismgate.identity.principal import Principal
from prismgate.request_ids import new_request_id
from prismgate.streaming import RelayedStream
from prismgate.types import Served
from prismgate.types.meta import CallMeta

if TYPE_CHECKING:
    from prismgate.call_options import CallOptions
    from prismgate.call_records import CallRecord

__all__ = ["CallReport", "Observer", "observed", "report_to"]

log = logging.getLogger(__name__)

A = TypeVar("A")

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


async def observed(
    observers: Sequence[Observer],
    operation: str,
    name: str,
    request: msgspec.Struct,
    *,
    options: CallOptions,
    work: Callable[[], Awaitable[Served[A]]],
    record: CallRecord | None = None,
) -> Served[A]:
    """`work()`, reported once to `observers`, whether it was served or failed (a call
    whose caller left included), with the console's `record` of it. A stream is reported
    when it is closed, with the cost of the usage it reported."""
    if not observers:
        return await work()
    started = time.time()
    clock = time.perf_counter()

    def report(served: Served[Any] | None, failure: BaseException | None) -> None:
        meta = served.meta if served is not None else None
        value = served.value if served is not None else None
        if meta is not None and isinstance(value, RelayedStream):
            meta = msgspec.structs.replace(meta, response_cost=value.cost)
        report_to(
            observers,
            CallReport(
                request_id=options.request_id or new_request_id(),
                operation=operation,
                model=name,
                request=request,
                principal=options.principal,
                started_at=started,
                latency=time.perf_counter() - clock,
                value=value,
                meta=meta,
                failure=failure,
                trace_id=options.trace_id,
                metadata=options.metadata,
                record=record,
            ),
        )

    try:
        served = await work()
    except BaseException as exc:
        report(None, exc)
        raise
    if isinstance(served.value, RelayedStream):
        stream, done = served.value, served
        stream.at_close(lambda failure: report(done, failure))
    else:
        report(served, None)
    return served
