"""Custom hosts checked before any connection: a table of URLs, no network.

Every case here returns or raises without a socket: the public literal is allowed
without being dialled, and names are left to the guarded transport (tests/test_transport.py).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from prismgate.custom_hosts import CustomHost, check_custom_host
from prismgate.errors import BadRequestError, PermissionDeniedError
from prismgate.media.addresses import HostAllowlist

PARAM = "x-portkey-custom-host"
NONE = HostAllowlist([])


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any attempt to open a connection or resolve a name during the check."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("check_custom_host touched the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://files.example/v1",
        "gopher://93.184.215.14/",
        "https:///v1",
        "not a url",
        "",
        "http://a b/v1",
        "http://h\\x/v1",
        "http://host:99999/v1",
        "http://host:0/v1",
        "http://1.2.3.256/v1",
        "http://bad_label-.example/v1",
        "https://" + "a" * 9000 + ".example/",
    ],
)
def test_malformed_urls_are_bad_requests(url: str, no_sockets: None) -> None:
    with pytest.raises(BadRequestError) as caught:
        check_custom_host(url, NONE, param=PARAM)
    assert caught.value.status_code == 400 and caught.value.param == PARAM
    assert PARAM in caught.value.message


@pytest.mark.parametrize(
    "url", ["https://user:pw@api.example/v1", "https://user@api.example/v1", "http://:pw@h/"]
)
def test_credentials_in_the_url_are_refused(url: str, no_sockets: None) -> None:
    with pytest.raises(BadRequestError, match="user name or password") as caught:
        check_custom_host(url, NONE, param=PARAM)
    assert caught.value.param == PARAM


@pytest.mark.parametrize(
    ("url", "entry"),
    [
        ("http://10.0.0.7/v1", "10.0.0.7:80"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254:443"),
        ("http://[::ffff:127.0.0.1]:8080/v1", "[::ffff:7f00:1]:8080"),
        ("http://0x7f000001/v1", "0x7f000001:80"),
        ("http://2130706433/v1", "2130706433:80"),
        ("http://0177.0.0.1/v1", "0177.0.0.1:80"),
        ("http://127.1:9000/v1", "127.1:9000"),
        ("http://[::1]:8080/v1", "[::1]:8080"),
        ("http://[fe80::1%25eth0]/v1", "[fe80::1%25eth0]:80"),
        ("http://100.64.0.1/v1", "100.64.0.1:80"),
        ("http://224.0.0.1/v1", "224.0.0.1:80"),
        ("http://240.0.0.1/v1", "240.0.0.1:80"),
        ("http://0.0.0.0:8000/v1", "0.0.0.0:8000"),
        ("https://168.63.129.16/", "168.63.129.16:443"),  # Azure wire server, in public space
        ("http://[64:ff9b::a00:7]/v1", "[64:ff9b::a00:7]:80"),  # NAT64 of 10.0.0.7
    ],
)
def test_non_public_literals_are_refused(url: str, entry: str, no_sockets: None) -> None:
    with pytest.raises(PermissionDeniedError) as caught:
        check_custom_host(url, NONE, param=PARAM)
    error = caught.value
    assert error.status_code == 403 and error.param == PARAM
    assert error.code == "address_not_allowed"
    assert f"points at {entry}, a non-public address" in error.message
    assert "general_settings.media.allowed_hosts" in error.message


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/v1",
        "https://93.184.215.14:8443/v1",
        "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/v1",
        "https://api.example.com/v1",  # a name: judged after DNS, by the guarded transport
        "HTTPS://API.EXAMPLE.COM./v1",
    ],
)
def test_public_literals_and_names_pass_without_a_connection(url: str, no_sockets: None) -> None:
    assert check_custom_host(url, NONE, param=PARAM) == CustomHost(url=url, allowlisted=False)


@pytest.mark.parametrize(
    ("url", "entries"),
    [
        ("http://127.0.0.1:8123/v1", ["127.0.0.1:8123"]),
        ("http://127.0.0.1:8123/v1", ["127.0.0.1"]),
        ("http://[::1]:8080/v1", ["[::1]:8080"]),
        ("http://inference.internal:8000/v1", ["inference.internal:8000"]),
        ("https://Inference.Internal./v1", ["inference.internal"]),
        ("http://10.0.0.7/v1", ["10.0.0.7:80"]),
    ],
)
def test_allowlisted_hosts_are_marked(url: str, entries: list[str], no_sockets: None) -> None:
    found = check_custom_host(url, HostAllowlist(entries), param=PARAM)
    assert found == CustomHost(url=url, allowlisted=True)


@pytest.mark.parametrize(
    ("url", "entries"),
    [
        ("http://127.0.0.1:8124/v1", ["127.0.0.1:8123"]),  # another port
        ("http://2130706433:8123/v1", ["127.0.0.1:8123"]),  # another spelling
        ("http://127.0.0.1:8123/v1", ["localhost:8123"]),  # allowlisted names are names
    ],
)
def test_the_allowlist_is_exact(url: str, entries: list[str], no_sockets: None) -> None:
    with pytest.raises(PermissionDeniedError):
        check_custom_host(url, HostAllowlist(entries), param=PARAM)


def test_an_allowlisted_name_is_marked_and_an_unlisted_one_is_not(no_sockets: None) -> None:
    allowlist = HostAllowlist(["inference.internal:8000"])
    url = "http://inference.internal:8001/v1"
    assert not check_custom_host(url, allowlist, param=PARAM).allowlisted


def test_the_param_is_named_in_errors(no_sockets: None) -> None:
    with pytest.raises(PermissionDeniedError) as caught:
        check_custom_host("http://10.0.0.7/", NONE, param="config.custom_host")
    assert caught.value.param == "config.custom_host"
    assert caught.value.message.startswith("config.custom_host points at 10.0.0.7:80")
