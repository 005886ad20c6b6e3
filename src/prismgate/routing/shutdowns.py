"""Models their provider has shut down: refused before any upstream call.

The catalog keeps a shut-down model known, with its `shutdown_date` and the provider's
suggested `replacement`. Calling it at the provider's own endpoint is a 400 naming both
(and `router_settings.model_group_alias`, which maps the old name to another model
group), instead of an upstream 404 that says less. A deployment pointed elsewhere (its
own `api_base`, or the provider's base-URL variable: a compatible server, a proxy, a
test emulator) still sends the name, since that server may serve it.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from prismgate.errors import BadRequestError
from prismgate.providers.base import CredentialSpec, Deployment

__all__ = ["at_provider_endpoint", "refuse_shut_down", "shut_down_error"]


def refuse_shut_down(
    deployment: Deployment,
    credentials: CredentialSpec,
    environ: Mapping[str, str],
    *,
    today: datetime.date | None = None,
) -> None:
    """Raise the 400 of `shut_down_error` when `deployment` calls a shut-down model at
    its provider's own endpoint; return quietly otherwise."""
    info = deployment.info
    if info is None or info.shutdown_date is None:
        return
    if not at_provider_endpoint(deployment, credentials, environ):
        return
    error = shut_down_error(
        f"{deployment.provider}/{deployment.model}",
        info.shutdown_date,
        info.replacement,
        today=today or datetime.datetime.now(datetime.UTC).date(),
    )
    if error is not None:
        raise error


def at_provider_endpoint(
    deployment: Deployment, credentials: CredentialSpec, environ: Mapping[str, str]
) -> bool:
    """Whether the call goes to the provider's default endpoint (no `api_base` of the
    deployment's own, none from the provider's base-URL variables)."""
    base = deployment.api_base or next(
        (environ[name] for name in credentials.api_base_env if environ.get(name)), None
    )
    if base is None:
        return True
    default = credentials.default_api_base
    return default is not None and base.rstrip("/") == default.rstrip("/")


def shut_down_error(
    model: str, shutdown_date: str, replacement: str | None, *, today: datetime.date
) -> BadRequestError | None:
    """The 400 for calling `model` on `today`, or None before its shutdown date."""
    if datetime.date.fromisoformat(shutdown_date) > today:
        return None
    instead = f"; its provider suggests {replacement} instead" if replacement else ""
    return BadRequestError(
        f"{model} was shut down by its provider on {shutdown_date}{instead}. Call another "
        "model, or map this name to another model group with "
        "router_settings.model_group_alias.",
        param="model",
        code="model_not_found",
    )
