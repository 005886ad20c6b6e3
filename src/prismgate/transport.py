"""Upstream HTTP: one aiohttp session per gateway, and errors translated at this boundary.

aiohttp is imported on first use, so `import prismgate` stays fast.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from prismgate.errors import APIConnectionError, APIError, Timeout

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "HttpTransport",
    "Transport",
    "UpstreamRequest",
    "UpstreamResponse",
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


class Transport(Protocol):
    """Sends one request upstream. The one method every provider needs."""

    async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...


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
        import aiohttp

        session = self._open()
        host = urlsplit(request.url).netloc
        timeout = aiohttp.ClientTimeout(total=request.timeout, sock_connect=request.connect_timeout)
        try:
            async with session.request(
                request.method,
                request.url,
                headers=dict(request.headers),
                data=request.body,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                body = await self._read(response, request.provider)
                headers = {k.lower(): v for k, v in response.headers.items()}
                return UpstreamResponse(status=response.status, headers=headers, body=body)
        except TimeoutError as exc:
            raise Timeout(
                f"{request.provider} did not answer within {request.timeout:g} s ({host})",
                provider=request.provider,
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise APIConnectionError(
                f"could not connect to {request.provider} at {host}: {exc.os_error.strerror}",
                provider=request.provider,
            ) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise APIConnectionError(
                f"the connection to {request.provider} at {host} broke before the answer was "
                "complete",
                provider=request.provider,
            ) from exc
        except aiohttp.ClientError as exc:
            raise APIConnectionError(
                f"the call to {request.provider} at {host} failed: {type(exc).__name__}",
                provider=request.provider,
            ) from exc

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
