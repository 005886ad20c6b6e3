"""Dialling only addresses the rules allow: the pieces the safe fetcher and the guarded
provider transport share.

Two checks, both inside aiohttp's connector:

- `checking_resolver`: resolves a name once and refuses it unless every address is
  public (`addresses.is_public_address`); it hands the connector the checked addresses
  with the name kept, so the name still goes in the Host header and TLS (SNI, certificate).
- `gated_socket`: the connector's socket factory, which checks the address about to be
  dialled once more, whatever path it came by (address literals skip the resolver).

Both refuse with `AddressRefused`, an OSError that aiohttp wraps as a connector error;
callers recognise it in `ClientConnectorError.os_error` and translate it.

aiohttp is imported on first use, so `import prismgate` stays fast.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from prismgate.media.addresses import host_address, is_public_address

if TYPE_CHECKING:
    from aiohappyeyeballs import AddrInfoType
    from aiohttp.abc import AbstractResolver

__all__ = ["AddressRefused", "Resolve", "checking_resolver", "gated_socket", "system_resolve"]

Resolve = Callable[[str, int], Awaitable[list[str]]]
"""Resolves a host name and port to IP address strings (`getaddrinfo` by default)."""


class AddressRefused(OSError):
    """Raised inside aiohttp's connector when an address fails the rules.

    An OSError, so aiohttp wraps it as a connector error instead of a crash; the same
    errno and text every time, so aiohappyeyeballs passes it on unmerged.
    """

    def __init__(self) -> None:
        super().__init__(errno.EACCES, "address refused by the gateway's address rules")


def gated_socket(addr_info: AddrInfoType) -> socket.socket:
    """The connector's socket factory: the last check, on the address about to be dialled."""
    family, kind, proto, _, sockaddr = addr_info
    try:
        ip = host_address(str(sockaddr[0]))
    except ValueError:
        ip = None
    if ip is None or not is_public_address(ip):
        raise AddressRefused
    return socket.socket(family, kind, proto)


async def system_resolve(host: str, port: int) -> list[str]:
    """`host`'s addresses from the system resolver (`getaddrinfo`), without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checking_resolver(resolve: Resolve, *, check: bool) -> AbstractResolver:
    """An aiohttp resolver that resolves once and, if `check`, refuses a name unless every
    address is public. It returns the checked addresses with the name kept as `hostname`,
    so aiohttp connects to them and still sends the name in Host and SNI."""
    from aiohttp.abc import AbstractResolver, ResolveResult

    class CheckingResolver(AbstractResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            results: list[ResolveResult] = []
            for text in await resolve(host, port):
                try:
                    ip = host_address(text)
                except ValueError:
                    ip = None
                if ip is None or (check and not is_public_address(ip)):
                    raise AddressRefused
                found = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
                if family in (socket.AF_UNSPEC, found):
                    # Checked: the canonical form is dialled. Allowlisted: as resolved,
                    # which keeps an IPv6 zone id.
                    address = str(ip) if check else text
                    flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
                    results.append(
                        ResolveResult(
                            hostname=host, host=address, port=port, family=found, proto=0,
                            flags=flags,
                        )
                    )  # fmt: skip
            if not results:
                raise OSError(errno.ENOENT, "no address")
            return results

        async def close(self) -> None:
            return None

    return CheckingResolver()
