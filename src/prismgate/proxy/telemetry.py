"""The proxy's access log and metrics: what one app owns to log and count every request.

The outermost middleware (proxy/middleware.py's `RequestContext`) times each request from
its arrival to the end of its answer, notes the status sent, and opens the request's
track (observability/call_tracking.py), which collects the report of the gateway call
made for it and the time spent upstream. When the request ends, `ProxyTelemetry.record`
makes one `RequestRecord` and hands it to the access log and the metrics. Requests that
make no call (health, /v1/models, key management, 404s, refused keys) get a line and are
counted too. `GET /metrics` is answered by `ProxyTelemetry.endpoint`, before
authentication, which that endpoint decides itself (proxy/handlers/metrics.py).

`ProxyTelemetry` also holds the route names and the task that pushes metrics to the
other workers' scrapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from time import perf_counter

from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from prismgate.config import Config, metrics_folder_from_environment
from prismgate.gateway import Gateway
from prismgate.identity import Authenticator
from prismgate.observability.access_log import AccessLog
from prismgate.observability.call_tracking import RequestTrack
from prismgate.observability.metrics import PUSH_INTERVAL, GatewayMetrics
from prismgate.observability.request_record import request_record
from prismgate.observability.safe_text import SafeText
from prismgate.proxy.handlers.metrics import METRICS_PATH, MetricsEndpoint, metrics_access

__all__ = ["ProxyTelemetry", "RouteNames"]

log = logging.getLogger("prismgate.proxy")

_TRACE_HEADER = b"x-portkey-trace-id"


class RouteNames:
    """The route template a request's path belongs to (`/v1/models`,
    `/openai/deployments/{deployment}/images/generations`), or None."""

    def __init__(self, routes: Iterable[BaseRoute], extra: Iterable[str] = ()) -> None:
        routes = list(routes)
        paths: list[str | None] = [getattr(route, "path", None) for route in routes]
        self._static = {path: path for path in paths if path and "{" not in path}
        self._static.update((path, path) for path in extra)
        self._patterned = [r for r, p in zip(routes, paths, strict=True) if p and "{" in p]

    def __call__(self, scope: Scope) -> str | None:
        route = scope.get("route")  # set by the router when it ran
        if route is not None:
            path: str | None = getattr(route, "path", None)
            return path
        found = self._static.get(scope["path"])
        if found is not None:
            return found
        # Refused before the router ran (a key missing): matched here, which is rare.
        for candidate in self._patterned:
            if candidate.matches(scope)[0] is not Match.NONE:
                patterned: str | None = getattr(candidate, "path", None)
                return patterned
        return None


def _names(gateway: Gateway) -> tuple[list[str], set[str]]:
    """The model groups (aliases too) and the `provider/model` deployments it serves."""
    deployments = gateway.deployments
    served_by = {
        f"{c.deployment.provider}/{c.deployment.model}"
        for group in deployments.candidates.values()
        for c in group
    }
    return [*deployments.groups, *deployments.aliases], served_by


def _cooling_ids(gateway: Gateway) -> dict[str, list[str]]:
    """The deployment ids of each group that can cool down: groups of one deployment are
    never cooled down, so only the others are read."""
    candidates = gateway.deployments.candidates
    ids = {name: [c.id for c in group] for name, group in candidates.items()}
    return {name: group for name, group in ids.items() if len(group) > 1}


class ProxyTelemetry:
    """The access log and metrics of one app (one per worker)."""

    def __init__(
        self,
        config: Config,
        gateway: Gateway,
        authenticator: Authenticator,
        routes: Iterable[BaseRoute],
    ) -> None:
        groups, served_by = _names(gateway)
        self._safe = SafeText(gateway.redactor, known=[*groups, *served_by])
        self.metrics = GatewayMetrics(
            self._safe, groups=groups, folder=metrics_folder_from_environment()
        )
        self.access_log = AccessLog(self._safe)
        self.routes = RouteNames(routes, extra=[METRICS_PATH])
        self.endpoint = MetricsEndpoint(metrics_access(config), authenticator, self.scrape)
        self._cooling_ids = _cooling_ids(gateway)
        self._routing = gateway.router.state
        self._pusher: asyncio.Task[None] | None = None

    def reconfigure(self, gateway: Gateway) -> None:
        """Follow a reloaded config's gateway: its model groups and deployments keep their
        own names in logs and labels, and its cooldowns are the ones scraped."""
        groups, served_by = _names(gateway)
        self._safe.learn([*groups, *served_by])
        self.metrics.learn_groups(groups)
        self._cooling_ids = _cooling_ids(gateway)

    def start(self) -> None:
        """Start pushing the metrics once a second (the other workers' scrapes read them;
        and what waits for a push stays one second's worth)."""
        if self._pusher is None:
            self._pusher = asyncio.get_running_loop().create_task(self._push_periodically())

    async def aclose(self) -> None:
        """Stop; write the lines that wait and push the last counts."""
        pusher, self._pusher = self._pusher, None
        if pusher is not None:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
        self.metrics.close()
        await self.access_log.aclose()

    async def scrape(self) -> bytes:
        """The metrics for a scrape: this worker's counts pushed first, the cooldowns read."""
        self.metrics.push()
        if self._cooling_ids:
            try:
                ids = [i for group in self._cooling_ids.values() for i in group]
                cooling = await self._routing.cooled_down(ids)
            except Exception as error:  # the scrape goes on without them
                log.warning("metrics: cooldowns could not be read (%s)", type(error).__name__)
            else:
                self.metrics.set_cooling_down(
                    {g: sum(i in cooling for i in ids) for g, ids in self._cooling_ids.items()}
                )
        return await asyncio.to_thread(self.metrics.exposition)

    def record(self, scope: Scope, status: int, started: float, current: RequestTrack) -> None:
        """Log and count one answered request (`started`: its `perf_counter` at arrival;
        `current`: its track). Never raises: a failure here is a bug, logged."""
        try:
            seconds = perf_counter() - started
            report = current.report
            principal = scope["state"].get("principal")
            record = request_record(
                scope["method"],
                scope["path"],
                self.routes(scope),
                status,
                time.time(),
                seconds,
                current.upstream,
                current.request_id,
                _trace_header(scope) if report is None else report.trace_id,
                None if principal is None else principal.key_alias,
                report,
            )
            self.metrics.add(record)
            self.access_log.add(record)
        except Exception as error:
            log.error(
                "telemetry failed on request %s: %s (traceback at debug level)",
                current.request_id,
                type(error).__name__,
            )
            log.debug("traceback of request %s", current.request_id, exc_info=error)

    async def _push_periodically(self) -> None:
        while True:
            await asyncio.sleep(PUSH_INTERVAL)
            self.metrics.push()


def _trace_header(scope: Scope) -> str | None:
    """The caller's x-portkey-trace-id, for requests that made no call."""
    for name, value in scope["headers"]:
        if name == _TRACE_HEADER and value:
            trace_id: str = value.decode("latin-1")
            return trace_id
    return None
