"""Upstream HTTP: one aiohttp session per gateway, and errors translated at this boundary.

`HttpTransport.guarded()` gives a second transport, for hosts a caller chose: it dials
only public addresses (the safe fetcher's rules, `media/dialing.py`) or allowlisted hosts.

aiohttp is imported on first use, so `import prismgate` stays fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote, urlsplit

from prismgate.errors import APIConnectionError, APIError, PermissionDeniedError, Timeout
from prismgate.types import InputImage

if TYPE_CHECKING:
    import aiohttp
    import yarl

    from prismgate.media.addresses import HostAllowlist
    from prismgate.media.dialing import Resolve

__all__ = [
    "HttpTransport",
    "Transport",
    "UpstreamRequest",
    "UpstreamResponse",
    "UpstreamStream",
    "multipart_body",
    "retry_after_seconds",
]

DEFAULT_CONNECT_TIMEOUT = 10.0
# Ten 4K images as base64 fit well inside this; anything larger is not an image answer.
DEFAULT_MAX_RESPONSE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One call to a provider, fully built and signed."""

    method: str
    url: str
    provider: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    timeout: float = 600.0
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """A provider's answer, read whole. Header names are lower-case."""

    status: int
    headers: Mapping[str, str]
    body: bytes


async def multipart_body(
    fields: Sequence[tuple[str, str | InputImage]],
) -> tuple[bytes, str]:
    """A `multipart/form-data` body and its Content-Type (with the boundary), from
    `(name, value)` pairs in order; an `InputImage` becomes a file part. A name may repeat
    (`image[]`)."""
    import aiohttp

    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in fields:
        if isinstance(value, InputImage):
            extension = value.media_type.rpartition("/")[2]
            form.add_field(
                name,
                value.data,
                filename=value.filename or f"image.{extension}",
                content_type=value.media_type,
            )
        else:
            form.add_field(name, value)
    payload = form()
    return await payload.as_bytes(), payload.content_type


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """A provider's wait hint in seconds: `retry-after-ms`, or `Retry-After` as seconds
    or as an HTTP date. None when absent or unreadable."""
    if (millis := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


class UpstreamStream(Protocol):
    """A provider's answer whose body is read as it arrives."""

    status: int
    headers: Mapping[str, str]

    def chunks(self) -> AsyncIterator[bytes]:
        """The body, piece by piece."""
        ...

    async def read(self) -> bytes:
        """The whole (remaining) body: for error answers."""
        ...


class Transport(Protocol):
    """Sends requests upstream: whole answers, or streamed ones."""

    async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...

    def stream(self, request: UpstreamRequest) -> AbstractAsyncContextManager[UpstreamStream]: ...


class _AiohttpTransport:
    """Sending, streaming and reading over aiohttp; subclasses say which pool a URL uses."""

    def __init__(self, *, max_connections: int, max_response_bytes: int) -> None:
        self._max_connections = max_connections
        self._max_response_bytes = max_response_bytes

    def _session_for(self, url: yarl.URL) -> aiohttp.ClientSession:
        raise NotImplementedError

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Send `request`; raise Timeout or APIConnectionError when the wire fails."""
        async with self._opened(request) as response:
            body = await self._read(response, request.provider)
            headers = {k.lower(): v for k, v in response.headers.items()}
            return UpstreamResponse(status=response.status, headers=headers, body=body)

    @contextlib.asynccontextmanager
    async def stream(self, request: UpstreamRequest) -> AsyncIterator[UpstreamStream]:
        """Open `request` and hand over its answer to be read as it arrives. Leaving the
        block closes the upstream connection (a caller that went away cancels it)."""
        async with self._opened(request) as response:
            yield _AiohttpStream(response)

    @contextlib.asynccontextmanager
    async def _opened(self, request: UpstreamRequest) -> AsyncIterator[aiohttp.ClientResponse]:
        # Failures while connecting or reading the answer surface here, translated.
        import aiohttp

        url = _wire_url(request.url)
        session = self._session_for(url)
        host = urlsplit(request.url).netloc
        timeout = aiohttp.ClientTimeout(total=request.timeout, sock_connect=request.connect_timeout)
        with _translated(request.provider, host, request.timeout):
            async with session.request(
                request.method,
                url,
                headers=dict(request.headers),
                data=request.body,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                yield response

    async def _read(self, response: aiohttp.ClientResponse, provider: str) -> bytes:
        limit = self._max_response_bytes
        if response.content_length is not None and response.content_length > limit:
            raise APIError(
                f"{provider} answered with {response.content_length} bytes, over the "
                f"{limit}-byte limit",
                provider=provider,
                upstream_status=response.status,
            )
        chunks: list[bytes] = []
        size = 0
        # Chunks as they arrived: no re-slicing of multi-megabyte image answers.
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise APIError(
                    f"{provider} answered with more than {limit} bytes",
                    provider=provider,
                    upstream_status=response.status,
                )
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class HttpTransport(_AiohttpTransport):
    """The aiohttp transport: a keep-alive pool, created inside the running event loop."""

    def __init__(
        self,
        *,
        max_connections: int = 1000,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        super().__init__(max_connections=max_connections, max_response_bytes=max_response_bytes)
        self._session: aiohttp.ClientSession | None = None
        self._guards: list[_GuardedTransport] = []

    def guarded(self, allowed_hosts: HostAllowlist, *, resolve: Resolve | None = None) -> Transport:
        """A transport for caller-chosen hosts (custom hosts): it dials only public
        addresses, checked after DNS and again on the socket about to connect, unless the
        URL's `host` or `host:port` is in `allowed_hosts`. A refused address raises
        PermissionDeniedError (403), which is final: not a reason to retry.

        Its pools are its own; this transport owns it and closes it in `aclose()`. Asking
        again with the same `allowed_hosts` (and `resolve`) returns the same transport.
        `resolve` replaces DNS (tests map names with it).
        """
        for guard in self._guards:
            if guard.allowlist is allowed_hosts and guard.resolve is resolve:
                return guard
        guard = _GuardedTransport(
            allowed_hosts,
            resolve,
            max_connections=self._max_connections,
            max_response_bytes=self._max_response_bytes,
        )
        self._guards.append(guard)
        return guard

    def _session_for(self, url: yarl.URL) -> aiohttp.ClientSession:
        return self._open()

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
            self._session = _new_session(connector)
        return self._session

    async def aclose(self) -> None:
        """Close the pool, and those of the guarded transports made from this one. The
        transports can be used again afterwards (they reopen)."""
        for guard in self._guards:
            await guard.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None
            # Let aiohttp finish closing the connections (its documented grace period).
            await asyncio.sleep(0)


class _GuardedTransport(_AiohttpTransport):
    """Two pools, as the safe fetcher has: one that dials checked public addresses only,
    and one for the operator's allowlisted hosts, which skip the address rules."""

    def __init__(
        self,
        allowlist: HostAllowlist,
        resolve: Resolve | None,
        *,
        max_connections: int,
        max_response_bytes: int,
    ) -> None:
        super().__init__(max_connections=max_connections, max_response_bytes=max_response_bytes)
        self.allowlist = allowlist
        self.resolve = resolve
        self._checked: aiohttp.ClientSession | None = None
        self._allowlisted: aiohttp.ClientSession | None = None

    def _session_for(self, url: yarl.URL) -> aiohttp.ClientSession:
        import aiohttp

        from prismgate.media.dialing import checking_resolver, gated_socket, system_resolve

        host, port = url.raw_host, url.port
        allowlisted = bool(host and port is not None and self.allowlist.permits(host, port))
        session = self._allowlisted if allowlisted else self._checked
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                resolver=checking_resolver(self.resolve or system_resolve, check=not allowlisted),
                use_dns_cache=False,  # every new connection resolves, and is checked, anew
                # Address literals skip the resolver: this gate is what checks them.
                socket_factory=None if allowlisted else gated_socket,
            )
            session = _new_session(connector)
            if allowlisted:
                self._allowlisted = session
            else:
                self._checked = session
        return session

    async def aclose(self) -> None:
        for session in (self._checked, self._allowlisted):
            if session is not None:
                await session.close()
        if self._checked is not None or self._allowlisted is not None:
            self._checked = self._allowlisted = None
            await asyncio.sleep(0)  # let aiohttp finish closing the connections


def _new_session(connector: aiohttp.TCPConnector) -> aiohttp.ClientSession:
    import aiohttp

    # No cookie jar: upstream cookies must never leak from one caller to the next.
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
        headers={"User-Agent": "prismgate"},
    )


# Characters a URL may carry as they are; "%" keeps existing escapes as they were written.
_URL_SAFE = "%:/?#[]@!$&'()*+,;=~"


def _wire_url(url: str) -> yarl.URL:
    """`url` as it goes on the wire: its percent-escapes kept byte for byte, since a
    signature may cover them (SigV4 signs Bedrock's `%3A` in model ids, which yarl would
    otherwise decode to `:`); characters a URL cannot carry (spaces, quotes) escaped."""
    from yarl import URL

    if not url.isascii():  # an internationalised host: let yarl apply IDNA as before
        return URL(url)
    return URL(quote(url, safe=_URL_SAFE), encoded=True)


class _AiohttpStream:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.status = response.status
        self.headers: Mapping[str, str] = {k.lower(): v for k, v in response.headers.items()}
        self._response = response

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.content.iter_any():
            yield chunk

    async def read(self) -> bytes:
        return await self._response.read()


@contextlib.contextmanager
def _translated(provider: str, host: str, seconds: float) -> Iterator[None]:
    """aiohttp's failures, translated at this boundary into the gateway's errors."""
    import aiohttp

    try:
        yield
    except TimeoutError as exc:
        # Only a connect timeout proves the request never left: any other may have been
        # received (and billed) upstream.
        sent = not isinstance(exc, aiohttp.ConnectionTimeoutError)
        raise Timeout(
            f"{provider} did not answer within {seconds:g} s ({host})",
            provider=provider,
            request_sent=sent,
        ) from exc
    except aiohttp.ClientConnectorError as exc:
        from prismgate.media.dialing import AddressRefused

        if isinstance(exc.os_error, AddressRefused):
            # The guarded transport's rules said no: final, so a 403 and not a retry.
            raise PermissionDeniedError(
                f"the call to {provider} was refused: {host} resolves to a non-public "
                "address (private, loopback, link-local or reserved), which this gateway "
                "calls only when the operator lists the host or host:port in "
                "general_settings.media.allowed_hosts",
                # The gateway's refusal, not the provider's: nothing to retry or fall back on.
                code="address_not_allowed",
            ) from exc
        raise APIConnectionError(
            f"could not connect to {provider} at {host}: {exc.os_error.strerror}",
            provider=provider,
        ) from exc
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
        raise APIConnectionError(
            f"the connection to {provider} at {host} broke before the answer was complete",
            provider=provider,
            request_sent=True,
        ) from exc
    except aiohttp.ClientError as exc:
        raise APIConnectionError(
            f"the call to {provider} at {host} failed: {type(exc).__name__}",
            provider=provider,
            request_sent=True,
        ) from exc
