"""Which addresses the gateway may fetch from, and what address a URL host stands for.

Pure functions, no I/O. The safe fetcher asks two questions of every hop:

- `host_address(host)`: is this host an address literal, in any of the spellings a
  resolver or a socket accepts (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`,
  `[::ffff:127.0.0.1]`, `fe80::1%eth0`), and which address is it?
- `is_public_address(ip)`: may the gateway connect to it? Only globally routable
  unicast addresses may; IPv6 forms that carry an IPv4 address inside (mapped,
  compatible, 6to4, NAT64, Teredo) are judged by the IPv4 address they carry.

`HostAllowlist` holds the operator's exceptions: hosts reached although private.

When unsure, the answer is no: a refused image URL costs the caller a data URL, a
wrongly allowed one can cost the operator their cloud credentials.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from prismgate.errors import ConfigError

__all__ = ["CLOUD_METADATA_ADDRESSES", "HostAllowlist", "host_address", "is_public_address"]

IPAddress = IPv4Address | IPv6Address

_V4 = IPv4Network
_V6 = IPv6Network

# Addresses no caller-supplied URL may reach. Ranges from the IANA special-purpose
# registries; reserved and documentation ranges are here because nothing legitimate
# serves images from them, and a router may still deliver them somewhere internal.
_NOT_PUBLIC_V4: tuple[IPv4Network, ...] = (
    _V4("0.0.0.0/8"),  # "this network", including the unspecified 0.0.0.0
    _V4("10.0.0.0/8"),  # private
    _V4("100.64.0.0/10"),  # carrier-grade NAT (also Alibaba's metadata service)
    _V4("127.0.0.0/8"),  # loopback
    _V4("169.254.0.0/16"),  # link-local (most clouds' metadata service)
    _V4("172.16.0.0/12"),  # private
    _V4("192.0.0.0/24"),  # IETF protocol assignments (Oracle's legacy metadata)
    _V4("192.0.2.0/24"),  # documentation
    _V4("192.88.99.0/24"),  # 6to4 relay anycast, deprecated
    _V4("192.168.0.0/16"),  # private
    _V4("198.18.0.0/15"),  # benchmarking
    _V4("198.51.100.0/24"),  # documentation
    _V4("203.0.113.0/24"),  # documentation
    _V4("224.0.0.0/4"),  # multicast
    _V4("240.0.0.0/4"),  # reserved, and the broadcast 255.255.255.255
)

# Cloud metadata and platform services. Most lie in the ranges above; they are named
# here so that no future edit of a range can let them through, and because Azure's
# wire server sits in public address space.
CLOUD_METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {
        IPv4Address("169.254.169.254"),  # AWS, GCP, Azure, Oracle, DigitalOcean, ...
        IPv4Address("169.254.170.2"),  # AWS ECS task credentials
        IPv4Address("100.100.100.200"),  # Alibaba Cloud
        IPv4Address("192.0.0.192"),  # Oracle Cloud (legacy)
        IPv4Address("168.63.129.16"),  # Azure wire server
        IPv6Address("fd00:ec2::254"),  # AWS, over IPv6
    }
)

# Only global unicast space (2000::/3) can be public; inside it, these ranges are not.
_GLOBAL_UNICAST = _V6("2000::/3")
_NOT_PUBLIC_V6: tuple[IPv6Network, ...] = (
    _V6("2001::/23"),  # IETF protocol assignments (Teredo, 2001::/32, is judged first)
    _V6("2001:db8::/32"),  # documentation
    _V6("3fff::/20"),  # documentation
)

# IPv6 forms that carry an IPv4 address in their last 32 bits. 6to4 (2002::/16) and
# Teredo (2001::/32) carry theirs elsewhere; `ipaddress` extracts those.
_LAST_32_BITS_V4: tuple[IPv6Network, ...] = (
    _V6("::ffff:0:0/96"),  # IPv4-mapped
    _V6("::ffff:0:0:0/96"),  # IPv4-translated (SIIT)
    _V6("::/96"),  # IPv4-compatible (deprecated), which also holds :: and ::1
    _V6("64:ff9b::/96"),  # NAT64, well-known prefix
)
# 64:ff9b:1::/48 (local-use NAT64) is deliberately absent: where its operator put the
# IPv4 address is not knowable from outside, so it falls in the refused non-2000::/3 space.

_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)", re.IGNORECASE)
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")
_NOT_IN_HOST = frozenset("/@?#\\ \t")


def is_public_address(ip: IPAddress) -> bool:
    """Whether the gateway may connect to `ip`: a globally routable unicast address that
    is no cloud metadata service. IPv4 carried in IPv6 must itself be public."""
    if isinstance(ip, IPv4Address):
        return ip not in CLOUD_METADATA_ADDRESSES and not any(ip in n for n in _NOT_PUBLIC_V4)
    ip = IPv6Address(int(ip))  # without a zone id, which plays no part in routing
    if ip in CLOUD_METADATA_ADDRESSES:
        return False
    carried = _carried_ipv4(ip)
    if carried is not None:
        return all(is_public_address(v4) for v4 in carried)
    return ip in _GLOBAL_UNICAST and not any(ip in n for n in _NOT_PUBLIC_V6)


def _carried_ipv4(ip: IPv6Address) -> tuple[IPv4Address, ...] | None:
    """The IPv4 addresses an IPv6 address carries, or None when it carries none."""
    if any(ip in n for n in _LAST_32_BITS_V4):
        return (IPv4Address(int(ip) & 0xFFFF_FFFF),)
    if (six_to_four := ip.sixtofour) is not None:
        return (six_to_four,)
    if (teredo := ip.teredo) is not None:
        return teredo  # the relay server, and the client (stored bit-inverted, undone here)
    return None


def host_address(host: str) -> IPAddress | None:
    """The address a URL host stands for, or None when it is a name to resolve.

    Accepts every spelling of an address that resolvers or sockets accept: IPv4 in one to
    four dotted parts, each decimal, octal (leading 0) or hex (0x); IPv6 with or without
    brackets, with a zone id (`%eth0`, or `%25eth0` as URLs write it) that is dropped.
    Raises ValueError for a host that is neither a valid name nor an address, including
    a host whose last label is a number but which is no valid IPv4 address (so that
    `1.2.3.256` is never handed to a resolver that might read it differently).
    """
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        address, _, _zone = host.partition("%")
        try:
            return IPv6Address(address)
        except ipaddress.AddressValueError as exc:
            raise ValueError(f"not an IPv6 address: {host!r}") from exc
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"not a host name: {host!r}")
    if _NUMBER.fullmatch(labels[-1]) is None:
        return None
    return _ipv4_from_parts(labels, host)


def _ipv4_from_parts(parts: list[str], host: str) -> IPv4Address:
    """IPv4 in inet_aton's forms: `a.b.c.d`, `a.b.c` (c: 16 bits), `a.b` (b: 24), `a`."""
    if len(parts) > 4:
        raise ValueError(f"not an IPv4 address: {host!r}")
    numbers: list[int] = []
    for part in parts:
        if _NUMBER.fullmatch(part) is None:
            raise ValueError(f"not an IPv4 address: {host!r}")
        if part[:2].lower() == "0x":
            numbers.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part[0] == "0":
            if not part.isdigit() or "8" in part or "9" in part:
                raise ValueError(f"not an IPv4 address: {host!r}")
            numbers.append(int(part, 8))
        else:
            numbers.append(int(part))
    *leading, last = numbers
    last_bits = 8 * (5 - len(numbers))
    if any(n > 0xFF for n in leading) or last >= 1 << last_bits:
        raise ValueError(f"not an IPv4 address: {host!r}")
    value = last
    for index, number in enumerate(leading):
        value |= number << (24 - 8 * index)
    return IPv4Address(value)


class HostAllowlist:
    """`general_settings.media.allowed_hosts`: hosts the fetcher may reach although they
    are not public. A bare `host` is allowed on any port, `host:port` on that port only.

    Hosts are compared as URLs spell them (lower-case, IDNA, IPv6 compressed, no
    trailing dot); an address is allowed only in the spelling the operator wrote, so
    `127.0.0.1:8000` does not allow `2130706433:8000`.
    """

    __slots__ = ("_any_port", "_pairs")

    def __init__(self, entries: Iterable[str]) -> None:
        """Raises ConfigError naming the entry that is no `host` or `host:port`."""
        from yarl import URL  # aiohttp's URL parser, so hosts are spelled as it sends them

        self._any_port: set[str] = set()
        self._pairs: set[tuple[str, int]] = set()
        for index, entry in enumerate(entries):
            text = entry.strip()
            try:
                url = URL(f"http://{text}") if text and not _NOT_IN_HOST & set(text) else None
            except ValueError:
                url = None
            if url is None or not url.raw_host:
                raise ConfigError(
                    f"general_settings.media.allowed_hosts[{index}]: {entry!r} is not a host "
                    "or host:port"
                )
            if url.explicit_port is None:
                self._any_port.add(_host_key(url.raw_host))
            else:
                self._pairs.add((_host_key(url.raw_host), url.explicit_port))

    def permits(self, host: str, port: int) -> bool:
        """Whether the operator allowed `host` (as a URL spells it) on `port`."""
        key = _host_key(host)
        return key in self._any_port or (key, port) in self._pairs


def _host_key(host: str) -> str:
    return host.lower().removesuffix(".")
