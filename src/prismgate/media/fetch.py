"""The safe fetcher: downloads a caller's image URL without letting it reach inside.

Each hop of a fetch (the URL, then each redirect, at most three) is checked before any
connection is made: http or https, no credentials, an allowed port, and a host that is
a public address (`addresses.py`) or a name whose every address is public. Names are
resolved once, by the connector's resolver, which hands the connector only addresses it
checked: the socket goes to a checked address while the URL's name stays in the Host
header and the TLS handshake (SNI and certificate). A gate on socket creation checks the
address once more, whatever path it came by (both in `dialing.py`, shared with the
guarded provider transport). Hosts the operator allowlisted
(`general_settings.media.allowed_hosts`, `host` or `host:port`) skip the address rules.

The body is read under a byte cap and a deadline, and its type is sniffed from its bytes.
Successful fetches are cached per (scope, URL): one caller's fetch never answers another's.

Refusals are 400s that say what to change without describing the inside of the network:
private, loopback, metadata and unresolvable hosts all get the same message. No message
carries the URL, whose query string may hold a signature.

aiohttp is imported on first use, so `import prismgate` stays fast.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prismgate.errors import BadRequestError
from prismgate.media.addresses import HostAllowlist, host_address, is_public_address
from prismgate.media.dialing import AddressRefused as _AddressRefused
from prismgate.media.dialing import Resolve
from prismgate.media.dialing import checking_resolver as _checking_resolver
from prismgate.media.dialing import gated_socket as _gated_socket
from prismgate.media.dialing import system_resolve as _getaddrinfo
from prismgate.media.formats import sniff_image_type

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

    from prismgate.config import MediaSettings

__all__ = ["FetchedImage", "Resolve", "SafeFetcher"]

MAX_URL_LENGTH = 8192
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

_ADDRESS = (
    "the image URL's host is not a public address this gateway fetches from; use a public "
    "https URL or send the image as a data URL"
)
_SCHEME = "the image URL must be an http or https URL; send other images as a data URL"
_CREDENTIALS = (
    "the image URL must not contain a user name or password; use a URL that needs no "
    "login, or send the image as a data URL"
)
_INVALID = "the image URL is not a valid URL"


@dataclass(frozen=True, slots=True)
class FetchedImage:
    """Bytes fetched from an image URL.

    `media_type` is sniffed from the bytes (never the Content-Type or the extension); it
    is None when they are no image format the gateway knows, and the caller decides.
    `url` is where the bytes came from, after redirects; it may hold a signed query.
    """

    data: bytes
    media_type: str | None
    url: str


class _ImageCache:
    """A small LRU of successful fetches, bounded by entries, bytes and age."""

    def __init__(self, *, max_entries: int, max_bytes: int, ttl: float) -> None:
        self._items: OrderedDict[tuple[str, str], tuple[float, FetchedImage]] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._ttl = ttl
        self._bytes = 0

    def get(self, key: tuple[str, str]) -> FetchedImage | None:
        found = self._items.get(key)
        if found is None:
            return None
        if found[0] <= time.monotonic():
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return found[1]

    def put(self, key: tuple[str, str], image: FetchedImage) -> None:
        if self._max_entries <= 0 or len(image.data) > self._max_bytes:
            return
        if key in self._items:
            self._drop(key)
        self._items[key] = (time.monotonic() + self._ttl, image)
        self._bytes += len(image.data)
        while len(self._items) > self._max_entries or self._bytes > self._max_bytes:
            self._drop(next(iter(self._items)))

    def _drop(self, key: tuple[str, str]) -> None:
        _, image = self._items.pop(key)
        self._bytes -= len(image.data)


class SafeFetcher:
    """Fetches image URLs for callers, refusing any that could reach inside the network.

    Built once (per gateway) from `MediaSettings`; sessions open inside the running loop
    on first use. `resolve` replaces DNS (tests map names with it).
    """

    def __init__(
        self,
        settings: MediaSettings,
        *,
        connect_timeout: float = 5.0,
        total_timeout: float = 20.0,
        max_redirects: int = 3,
        ports: Iterable[int] = (80, 443),
        cache_entries: int = 64,
        cache_bytes: int = 64 * 1024 * 1024,
        cache_ttl: float = 300.0,
        resolve: Resolve | None = None,
    ) -> None:
        self._allowlist = HostAllowlist(settings.allowed_hosts)
        self._max_bytes = settings.max_image_bytes
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._max_redirects = max_redirects
        self._ports = frozenset(ports)
        self._cache = _ImageCache(max_entries=cache_entries, max_bytes=cache_bytes, ttl=cache_ttl)
        self._resolve = resolve or _getaddrinfo
        # Two pools: checked addresses only, and the operator's allowlisted hosts.
        self._guarded: aiohttp.ClientSession | None = None
        self._allowlisted: aiohttp.ClientSession | None = None

    async def fetch(self, url: str, *, scope: str, param: str = "image_url") -> FetchedImage:
        """The image at `url`, fetched for the caller identified by `scope` (a tenant or
        key id: cached images are never shared across scopes).

        Raises BadRequestError (400, naming `param`) when the URL is refused or the fetch
        fails: the URL is the caller's, and so is the fix.
        """
        key = (scope, url)
        if (cached := self._cache.get(key)) is not None:
            return cached
        try:
            async with asyncio.timeout(self._total_timeout):
                image = await self._follow(url, param)
        except TimeoutError:
            raise _failure(
                f"could not fetch the image: the server did not answer within "
                f"{self._total_timeout:g} s",
                param,
            ) from None
        self._cache.put(key, image)
        return image

    async def aclose(self) -> None:
        """Close the connection pools. The fetcher can be used again afterwards."""
        for session in (self._guarded, self._allowlisted):
            if session is not None:
                await session.close()
        self._guarded = self._allowlisted = None
        await asyncio.sleep(0)  # let aiohttp finish closing the connections

    async def _follow(self, url: str, param: str) -> FetchedImage:
        from yarl import URL

        if len(url) > MAX_URL_LENGTH:
            raise _failure(f"the image URL is longer than {MAX_URL_LENGTH} characters", param)
        try:
            target = URL(url)
        except (TypeError, ValueError):
            raise _failure(_INVALID, param) from None
        redirects = 0
        while True:
            allowlisted = self._check_hop(target, param)
            async with self._request(target, allowlisted, param) as response:
                if response.status not in _REDIRECTS:
                    if not 200 <= response.status < 300:
                        raise _failure(
                            f"could not fetch the image: the server answered {response.status}",
                            param,
                        )
                    data = await self._read(response, param)
                    return FetchedImage(data, sniff_image_type(data[:16]), str(target))
                location = response.headers.get("Location")
            redirects += 1
            if redirects > self._max_redirects:
                raise _failure(
                    f"the image URL redirected more than {self._max_redirects} times", param
                )
            if not location:
                raise _failure("the image URL redirected without saying where", param)
            try:
                target = target.join(URL(location)).with_fragment(None)
            except (TypeError, ValueError):
                raise _failure("the image URL redirected to an invalid URL", param) from None

    def _check_hop(self, url: URL, param: str) -> bool:
        """Refuse a URL the rules forbid; True when its host is allowlisted."""
        if url.scheme not in ("http", "https"):
            raise _failure(_SCHEME, param)
        if url.raw_user is not None or url.raw_password is not None:
            raise _failure(_CREDENTIALS, param)
        host, port = url.raw_host, url.port
        if not host or port is None:
            raise _failure("the image URL has no host", param)
        if self._allowlist.permits(host, port):
            return True
        if port not in self._ports:
            allowed = ", ".join(str(p) for p in sorted(self._ports))
            raise _failure(
                f"the image URL uses port {port}; images are fetched from ports {allowed} only",
                param,
            )
        try:
            ip = host_address(host)
        except ValueError:
            raise _failure(_INVALID, param) from None
        if ip is not None and not is_public_address(ip):
            raise _failure(_ADDRESS, param)
        return False

    @asynccontextmanager
    async def _request(
        self, url: URL, allowlisted: bool, param: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET `url` without following redirects, with aiohttp's errors translated."""
        import aiohttp

        session = self._session(allowlisted)
        timeout = aiohttp.ClientTimeout(total=None, connect=self._connect_timeout)
        try:
            async with session.get(url, allow_redirects=False, timeout=timeout) as response:
                yield response
        except aiohttp.ClientConnectorDNSError:
            raise _failure(_ADDRESS, param) from None
        except aiohttp.ClientSSLError as exc:
            raise _failure(
                "could not fetch the image: the TLS connection to the server failed", param
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, _AddressRefused):
                raise _failure(_ADDRESS, param) from None
            raise _failure(
                "could not fetch the image: the server could not be reached", param
            ) from exc
        except TimeoutError:
            raise _failure(
                f"could not fetch the image: no connection within {self._connect_timeout:g} s",
                param,
            ) from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
            raise _failure(
                "could not fetch the image: the connection broke before the image was complete",
                param,
            ) from None
        except aiohttp.InvalidURL:
            raise _failure(_INVALID, param) from None  # its text would carry the URL
        except aiohttp.ClientError as exc:
            raise _failure(
                f"could not fetch the image: the server's answer was not valid HTTP "
                f"({type(exc).__name__})",
                param,
            ) from None

    async def _read(self, response: aiohttp.ClientResponse, param: str) -> bytes:
        limit = self._max_bytes
        too_large = f"the image is larger than the {limit}-byte limit"
        if response.content_length is not None and response.content_length > limit:
            raise _failure(too_large, param)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise _failure(too_large, param)
            chunks.append(chunk)
        return b"".join(chunks)

    def _session(self, allowlisted: bool) -> aiohttp.ClientSession:
        import aiohttp

        session = self._allowlisted if allowlisted else self._guarded
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                resolver=_checking_resolver(self._resolve, check=not allowlisted),
                use_dns_cache=False,  # every new connection resolves, and is checked, anew
                socket_factory=None if allowlisted else _gated_socket,
            )
            # No cookies, no proxy from the environment, bytes as sent (no gzip bombs).
            session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=False,
                headers={
                    "User-Agent": "prismgate",
                    "Accept": "image/*",
                    "Accept-Encoding": "identity",
                },
                skip_auto_headers=("User-Agent",),
            )
            if allowlisted:
                self._allowlisted = session
            else:
                self._guarded = session
        return session


def _failure(message: str, param: str) -> BadRequestError:
    return BadRequestError(message, param=param, code="invalid_image_url")
