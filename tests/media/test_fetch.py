"""The safe fetcher against real loopback HTTP servers, and a matrix of hostile URLs.

Nothing here connects beyond 127.0.0.1: the "public" hosts are names mapped to the test
server and allowlisted, and every hostile URL must be refused before any connection.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from prismgate.config import MediaSettings
from prismgate.errors import BadRequestError, ConfigError
from prismgate.media.fetch import FetchedImage, SafeFetcher, _checking_resolver, _gated_socket
from tests.emulators.images import make_image

PNG = make_image(8, 8, "png")
JPEG = make_image(8, 8, "jpeg")
CAP = 64 * 1024
ADDRESS = "not a public address this gateway fetches from"


@dataclass
class Server:
    """A loopback image server that counts the requests it receives."""

    port: int
    hits: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def count(self, path: str) -> int:
        return self.hits.count(path)


def _app(server: Server) -> web.Application:
    async def record(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
        server.hits.append(request.path)
        server.hosts.append(request.headers.get("Host", ""))
        return await handler(request)

    async def image(request: web.Request) -> web.Response:
        # Declared types that lie: the fetcher must go by the bytes.
        return web.Response(body=PNG, content_type="text/plain")

    async def jpeg(request: web.Request) -> web.Response:
        return web.Response(body=JPEG, content_type="image/png")

    async def text(request: web.Request) -> web.Response:
        return web.Response(body=b"<html>not an image</html>", content_type="image/png")

    async def redirect(request: web.Request) -> web.Response:
        status = int(request.query.get("status", "302"))
        headers = {"Location": request.query["to"]} if "to" in request.query else {}
        return web.Response(status=status, headers=headers)

    async def chain(request: web.Request) -> web.Response:
        left = int(request.match_info["left"])
        if left == 0:
            return web.Response(body=PNG)
        return web.Response(status=307, headers={"Location": f"../chain/{left - 1}"})

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="nope")

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to refuse up front
        await response.prepare(request)
        for _ in range(2 * CAP // 4096 + 1):
            await response.write(PNG[:16] + bytes(4080))
        return response

    async def declared_big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(100 * CAP)})
        await response.prepare(request)
        try:
            await response.write(PNG)
            await asyncio.sleep(5)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(PNG[:16])
        await asyncio.sleep(5)
        return response

    app = web.Application(middlewares=[web.middleware(record)])
    app.router.add_get("/image.png", image)
    app.router.add_get("/photo.png", jpeg)
    app.router.add_get("/text", text)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/chain/{left}", chain)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/big", big)
    app.router.add_get("/declared-big", declared_big)
    app.router.add_get("/slow", slow)
    return app


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[Server]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    found = Server(port=sock.getsockname()[1])
    runner = web.AppRunner(_app(found), shutdown_timeout=0.1)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    yield found
    await runner.cleanup()


class Names:
    """A resolver for tests: a fixed map of names, and a record of every lookup."""

    MAP: dict[str, list[str]] = {
        "images.example": ["127.0.0.1"],
        "loopback.example": ["127.0.0.1"],
        "metadata.example": ["169.254.169.254"],
        "private.example": ["10.0.0.1"],
        "v6-loopback.example": ["::1"],
        "mapped.example": ["::ffff:127.0.0.1"],
        "mixed.example": ["93.184.216.34", "10.0.0.1"],
        "public.example": ["93.184.216.34", "2606:2800:220:1::1946"],
        "odd.example": ["134744072"],
    }

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.MAP:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.MAP[host]


@dataclass
class Rig:
    fetcher: SafeFetcher
    names: Names
    server: Server


def _rig(server: Server, **options: Any) -> Rig:
    names = Names()
    settings = MediaSettings(
        allowed_hosts=(f"127.0.0.1:{server.port}", f"images.example:{server.port}"),
        max_image_bytes=CAP,
    )
    return Rig(SafeFetcher(settings, resolve=names, **options), names, server)


@pytest.fixture
async def rig(server: Server) -> AsyncIterator[Rig]:
    made = _rig(server)
    yield made
    await made.fetcher.aclose()


@pytest.fixture
async def open_port_rig(server: Server) -> AsyncIterator[Rig]:
    """Port checks off for the test server's port: only the address rules stand between
    a hostile URL and a server that is really listening."""
    made = _rig(server, ports=(80, 443, server.port))
    yield made
    await made.fetcher.aclose()


async def _refusal(rig: Rig, url: str, scope: str = "tenant-a") -> BadRequestError:
    started = time.monotonic()
    with pytest.raises(BadRequestError) as caught:
        await rig.fetcher.fetch(url, scope=scope)
    assert time.monotonic() - started < 1.0
    error = caught.value
    assert (error.status_code, error.param, error.code) == (400, "image_url", "invalid_image_url")
    return error


# --- what is fetched ------------------------------------------------------------------


async def test_fetches_and_sniffs_the_bytes(rig: Rig) -> None:
    image = await rig.fetcher.fetch(rig.server.url("/image.png"), scope="a")
    assert image == FetchedImage(PNG, "image/png", rig.server.url("/image.png"))
    photo = await rig.fetcher.fetch(rig.server.url("/photo.png"), scope="a")
    assert (photo.data, photo.media_type) == (JPEG, "image/jpeg")  # not the declared png


async def test_bytes_that_are_no_image_come_back_untyped(rig: Rig) -> None:
    fetched = await rig.fetcher.fetch(rig.server.url("/text"), scope="a")
    assert fetched.media_type is None and fetched.data.startswith(b"<html>")


async def test_an_allowlisted_name_keeps_its_name_in_the_host_header(rig: Rig) -> None:
    url = rig.server.url("/image.png", host="images.example")
    fetched = await rig.fetcher.fetch(url, scope="a")
    assert fetched.data == PNG
    assert rig.server.hosts[-1] == f"images.example:{rig.server.port}"
    assert rig.names.calls == [("images.example", rig.server.port)]


async def test_redirects_are_followed_up_to_three(rig: Rig) -> None:
    fetched = await rig.fetcher.fetch(rig.server.url("/chain/3"), scope="a")
    assert fetched.data == PNG and fetched.url == rig.server.url("/chain/0")
    error = await _refusal(rig, rig.server.url("/chain/4"))
    assert "redirected more than 3 times" in error.message
    assert rig.server.count("/chain/0") == 1  # the fourth redirect was not followed


async def test_redirect_to_an_allowlisted_name(rig: Rig) -> None:
    target = rig.server.url("/image.png", host="images.example")
    fetched = await rig.fetcher.fetch(rig.server.url(f"/redirect?to={quote(target)}"), scope="a")
    assert fetched.url == target and fetched.data == PNG


# --- hostile URLs, refused before any connection ------------------------------------

ADDRESS_URLS = [
    "http://127.0.0.1/", "http://127.0.0.1:443/", "https://127.0.0.1/", "http://10.0.0.1/",
    "http://172.16.0.1/", "http://192.168.1.1/", "http://100.64.0.1/", "http://169.254.1.1/",
    "http://224.0.0.1/", "http://240.0.0.1/", "http://255.255.255.255/", "http://0.0.0.0/",
    "http://0.1.2.3/", "http://198.18.0.1/", "http://192.0.2.1/", "http://203.0.113.1/",
    # cloud metadata
    "http://169.254.169.254/latest/meta-data/", "http://100.100.100.200/latest/meta-data/",
    "http://168.63.129.16/machine?comp=goalstate", "http://[fd00:ec2::254]/latest/",
    # IPv6
    "http://[::1]/", "http://[::]/", "http://[fc00::1]/", "http://[fe80::1%25eth0]/",
    "http://[ff02::1]/", "http://[2001:db8::1]/",
    # encoded IPv4
    "http://2130706433/", "http://0x7f000001/", "http://0177.0.0.1/", "http://127.1/",
    "http://0x7f.1/", "http://127.0.0.1./", "http://0/", "http://169.16689662/",
    # IPv4 carried in IPv6
    "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "http://[::127.0.0.1]/",
    "http://[2002:7f00:1::]/", "http://[64:ff9b::7f00:1]/", "http://[64:ff9b::a9fe:a9fe]/",
    "http://[64:ff9b:1::a00:1]/", "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
    "https://[::ffff:a9fe:a9fe]/latest/meta-data/",
]  # fmt: skip


@pytest.mark.parametrize("url", ADDRESS_URLS)
async def test_address_literals_are_refused_without_a_lookup(rig: Rig, url: str) -> None:
    error = await _refusal(rig, url)
    assert ADDRESS in error.message
    assert rig.names.calls == []


@pytest.mark.parametrize(
    "host",
    ["loopback.example", "metadata.example", "private.example", "v6-loopback.example",
     "mapped.example", "mixed.example", "nowhere.example"],
)  # fmt: skip
async def test_names_are_judged_by_every_address(rig: Rig, host: str) -> None:
    error = await _refusal(rig, f"http://{host}/image.png")
    assert ADDRESS in error.message  # one message: no oracle for what lies inside
    assert rig.names.calls == [(host, 80)]


@pytest.mark.parametrize(
    # 127.0.0.1 itself is allowlisted on this port; other spellings of it are not.
    "host",
    [
        "localhost",
        "loopback.example",
        "mapped.example",
        "2130706433",
        "127.1",
        "[::ffff:127.0.0.1]",
    ],
)
async def test_a_listening_loopback_server_is_not_reached(open_port_rig: Rig, host: str) -> None:
    rig = open_port_rig
    if host == "localhost":  # the system resolver, not the test's map
        settings = MediaSettings(max_image_bytes=CAP)
        fetcher = SafeFetcher(settings, ports=(80, 443, rig.server.port))
        rig = Rig(fetcher, Names(), rig.server)
    before = rig.server.count("/image.png")
    error = await _refusal(rig, rig.server.url("/image.png", host=host))
    assert ADDRESS in error.message
    assert rig.server.count("/image.png") == before
    await rig.fetcher.aclose()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("file:///etc/passwd", "http or https"), ("ftp://example.com/a.png", "http or https"),
        ("gopher://example.com:70/_GET", "http or https"), ("javascript:alert(1)", "http or https"),
        ("data:image/png;base64,iVBORw0KGgo=", "http or https"),
        ("ws://example.com/", "http or https"),
        ("//example.com/a.png", "http or https"), ("example.com/a.png", "http or https"),
        ("http://user:pass@example.com/a.png", "user name or password"),
        ("http://user@example.com/a.png", "user name or password"),
        ("https://:secret@example.com/a.png", "user name or password"),
        ("http://example.com:22/", "port 22"), ("https://example.com:8443/a.png", "port 8443"),
        ("http://[2606:4700::1111]:6379/", "port 6379"), ("http://", "no host"),
        ("http://1.2.3.256/", "not a valid URL"), ("http://%31%32%37.0.0.1/", "not a valid URL"),
        ("http://exa mple.com/", "not a valid URL"), ("http://a\\@127.0.0.1/", "not a valid URL"),
        ("http://example.com/" + "a" * 9000, "longer than 8192"),
    ],
)  # fmt: skip
async def test_urls_refused_for_their_form(rig: Rig, url: str, says: str) -> None:
    error = await _refusal(rig, url)
    assert says in error.message
    assert rig.names.calls == []


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("http://127.0.0.1/", ADDRESS), ("http://169.254.169.254/latest/meta-data/", ADDRESS),
        ("http://[::1]/", ADDRESS), ("http://10.0.0.1/", ADDRESS), ("http://2130706433/", ADDRESS),
        ("http://loopback.example/", ADDRESS), ("http://metadata.example/", ADDRESS),
        ("file:///etc/passwd", "http or https"), ("gopher://127.0.0.1:6379/_INFO", "http or https"),
        ("http://user:pass@images.example/", "user name or password"),
        ("http://example.com:25/", "port 25"),
    ],
)  # fmt: skip
async def test_redirect_targets_are_checked_again(rig: Rig, target: str, says: str) -> None:
    error = await _refusal(rig, rig.server.url(f"/redirect?to={quote(target, safe='')}"))
    assert says in error.message


async def test_redirect_to_a_listening_loopback_server(open_port_rig: Rig) -> None:
    rig = open_port_rig
    before = rig.server.count("/image.png")
    target = rig.server.url("/image.png", host="loopback.example")
    error = await _refusal(rig, rig.server.url(f"/redirect?to={quote(target)}&status=308"))
    assert ADDRESS in error.message
    assert rig.server.count("/image.png") == before


async def test_redirect_without_location(rig: Rig) -> None:
    error = await _refusal(rig, rig.server.url("/redirect"))
    assert "without saying where" in error.message


# --- limits and failures --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/big", "/declared-big"])
async def test_byte_cap(rig: Rig, path: str) -> None:
    error = await _refusal(rig, rig.server.url(path))
    assert f"larger than the {CAP}-byte limit" in error.message


async def test_total_deadline(server: Server) -> None:
    rig = _rig(server, total_timeout=0.2)
    error = await _refusal(rig, server.url("/slow"))
    assert "did not answer within 0.2 s" in error.message
    await rig.fetcher.aclose()


async def test_upstream_status_without_the_query_string(rig: Rig) -> None:
    error = await _refusal(rig, rig.server.url("/status/404?X-Amz-Signature=s3cr3t-value"))
    assert error.message == "could not fetch the image: the server answered 404"
    error = await _refusal(rig, rig.server.url("/redirect?status=300&to=/image.png"))
    assert "answered 300" in error.message


async def test_nothing_listening(rig: Rig) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = MediaSettings(allowed_hosts=(f"127.0.0.1:{port}",))
    fetcher = SafeFetcher(settings)
    with pytest.raises(BadRequestError, match="could not be reached"):
        await fetcher.fetch(f"http://127.0.0.1:{port}/a.png", scope="a")
    await fetcher.aclose()


# --- the cache --------------------------------------------------------------------------


async def test_cache_is_per_scope(rig: Rig) -> None:
    url = rig.server.url("/image.png") + "?cache=scoped"
    before = rig.server.count("/image.png")
    first = await rig.fetcher.fetch(url, scope="tenant-a")
    assert await rig.fetcher.fetch(url, scope="tenant-a") is first
    assert rig.server.count("/image.png") == before + 1
    await rig.fetcher.fetch(url, scope="tenant-b")
    assert rig.server.count("/image.png") == before + 2


async def test_failures_are_not_cached(rig: Rig) -> None:
    before = rig.server.count("/status/500")
    for _ in range(2):
        await _refusal(rig, rig.server.url("/status/500"))
    assert rig.server.count("/status/500") == before + 2


async def test_cache_bounds(server: Server) -> None:
    rig = _rig(server, cache_entries=1)
    first, second = server.url("/image.png?n=1"), server.url("/image.png?n=2")
    for url in (first, second, first):
        await rig.fetcher.fetch(url, scope="a")
    assert server.hits[-3:] == ["/image.png"] * 3  # the second evicted the first
    small = _rig(server, cache_bytes=len(PNG) - 1)
    for _ in range(2):
        await small.fetcher.fetch(first, scope="a")
    assert server.hits[-5:] == ["/image.png"] * 5  # too large to keep
    expiring = _rig(server, cache_ttl=0.0)
    for _ in range(2):
        await expiring.fetcher.fetch(first, scope="a")
    assert server.hits[-7:] == ["/image.png"] * 7
    for each in (rig, small, expiring):
        await each.fetcher.aclose()


# --- the two checks inside aiohttp, on their own --------------------------------------


async def test_resolver_returns_checked_addresses_under_the_name() -> None:
    names = Names()
    resolver = _checking_resolver(names, check=True)
    found = await resolver.resolve("public.example", 443, socket.AF_UNSPEC)
    assert [(r["hostname"], r["host"], r["family"]) for r in found] == [
        ("public.example", "93.184.216.34", socket.AF_INET),
        ("public.example", "2606:2800:220:1::1946", socket.AF_INET6),
    ]
    odd = await resolver.resolve("odd.example", 80, socket.AF_INET)
    assert odd[0]["host"] == "8.8.8.8"  # dialled in the form that was checked
    for host in ("mixed.example", "mapped.example"):
        with pytest.raises(OSError, match="refused"):
            await resolver.resolve(host, 80, socket.AF_UNSPEC)
    with pytest.raises(OSError):
        await resolver.resolve("public.example", 80, socket.AF_UNIX)  # no address of that kind
    allowlisted = _checking_resolver(names, check=False)
    assert (await allowlisted.resolve("loopback.example", 80))[0]["host"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        (("93.184.216.34", 443), True), (("2606:2800:220:1::1946", 443, 0, 0), True),
        (("127.0.0.1", 80), False), (("::ffff:127.0.0.1", 80, 0, 0), False),
        (("2130706433", 80), False), (("169.254.169.254", 80), False), (("not-an-ip", 80), False),
    ],
)  # fmt: skip
def test_socket_gate(address: tuple[object, ...], allowed: bool) -> None:
    family = socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET
    addr_info = (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)
    if allowed:
        _gated_socket(addr_info).close()  # a socket made, nothing dialled
    else:
        with pytest.raises(OSError, match="refused"):
            _gated_socket(addr_info)


def test_bad_allowlist_fails_at_construction() -> None:
    with pytest.raises(ConfigError, match=r"allowed_hosts\[0\]"):
        SafeFetcher(MediaSettings(allowed_hosts=("http://10.0.0.5:8000/",)))
