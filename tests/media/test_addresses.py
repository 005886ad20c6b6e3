"""Address rules: which addresses are public, what a host literal stands for, the allowlist."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prismgate.errors import ConfigError
from prismgate.media.addresses import (
    CLOUD_METADATA_ADDRESSES,
    HostAllowlist,
    host_address,
    is_public_address,
)

ipv4s = st.integers(min_value=0, max_value=2**32 - 1).map(IPv4Address)
ipv6s = st.integers(min_value=0, max_value=2**128 - 1).map(IPv6Address)
PUBLIC_V4 = IPv4Address("93.184.216.34")


@pytest.mark.parametrize(
    "text",
    [
        # IPv4: private, loopback, link-local, CGNAT, this-network, benchmarking,
        # documentation, IETF assignments, multicast, reserved, broadcast
        "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.0.1", "127.0.0.1",
        "127.255.255.254", "169.254.0.1", "100.64.0.1", "100.127.255.255", "0.0.0.0",
        "0.1.2.3", "198.18.0.1", "198.19.255.255", "192.0.2.1", "198.51.100.7",
        "203.0.113.9", "192.0.0.9", "192.88.99.1", "224.0.0.1", "239.255.255.250",
        "240.0.0.1", "255.255.255.255",
        # cloud metadata
        "169.254.169.254", "169.254.170.2", "100.100.100.200", "192.0.0.192",
        "168.63.129.16", "fd00:ec2::254",
        # IPv6: unspecified, loopback, unique-local, link-local, site-local, multicast,
        # documentation, discard, reserved, local-use NAT64
        "::", "::1", "fc00::1", "fd12:3456::1", "fe80::1", "fec0::1", "ff02::1",
        "ff0e::1", "2001:db8::1", "3fff::1", "100::1", "200::1", "4000::1", "5f00::1",
        "64:ff9b:1::808:808", "2001:2::1",
        # IPv4 carried in IPv6
        "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1", "::ffff:0:a00:1",
        "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "2002:a9fe:a9fe::1",
        "2002:a00:1:1::1",
        # Teredo: client 127.0.0.1 (bit-inverted), and a private relay server
        "2001:0:4136:e378:8000:63bf:80ff:fffe", "2001:0:a00:1:8000:63bf:f7f7:f7f7",
    ],
)  # fmt: skip
def test_not_public(text: str) -> None:
    assert not is_public_address(ip_address(text))


@pytest.mark.parametrize(
    "text",
    [
        "8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "100.128.0.0",
        "172.15.255.255", "172.32.0.0", "192.169.0.1", "223.255.255.255",
        "2606:4700:4700::1111", "2a00:1450:4001::200e", "::ffff:8.8.8.8",
        "64:ff9b::808:808", "2002:808:808::1", "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
    ],
)  # fmt: skip
def test_public(text: str) -> None:
    assert is_public_address(ip_address(text))


def test_zone_ids_and_metadata_set() -> None:
    assert not is_public_address(IPv6Address("fe80::1%eth0"))
    assert not is_public_address(IPv6Address("fd00:ec2::254%eth0"))
    assert all(not is_public_address(ip) for ip in CLOUD_METADATA_ADDRESSES)


# Ranges refused on purpose although Python's `is_global` may call them global.
_STRICTER = (IPv4Network("192.0.0.0/24"), IPv4Network("192.88.99.0/24"))


@given(ipv4s)
def test_ipv4_agrees_with_is_global(ip: IPv4Address) -> None:
    if is_public_address(ip):
        assert ip.is_global
    elif ip.is_global and not ip.is_multicast and ip not in CLOUD_METADATA_ADDRESSES:
        assert any(ip in net for net in _STRICTER), ip


@given(ipv4s)
def test_carried_ipv4_is_judged_as_itself(ip: IPv4Address) -> None:
    v4, expected = int(ip), is_public_address(ip)
    carriers = [
        (0xFFFF << 32) | v4,  # mapped
        v4,  # compatible
        (0x64FF9B << 96) | v4,  # NAT64
        (0x2002 << 112) | (v4 << 80) | 1,  # 6to4
        # Teredo: a public relay server, the client stored bit-inverted
        (0x2001_0000 << 96) | (int(PUBLIC_V4) << 64) | (v4 ^ 0xFFFF_FFFF),
    ]
    for carrier in carriers:
        assert is_public_address(IPv6Address(carrier)) is expected, IPv6Address(carrier)


@given(ipv6s)
def test_only_global_unicast_or_carriers_are_public(ip: IPv6Address) -> None:
    carries_v4 = ip.ipv4_mapped is not None or (int(ip) >> 32) in (0, 0xFFFF_0000, 0x64FF9B << 64)
    if is_public_address(ip) and not carries_v4:
        assert int(ip) >> 125 == 0b001  # 2000::/3


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("0X7F000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"), ("0x7f.0.0.1", "127.0.0.1"), ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"), ("0x7f.1", "127.0.0.1"), ("017700000001", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"), ("0", "0.0.0.0"), ("0x", "0.0.0.0"),
        ("169.16689662", "169.254.169.254"), ("8.8.8.8", "8.8.8.8"),
        ("[::1]", "::1"), ("::ffff:127.0.0.1", "::ffff:7f00:1"), ("[::127.0.0.1]", "::7f00:1"),
        ("fe80::1%eth0", "fe80::1"), ("[fe80::1%25eth0]", "fe80::1"),
        ("example.com", None), ("EXAMPLE.com.", None), ("localhost", None),
        ("127.0.0.1.nip.io", None), ("my_host-1.internal", None), ("xn--e1afmkfd.xn--p1ai", None),
    ],
)  # fmt: skip
def test_host_literals(host: str, expected: str | None) -> None:
    found = host_address(host)
    assert found == (None if expected is None else ip_address(expected))


@pytest.mark.parametrize(
    "host",
    [
        "1.2.3.256", "256.1", "1.2.3.4.5", "08.0.0.1", "0x1g.0.0.1", "1.2.65536",
        "4294967296", "", "a..b", "-a.com", "%31%32%37.0.0.1", "ex ample.com", "a/b",
        "127.0.0.1 evil", "::zz", "[::1", "cdn.0x7f", "a" * 64 + ".com",
    ],
)  # fmt: skip
def test_invalid_hosts(host: str) -> None:
    with pytest.raises(ValueError):
        host_address(host)


@st.composite
def ipv4_spellings(draw: st.DrawFn) -> tuple[str, IPv4Address]:
    """An IPv4 address in one of inet_aton's forms: 1 to 4 parts, each dec, oct or hex."""
    value = draw(st.integers(min_value=0, max_value=2**32 - 1))
    count = draw(st.integers(min_value=1, max_value=4))
    octets = list(value.to_bytes(4, "big"))
    numbers = [*octets[: count - 1], int.from_bytes(bytes(octets[count - 1 :]), "big")]
    parts = []
    for number in numbers:
        style = draw(st.sampled_from(["dec", "oct", "hex"]))
        parts.append({"dec": str(number), "oct": f"0{number:o}", "hex": f"0x{number:x}"}[style])
    return ".".join(parts), IPv4Address(value)


@given(ipv4_spellings())
def test_ipv4_spellings_match_inet_aton(case: tuple[str, IPv4Address]) -> None:
    spelling, ip = case
    assert host_address(spelling) == ip
    assert IPv4Address(socket.inet_aton(spelling)) == ip  # the C library reads it the same


def test_allowlist_hosts_and_ports() -> None:
    allow = HostAllowlist(
        ["10.0.0.5:8000", "Models.Internal", "[::1]:9000", " 127.0.0.1:8080 ", "пример.рф"]
    )
    assert allow.permits("10.0.0.5", 8000)
    assert not allow.permits("10.0.0.5", 80)
    assert allow.permits("models.internal", 80) and allow.permits("models.internal.", 1234)
    assert allow.permits("::1", 9000) and not allow.permits("::1", 80)
    assert allow.permits("127.0.0.1", 8080)
    assert not allow.permits("2130706433", 8080)  # only the spelling the operator wrote
    assert allow.permits("xn--e1afmkfd.xn--p1ai", 443)
    assert not allow.permits("example.com", 80)


@pytest.mark.parametrize(
    "entry", ["", "http://host", "host/path", "user@host", "host:port", "a b", "host?x", "[::1"]
)
def test_allowlist_rejects_what_is_no_host(entry: str) -> None:
    with pytest.raises(ConfigError, match=r"allowed_hosts\[1\]"):
        HostAllowlist(["ok.internal", entry])
