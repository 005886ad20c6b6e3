"""What one proxy request did, gathered while it runs: the report of its gateway call and
the time it waited on providers.

The proxy's outer middleware opens a `RequestTrack` for each request (it sets the context
variable `CURRENT_TRACK`) and reads it when the request ends. Two things fill it from
inside the request, through that variable: `CallCollector`, an observer that keeps the
`CallReport` of the call made for this request id, and the upstream transport, which adds
the time of every upstream request sent while the request runs (a track is the
transport's `UpstreamWait`, and `CURRENT_TRACK` its `UPSTREAM_WAIT`: one variable, set
once a request). The variable is request-scoped (asyncio copies it into the tasks a
request starts, such as a fan-out's parallel calls), so nothing is kept for SDK calls or
after the request.

Everything here runs for every request: a track is a Struct (made in C).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import cast

from prismgate.observers import CallReport
from prismgate.transport import UPSTREAM_WAIT, UpstreamWait

__all__ = ["CURRENT_TRACK", "CallCollector", "RequestTrack"]


class RequestTrack(UpstreamWait, kw_only=True):
    """One request's gateway call (its report) and its time spent waiting on providers
    (`upstream`, which the transport adds to)."""

    request_id: str
    report: CallReport | None = None


# The track of the request running in this context (None outside the proxy's requests):
# set by the middleware around each request, and reset after it. The transport's own
# variable, which only the proxy sets, and with tracks only.
CURRENT_TRACK = cast("ContextVar[RequestTrack | None]", UPSTREAM_WAIT)


class CallCollector:
    """An observer that hands each call's report to the proxy request that made it."""

    __slots__ = ()

    def observe(self, report: CallReport) -> None:
        """Keep `report` on its request's track, if it is the call of the request
        running here (an SDK call is not)."""
        current = CURRENT_TRACK.get()
        if current is not None and current.request_id == report.request_id:
            current.report = report
