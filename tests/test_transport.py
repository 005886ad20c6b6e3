from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from prismgate.errors import APIConnectionError, PermissionDeniedError
from prismgate.media.addresses import HostAllowlist
from prismgate.media.dialing import system_resolve
from prismgate.transport import (
    UPSTREAM_WAIT,
    HttpTransport,
    Transport,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamWait,
    retry_after_seconds,
    with_headers,
)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "soon"}, None),
        ({}, None),
        ({"retry-after": "-4"}, 0.0),
    ],
)
def test_retry_after_forms(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(headers) == expected


def test_retry_after_as_http_date() -> None:
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = retry_after_seconds({"retry-after": later})
    assert seconds is not None and 25 <= seconds <= 31


# The guarded transport, against a real loopback server. Nothing here leaves 127.0.0.1:
# every refusal must happen before a byte reaches the server.


@dataclass
class Upstream:
    """A loopback provider stand-in that counts the requests it receives."""

    port: int
    runner: web.AppRunner
    hits: list[str] = field(default_factory=list)

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/v1/images/generations"

    def open_connections(self) -> int:
        server = self.runner.server
        assert server is not None
        return len(server.connections)


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[Upstream]:
    async def answer(request: web.Request) -> web.Response:
        found.hits.append(request.host)
        await asyncio.sleep(float(request.headers.get("x-delay", 0)))
        return web.json_response({"created": 1, "data": []})

    app = web.Application()
    app.router.add_post("/v1/images/generations", answer)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    found = Upstream(port=sock.getsockname()[1], runner=runner)
    await web.SockSite(runner, sock).start()
    yield found
    await runner.cleanup()


def _request(url: str) -> UpstreamRequest:
    return UpstreamRequest("POST", url, provider="custom", body=b"{}", timeout=10.0)


class Lookups:
    """`resolve` for tests: the system resolver, with a record of every lookup."""

    def __init__(self, names: dict[str, list[str]] | None = None) -> None:
        self.names = names or {}
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host in self.names:
            return self.names[host]
        return await system_resolve(host, port)


async def _refused(transport: Transport, url: str) -> PermissionDeniedError:
    with pytest.raises(PermissionDeniedError) as caught:
        await transport.send(_request(url))
    return caught.value


async def test_plain_transport_still_reaches_loopback(upstream: Upstream) -> None:
    transport = HttpTransport()
    try:
        response = await transport.send(_request(upstream.url()))
    finally:
        await transport.aclose()
    assert response.status == 200


async def test_guarded_refuses_a_loopback_literal_at_the_socket_gate(upstream: Upstream) -> None:
    owner = HttpTransport()
    lookups = Lookups()
    guarded = owner.guarded(HostAllowlist([]), resolve=lookups)
    before = len(upstream.hits)
    try:
        error = await _refused(guarded, upstream.url())
        with pytest.raises(PermissionDeniedError):
            async with guarded.stream(_request(upstream.url())):
                pass
    finally:
        await owner.aclose()
    assert error.status_code == 403 and error.code == "address_not_allowed"
    assert f"127.0.0.1:{upstream.port} resolves to a non-public address" in error.message
    assert "general_settings.media.allowed_hosts" in error.message
    # An address literal never reaches the resolver: the socket gate alone refused it.
    assert lookups.asked == []
    assert isinstance(error.__cause__, aiohttp.ClientConnectorError)
    assert not isinstance(error.__cause__, aiohttp.ClientConnectorDNSError)
    assert len(upstream.hits) == before


@pytest.mark.parametrize("entry", ["127.0.0.1:{port}", "127.0.0.1"])
async def test_guarded_reaches_an_allowlisted_host(upstream: Upstream, entry: str) -> None:
    owner = HttpTransport()
    guarded = owner.guarded(HostAllowlist([entry.format(port=upstream.port)]))
    try:
        response = await guarded.send(_request(upstream.url()))
        async with guarded.stream(_request(upstream.url())) as streamed:
            assert streamed.status == 200
            assert b"created" in await streamed.read()
    finally:
        await owner.aclose()
    assert response.status == 200 and b'"data"' in response.body


async def test_allowlisting_another_port_does_not_allow_this_one(upstream: Upstream) -> None:
    owner = HttpTransport()
    other = upstream.port + 1 if upstream.port < 65535 else upstream.port - 1
    guarded = owner.guarded(HostAllowlist([f"127.0.0.1:{other}", "localhost"]))
    try:
        await _refused(guarded, upstream.url())
        # "localhost" allowed on any port does not allow 127.0.0.1: hosts as written.
        response = await guarded.send(_request(upstream.url("localhost")))
    finally:
        await owner.aclose()
    assert response.status == 200


async def test_a_name_resolving_to_loopback_is_refused_at_resolve_time(
    upstream: Upstream,
) -> None:
    owner = HttpTransport()
    lookups = Lookups()
    guarded = owner.guarded(HostAllowlist([]), resolve=lookups)
    before = len(upstream.hits)
    try:
        error = await _refused(guarded, upstream.url("localhost"))
    finally:
        await owner.aclose()
    assert lookups.asked == ["localhost"]
    assert isinstance(error.__cause__, aiohttp.ClientConnectorDNSError)
    assert f"localhost:{upstream.port} resolves to a non-public address" in error.message
    assert len(upstream.hits) == before


@pytest.mark.parametrize(
    "addresses",
    [["93.184.215.14", "127.0.0.1"], ["10.0.0.7"], ["169.254.169.254"], ["::ffff:127.0.0.1"]],
)
async def test_any_non_public_address_of_a_name_refuses_it(
    upstream: Upstream, addresses: list[str]
) -> None:
    owner = HttpTransport()
    guarded = owner.guarded(HostAllowlist([]), resolve=Lookups({"mixed.example": addresses}))
    try:
        error = await _refused(guarded, upstream.url("mixed.example"))
    finally:
        await owner.aclose()
    assert isinstance(error.__cause__, aiohttp.ClientConnectorDNSError)


async def test_an_unresolvable_name_is_a_connection_error_not_a_refusal() -> None:
    owner = HttpTransport()
    guarded = owner.guarded(HostAllowlist([]), resolve=Lookups({"nowhere.example": []}))
    try:
        with pytest.raises(APIConnectionError):
            await guarded.send(_request("http://nowhere.example/v1"))
    finally:
        await owner.aclose()


async def test_the_owner_makes_one_guarded_transport_per_allowlist_and_closes_it(
    upstream: Upstream,
) -> None:
    owner = HttpTransport()
    allowlist = HostAllowlist([f"127.0.0.1:{upstream.port}"])
    guarded = owner.guarded(allowlist)
    assert owner.guarded(allowlist) is guarded
    assert owner.guarded(HostAllowlist([f"127.0.0.1:{upstream.port}"])) is not guarded
    assert (await guarded.send(_request(upstream.url()))).status == 200
    assert upstream.open_connections() == 1  # kept alive by the guarded pool
    await owner.aclose()
    for _ in range(100):
        if upstream.open_connections() == 0:
            break
        await asyncio.sleep(0.01)
    assert upstream.open_connections() == 0
    # Closed, not broken: it reopens, like the plain transport.
    try:
        assert (await guarded.send(_request(upstream.url()))).status == 200
    finally:
        await owner.aclose()


async def test_trace_headers_are_added_to_a_copy_for_a_transport_that_takes_none() -> None:
    seen: list[dict[str, str]] = []

    class Plain:  # a transport that knows nothing of added headers
        async def send(self, request: UpstreamRequest) -> UpstreamResponse:
            seen.append(dict(request.headers))
            return UpstreamResponse(200, {}, b"")

        def stream(self, request: UpstreamRequest) -> Any:
            raise NotImplementedError

    request = UpstreamRequest(method="GET", url="http://upstream.test/", provider="p",
                              headers={"a": "1"})  # fmt: skip
    traced = with_headers(Plain(), lambda: {"traceparent": "t2"})
    await traced.send(request)
    assert seen == [{"a": "1", "traceparent": "t2"}]
    assert request.headers == {"a": "1"}  # the caller's request is never changed


async def test_upstream_requests_add_their_time_to_the_wait_of_their_context(
    upstream: Upstream,
) -> None:
    transport = HttpTransport()
    try:
        await transport.send(_request(upstream.url()))  # nothing to add to: nothing happens
        wait = UpstreamWait()
        token = UPSTREAM_WAIT.set(wait)
        try:
            slow = replace(_request(upstream.url()), headers={"x-delay": "0.2"})
            started = time.perf_counter()
            # In parallel (tasks copy the context, so both add to `wait`): counted once.
            await asyncio.gather(transport.send(slow), transport.send(slow))
            elapsed = time.perf_counter() - started
        finally:
            UPSTREAM_WAIT.reset(token)
        assert (wait.calls, wait.in_flight) == (2, 0)
        assert 0.2 <= wait.seconds <= elapsed
        assert wait.upstream == wait.seconds
        assert UpstreamWait().upstream is None  # nothing sent
    finally:
        await transport.aclose()
