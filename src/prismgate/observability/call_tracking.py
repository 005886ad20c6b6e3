"""What one proxy request did, gathered while it runs: the report of its gateway call and
the time it waited on providers.

The proxy's telemetry middleware opens a `RequestTrack` for each request (it sets the
context variable `CURRENT_TRACK`) and reads it when the request ends. Two things fill it
from inside the request, through that variable: `CallCollector`, an observer that keeps
the `CallReport` of the call made for this request id, and `TimedTransport`, which times
every upstream request sent while the request runs. A context variable is the one way to
reach the request from the transport without threading it through every provider; it is
request-scoped (asyncio copies it into the tasks a request starts, such as a fan-out's
parallel calls), so nothing is kept for SDK calls or after the request.

Everything here runs for every request: a track is a Struct (made in C), and the
transport does its bookkeeping inline.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from time import perf_counter

import msgspec

from prismgate.observers import CallReport
from prismgate.transport import (
    Transport,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamStream,
    sender,
    streamer,
)

__all__ = ["CURRENT_TRACK", "CallCollector", "RequestTrack", "TimedTransport"]


class RequestTrack(msgspec.Struct):
    """One request's gateway call (its report) and its time spent waiting on providers:
    the time during which at least one upstream request was in flight, so that a fan-out's
    parallel requests count once and a retry's backoff does not count."""

    request_id: str
    report: CallReport | None = None
    upstream_calls: int = 0
    upstream_seconds: float = 0.0
    in_flight: int = 0  # upstream requests in flight now
    since: float = 0.0  # when the first of them was sent

    @property
    def upstream(self) -> float | None:
        """Seconds spent waiting on providers; None when nothing was sent upstream (a
        stream still open counts up to now)."""
        if self.upstream_calls == 0:
            return None
        if self.in_flight:
            return self.upstream_seconds + perf_counter() - self.since
        return self.upstream_seconds


# The track of the request running in this context (None outside the proxy's requests):
# set by the middleware around each request, and reset after it.
CURRENT_TRACK: ContextVar[RequestTrack | None] = ContextVar("prismgate_track", default=None)


class CallCollector:
    """An observer that hands each call's report to the proxy request that made it."""

    __slots__ = ()

    def observe(self, report: CallReport) -> None:
        """Keep `report` on its request's track, if it is the call of the request
        running here (an SDK call is not)."""
        current = CURRENT_TRACK.get()
        if current is not None and current.request_id == report.request_id:
            current.report = report


def _started(current: RequestTrack) -> None:
    if current.in_flight == 0:
        current.since = perf_counter()
    current.in_flight += 1
    current.upstream_calls += 1


def _ended(current: RequestTrack) -> None:
    current.in_flight -= 1
    if current.in_flight == 0:
        current.upstream_seconds += perf_counter() - current.since


class TimedTransport:
    """`inner`, adding the time of each request it sends to the track of the proxy request
    running (if any). A stream counts until it is closed."""

    __slots__ = ("_inner", "_send", "_stream")

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        # A trace header is passed on as it came (`added_headers`), not copied in.
        self._send = sender(inner)
        self._stream = streamer(inner)

    async def send(
        self, request: UpstreamRequest, *, added_headers: Mapping[str, str] | None = None
    ) -> UpstreamResponse:
        """Send `request` (and `added_headers`) with the inner transport, timed."""
        current = CURRENT_TRACK.get()
        if current is None:
            return await self._send(request, added_headers=added_headers)
        # `_started` and `_ended`, inline: this runs for every upstream request.
        if current.in_flight == 0:
            current.since = perf_counter()
        current.in_flight += 1
        current.upstream_calls += 1
        try:
            return await self._send(request, added_headers=added_headers)
        finally:
            current.in_flight -= 1
            if current.in_flight == 0:
                current.upstream_seconds += perf_counter() - current.since

    @contextlib.asynccontextmanager
    async def stream(
        self, request: UpstreamRequest, *, added_headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[UpstreamStream]:
        """Open `request` with the inner transport, timed until the block is left."""
        current = CURRENT_TRACK.get()
        if current is None:
            async with self._stream(request, added_headers=added_headers) as answer:
                yield answer
            return
        _started(current)
        try:
            async with self._stream(request, added_headers=added_headers) as answer:
                yield answer
        finally:
            _ended(current)
