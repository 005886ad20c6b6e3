"""`GET /model/status`: where each deployment stands now, for an admin (the console's
Models page): its cooldown and usage this minute (the routing state every instance
shares), this worker's calls in flight and latency average (kept by the least-busy and
latency-based strategies only), its recent calls and their latency (read from the spend
log, so every instance's calls count, whatever the strategy: a call counts for the
deployment its last attempt went to), and its last `/health` result in this worker.
Reading it costs the routing state two reads and the spend log one bounded query; it
never calls a provider."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from prismgate.identity.wire import iso
from prismgate.proxy.auth import require_admin
from prismgate.proxy.responses import json_response
from prismgate.proxy.schemas import EndpointHealth
from prismgate.proxy.state import ProxyState
from prismgate.routing.router import DeploymentStatus
from prismgate.routing.strategies import strategy_name
from prismgate.storage import SpendLog, SpendQuery
from prismgate.storage.records import SpendRow

__all__ = [
    "RECENT_ROWS",
    "RECENT_SECONDS",
    "DeploymentState",
    "ModelStatus",
    "model_status",
]

# The spend-log rows the recent figures are made from: the last 15 minutes, at most this
# many (newest first), so a busy gateway's page stays one small query.
RECENT_SECONDS = 900
RECENT_ROWS = 200


class CooldownState(msgspec.Struct, kw_only=True):
    """A deployment the router skips until its cooldown ends."""

    seconds_left: float
    reason: str  # the upstream failure that started it


class UsageState(msgspec.Struct, kw_only=True):
    """Requests and tokens counted this minute (deployments with rpm/tpm limits, or every
    deployment under the usage-based strategy)."""

    requests: int
    tokens: int


class RecentCalls(msgspec.Struct, kw_only=True):
    """The deployment's calls in the spend log's last `RECENT_SECONDS`."""

    calls: int
    failures: int
    p50_ms: float | None  # latency of the successful calls, whole call (retries included)
    p95_ms: float | None
    last_call_at: str | None


class HealthState(msgspec.Struct, kw_only=True):
    """The deployment's last `/health` check in this worker."""

    checked_at: str
    healthy: bool
    checks: dict[str, str]
    error: str | None = None


class DeploymentState(msgspec.Struct, kw_only=True):
    """One deployment of a model group."""

    model_group: str
    model_id: str  # stable across instances with the same config
    label: str  # where it is in the config: `model_list[2]`
    provider: str
    model: str
    cooldown: CooldownState | None
    usage: UsageState | None
    in_flight: int | None
    latency_ms: float | None
    recent: RecentCalls | None
    health: HealthState | None


class ModelStatus(msgspec.Struct, kw_only=True):
    """`GET /model/status`: every deployment, by model group (each in config order)."""

    routing_strategy: str
    recent_window_seconds: int
    data: list[DeploymentState]


async def model_status(request: Request) -> Response:
    """`GET /model/status` (admin only); see the module docstring."""
    require_admin(request)
    state: ProxyState = request.app.state.proxy
    statuses = await state.gateway.router.status()
    recent = await _recent_calls(state.spend_log, time.time())
    data = [_deployment(s, recent, state.last_health.get(s.id)) for s in statuses]
    answer = ModelStatus(
        routing_strategy=strategy_name(state.config.router_settings.routing_strategy),
        recent_window_seconds=RECENT_SECONDS,
        data=data,
    )
    return json_response(answer, headers={"cache-control": "no-store"})


def _deployment(
    status: DeploymentStatus,
    recent: dict[str, RecentCalls],
    health: tuple[float, EndpointHealth] | None,
) -> DeploymentState:
    cooldown = status.cooldown
    usage = status.usage
    return DeploymentState(
        model_group=status.group,
        model_id=status.id,
        label=status.label,
        provider=status.provider,
        model=status.model,
        cooldown=None
        if cooldown is None
        else CooldownState(seconds_left=round(cooldown.left, 3), reason=cooldown.reason),
        usage=None if usage is None else UsageState(requests=usage.requests, tokens=usage.tokens),
        in_flight=status.in_flight,
        latency_ms=None if status.latency is None else round(status.latency * 1000, 1),
        recent=recent.get(f"{status.group}@{status.label}"),
        health=None if health is None else _health(*health),
    )


def _health(checked_at: float, result: EndpointHealth) -> HealthState:
    return HealthState(
        checked_at=iso(checked_at) or "",
        healthy=result.error is None,
        checks=dict(result.checks),
        error=result.error,
    )


async def _recent_calls(spend_log: SpendLog | None, now: float) -> dict[str, RecentCalls]:
    """Recent calls per deployment (its router label, `<group>@model_list[2]`), from the
    spend log: a row counts for the deployment its last attempt went to (two deployments
    of one model, in two regions or with two keys, each have their own)."""
    if spend_log is None:
        return {}
    rows = await spend_log.rows(SpendQuery(start=now - RECENT_SECONDS, limit=RECENT_ROWS))
    by_deployment: dict[str, list[SpendRow]] = {}
    for row in rows:
        if row.attempts:  # none: refused before any deployment was tried
            # Each attempt is `<label>=<status>`; a label may hold "=", a status never.
            label = row.attempts[-1].rpartition("=")[0]
            by_deployment.setdefault(label, []).append(row)
    return {label: _summary(found) for label, found in by_deployment.items()}


def _summary(rows: Sequence[SpendRow]) -> RecentCalls:
    latencies = sorted(row.latency_ms for row in rows if row.status_code < 400)
    return RecentCalls(
        calls=len(rows),
        failures=sum(1 for row in rows if row.status_code >= 400),
        p50_ms=_percentile(latencies, 0.5),
        p95_ms=_percentile(latencies, 0.95),
        # Rows come newest first.
        last_call_at=iso(rows[0].started_at),
    )


def _percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of sorted values; None for none."""
    if not ordered:
        return None
    return round(ordered[max(0, math.ceil(fraction * len(ordered)) - 1)], 1)
