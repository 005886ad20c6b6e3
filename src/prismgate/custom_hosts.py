"""Custom hosts: a provider base URL chosen by the caller (`x-portkey-custom-host`, a
Portkey config's `custom_host`), checked before any connection is made.

A custom host may be reached when it is a public address, or when the operator
allowlisted its `host` or `host:port` (`general_settings.media.allowed_hosts`). This
module does the checks that need no DNS: the URL's shape, and a host written as an
address (in any spelling a resolver accepts, `addresses.host_address`). A name is judged
later, after DNS, by the transport from `HttpTransport.guarded()`, which checks every
address it resolves to and the address it dials.
"""

from __future__ import annotations

from dataclasses import dataclass

from prismgate.errors import BadRequestError, PermissionDeniedError
from prismgate.media.addresses import HostAllowlist, host_address, is_public_address

__all__ = ["CustomHost", "check_custom_host"]

MAX_URL_LENGTH = 8192


@dataclass(frozen=True, slots=True)
class CustomHost:
    """A custom host that passed the static checks.

    `url` is as the caller sent it. `allowlisted` is True when the operator allowed its
    host or host:port; otherwise it must still pass the address rules after DNS (send
    through `HttpTransport.guarded()` either way: it applies the same allowlist).
    """

    url: str
    allowlisted: bool


def check_custom_host(url: str, allowed_hosts: HostAllowlist, *, param: str) -> CustomHost:
    """`url` checked as a custom host, without connecting anywhere.

    Raises BadRequestError (400, naming `param`) for a URL that is no http(s) URL with a
    host, carries a user name or password, or has a port out of range; and
    PermissionDeniedError (403, naming `param`) for a host written as an address that is
    not public (private, loopback, link-local, metadata, ...) and not allowlisted.
    """
    from yarl import URL  # the parser aiohttp sends with, so the host judged is the one dialled

    shape = f"{param} must be an http or https URL such as https://host/v1"
    if len(url) > MAX_URL_LENGTH:
        raise BadRequestError(f"{param} is longer than {MAX_URL_LENGTH} characters", param=param)
    try:
        parsed = URL(url)
        port = parsed.port
    except (TypeError, ValueError):
        raise BadRequestError(f"{shape}; this one is not a valid URL", param=param) from None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host or port is None:
        raise BadRequestError(shape, param=param)
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise BadRequestError(
            f"{param} must not contain a user name or password; send credentials in headers",
            param=param,
        )
    if not 0 < port < 65536:
        raise BadRequestError(f"{param} has port {port}; use a port from 1 to 65535", param=param)
    host = parsed.raw_host
    if allowed_hosts.permits(host, port):
        return CustomHost(url=url, allowlisted=True)
    try:
        ip = host_address(host)
    except ValueError:
        raise BadRequestError(f"{shape}; its host is not a valid host name", param=param) from None
    if ip is not None and not is_public_address(ip):
        entry = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise PermissionDeniedError(
            f"{param} points at {entry}, a non-public address (private, loopback, "
            "link-local or reserved), which this gateway calls only when the operator lists "
            f'it in general_settings.media.allowed_hosts (e.g. "{entry}")',
            param=param,
            code="address_not_allowed",
        )
    return CustomHost(url=url, allowlisted=False)
