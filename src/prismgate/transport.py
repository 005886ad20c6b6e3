"""Upstream HTTP: one aiohttp session per gateway, and errors translated at this boundary.

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

from prismgate.errors import APIConnectionError, APIError, Timeout
from prismgate.types import InputImage

if TYPE_CHECKING:
    import aiohttp
    import yarl

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


class HttpTransport:
    """The aiohttp transport: a keep-alive pool, created inside the running event loop."""

    def __init__(
        self,
        *,
        max_connections: int = 1000,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._max_connections = max_connections
        self._max_response_bytes = max_response_bytes

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
            # No cookie jar: upstream cookies must never leak from one caller to the next.
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "prismgate"},
            )
        return self._session

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

        session = self._open()
        host = urlsplit(request.url).netloc
        timeout = aiohttp.ClientTimeout(total=request.timeout, sock_connect=request.connect_timeout)
        with _translated(request.provider, host, request.timeout):
            async with session.request(
                request.method,
                _wire_url(request.url),
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

    async def aclose(self) -> None:
        """Close the pool. The transport can be used again afterwards (it reopens)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
            # Let aiohttp finish closing the connections (its documented grace period).
            await asyncio.sleep(0)


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
        raise Timeout(
            f"{provider} did not answer within {seconds:g} s ({host})", provider=provider
        ) from exc
    except aiohttp.ClientConnectorError as exc:
        raise APIConnectionError(
            f"could not connect to {provider} at {host}: {exc.os_error.strerror}",
            provider=provider,
        ) from exc
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
        raise APIConnectionError(
            f"the connection to {provider} at {host} broke before the answer was complete",
            provider=provider,
        ) from exc
    except aiohttp.ClientError as exc:
        raise APIConnectionError(
            f"the call to {provider} at {host} failed: {type(exc).__name__}",
            provider=provider,
        ) from exc
