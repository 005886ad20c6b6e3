"""`GET /metrics`: the Prometheus scrape, and who may read it.

Who may read it is the operator's choice, `general_settings.metrics_access`:

    loopback  (default) clients on this machine without a key; others with the master key
              or an admin's key (a key whose user has the proxy_admin role)
    admin     always the master key or an admin's key
    open      anyone who can reach the port

LiteLLM's `litellm_settings.require_auth_for_metrics_endpoint: true` means `admin`. The
client's address is the connection's own (`prismgate serve` does not read
X-Forwarded-For), so a header cannot make a remote scraper look local.

The scrape is answered by the outer middleware (`RequestContext`, with the app's
telemetry), outside authentication (a loopback scraper needs no key); this module
decides access itself, with the same authenticator.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Literal

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from prismgate.config import Config
from prismgate.errors import AuthenticationError, PermissionDeniedError, PrismgateError
from prismgate.identity import Authenticator
from prismgate.proxy.auth import headers_of, presented_key
from prismgate.proxy.responses import error_response, json_response
from prismgate.types import ErrorBody, ErrorDetail

__all__ = ["METRICS_PATH", "MetricsAccess", "MetricsEndpoint", "metrics_access"]

METRICS_PATH = "/metrics"
MetricsAccess = Literal["loopback", "admin", "open"]
_HEADERS = {"cache-control": "no-store"}


def metrics_access(config: Config) -> MetricsAccess:
    """Who may read /metrics under `config` (LiteLLM's switch asks for a key)."""
    chosen: MetricsAccess = config.general_settings.metrics_access
    if config.litellm_settings.require_auth_for_metrics_endpoint and chosen == "loopback":
        return "admin"
    return chosen


class MetricsEndpoint:
    """The ASGI endpoint of `GET /metrics` (and HEAD): `scrape()` gives the body."""

    def __init__(
        self,
        access: MetricsAccess,
        authenticator: Authenticator,
        scrape: Callable[[], Awaitable[bytes]],
    ) -> None:
        self._access = access
        self._authenticator = authenticator
        self._scrape = scrape

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            detail = ErrorDetail(
                message=f"{method} {METRICS_PATH}: Method Not Allowed; scrape it with GET",
                type="invalid_request_error",
                code="method_not_allowed",
            )
            answer = json_response(
                ErrorBody(error=detail), status=405, headers={"allow": "GET, HEAD"}
            )
            await answer(scope, receive, send)
            return
        try:
            await self._admit(scope)
        except PrismgateError as error:
            await error_response(error)(scope, receive, send)
            return
        body = await self._scrape()
        answer = Response(
            b"" if method == "HEAD" else body, media_type=CONTENT_TYPE_LATEST, headers=_HEADERS
        )
        if method == "HEAD":
            answer.headers["content-length"] = str(len(body))
        await answer(scope, receive, send)

    async def _admit(self, scope: Scope) -> None:
        """Return when this caller may read the metrics; raise the refusal otherwise."""
        if self._access == "open" or (self._access == "loopback" and _from_loopback(scope)):
            return
        where = "" if self._access == "admin" else " from another machine"
        presented = presented_key(headers_of(scope))
        if presented is None:
            raise AuthenticationError(
                f"{METRICS_PATH}{where} needs the master key (or an admin's key) as "
                "'Authorization: Bearer <key>'; the operator can open it with "
                "general_settings.metrics_access: open",
                code="metrics_key_required",
            )
        principal = await self._authenticator.authenticate(presented)
        scope["state"]["principal"] = principal  # the access log names the key alias
        if principal.is_admin:
            return
        who = (
            "this gateway has no master key: set general_settings.master_key and send it"
            if principal.role == "open"
            else f"the key {principal.key_alias} is not one: send the master key"
        )
        raise PermissionDeniedError(
            f"{METRICS_PATH}{where} needs the master key or an admin's key, and {who}",
            code="metrics_key_required",
        )


def _from_loopback(scope: Scope) -> bool:
    """Whether the connection comes from this machine (127.0.0.0/8, ::1, and IPv4
    loopback written as IPv6)."""
    client = scope.get("client")
    if not client:
        return False  # no address (a Unix socket, a test client): not known to be local
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
