"""Health: liveness and readiness (no key), and `/health`, which checks every deployment
(or one model group's, `?model=`) without a paid call: credentials present, and a free
model listing where there is one. Each deployment's last result is kept for the console
(`GET /model/status`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from prismgate._version import __version__
from prismgate.errors import NotFoundError, PrismgateError, ServiceUnavailableError
from prismgate.gateway import Gateway
from prismgate.providers import get_provider
from prismgate.providers.base import Deployment
from prismgate.proxy.query import text_query
from prismgate.proxy.responses import json_response
from prismgate.proxy.schemas import EndpointHealth, HealthReport, Readiness
from prismgate.proxy.state import ProxyState
from prismgate.routing.settings import redis_url_of

__all__ = ["health", "liveliness", "readiness"]

log = logging.getLogger("prismgate.proxy")

_ALIVE = b'"I\'m alive!"'


async def liveliness(request: Request) -> Response:
    """The process answers."""
    return json_response(_ALIVE)


async def readiness(request: Request) -> Response:
    """The worker takes calls, and says whether its database, Redis and image store
    answer; a 503 once it is shutting down (SIGTERM), while it finishes what it has.

    A dependency that does not answer makes it `degraded`, not a 503: every instance
    shares it, and the gateway serves on without it (keys cached, spend spooled, Redis
    state in process, `b64_json` answers), so taking instances out would help nobody."""
    state: ProxyState = request.app.state.proxy
    if state.drain.draining:
        raise ServiceUnavailableError(
            "this worker is shutting down (SIGTERM): it finishes its calls in flight and "
            "takes no new ones; send calls to another instance",
            code="draining",
        )
    gateway = state.gateway
    keys = state.authenticator.keys
    uses_redis = redis_url_of(state.config) is not None
    db, cache, images = await asyncio.gather(
        _reached(keys.ping) if keys is not None else _nothing(),
        _reached(gateway.stores.routing.ping) if uses_redis else _nothing(),
        _reached(gateway.image_store.ping),
    )
    ready = Readiness(
        version=__version__, models=state.groups, db=db, cache=cache, image_store=images or ""
    )
    if any(found not in (None, _CONNECTED) for found in (db, cache, images)):
        ready.status = "degraded"
    return json_response(ready)


_CONNECTED = "connected"
# How long readiness waits for each dependency (a load balancer's probe waits on it).
_PING_SECONDS = 2.0


async def _reached(ping: Callable[[], Awaitable[None]]) -> str:
    try:
        async with asyncio.timeout(_PING_SECONDS):
            await ping()
    except TimeoutError:
        return f"unreachable (no answer within {_PING_SECONDS:g} s)"
    except PrismgateError as error:
        return f"unreachable ({error.message})"
    except Exception as error:  # the driver's own; its message may name hosts: not shown
        return f"unreachable ({type(error).__name__})"
    return _CONNECTED


async def _nothing() -> None:
    return None


async def health(request: Request) -> Response:
    """Check every deployment (or `?model=`'s) concurrently; see the module docstring."""
    state: ProxyState = request.app.state.proxy
    gateway = state.gateway
    groups = gateway.deployments.groups
    if (asked := text_query(request, "model")) is not None:
        group = gateway.deployments.group_of(asked)
        if group not in groups:
            raise NotFoundError(
                f"model {asked!r} is not served here; check one of: {', '.join(groups)}",
                param="model",
                code="model_not_found",
            )
        groups = [group]
    candidates = [c for group in groups for c in gateway.deployments.candidates[group]]
    results = await asyncio.gather(*(_checked(gateway, c.group, c.deployment) for c in candidates))
    checked_at = time.time()
    for candidate, result in zip(candidates, results, strict=True):
        state.last_health[candidate.id] = (checked_at, result)
    healthy = [r for r in results if r.error is None]
    unhealthy = [r for r in results if r.error is not None]
    report = HealthReport(
        healthy_endpoints=healthy,
        unhealthy_endpoints=unhealthy,
        healthy_count=len(healthy),
        unhealthy_count=len(unhealthy),
    )
    return json_response(report)


async def _checked(gateway: Gateway, group: str, deployment: Deployment) -> EndpointHealth:
    """One deployment's health; a bug in one check makes that deployment unhealthy, never
    the whole report a 500."""
    try:
        return await _check(gateway, group, deployment)
    except Exception as exc:
        log.error("health check of %s failed: unexpected %s", group, type(exc).__name__)
        log.debug("traceback of the health check of %s", group, exc_info=exc)
        return EndpointHealth(
            model=group,
            provider=deployment.provider,
            checks={"health_check": "failed"},
            error="the health check failed unexpectedly; see the gateway's log",
        )


async def _check(gateway: Gateway, group: str, deployment: Deployment) -> EndpointHealth:
    provider = get_provider(deployment.provider)
    result = EndpointHealth(model=group, provider=provider.name, checks={})
    try:
        credentials = provider.credentials.resolve(
            provider.name, deployment, gateway.config.environ
        )
    except PrismgateError as error:
        result.checks["credentials"] = "missing"
        result.error = error.message
        return result
    result.api_base = gateway.redact(credentials.api_base)
    result.checks["credentials"] = "present"
    if provider.health_probe is None:
        result.checks["list_models"] = "skipped (the provider has no free call to make)"
        return result
    probe = provider.health_probe(credentials, provider.typed_settings(deployment.settings))
    try:
        answer = await gateway.transport.send(probe)
    except PrismgateError as error:
        result.checks["list_models"] = "unreachable"
        result.error = gateway.redact(error.message)
        return result
    result.checks["list_models"] = str(answer.status)
    if answer.status >= 400:
        rejected = answer.status in (401, 403)
        said = provider.translate_error(answer, gateway.redactor).upstream_message
        result.error = (
            "the provider rejected the credentials"
            if rejected
            else f"the provider answered {answer.status} to a model listing"
        ) + (f": {said[:200]}" if said else "")
    return result
