"""Upstream HTTP: one aiohttp session per gateway, and errors translated at this boundary.

`HttpTransport.guarded()` gives a second transport, for hosts a caller chose: it dials
only public addresses (the safe fetcher's rules, `media/dialing.py`) or allowlisted hosts.

Every answer is read in chunks as aiohttp inflates it, and counted: an answer larger than
its request's `max_answer_bytes` (what that kind of answer can be) stops being read the
moment it passes the cap (AnswerTooLargeError), so a gzip bomb costs at most the cap. An
error answer is read up to `MAX_ERROR_BODY_BYTES` and cut there: its status is what counts.
Messages name the provider, never its host (an operator finds the host in the debug log).

aiohttp is imported on first use, so `import prismgate` stays fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import quote, urlsplit

import msgspec

from prismgate.errors import (
    AnswerTooLargeError,
    APIConnectionError,
    PermissionDeniedError,
    Timeout,
)
from prismgate.types import InputImage

if TYPE_CHECKING:
    import aiohttp
    import yarl

    from prismgate.media.addresses import HostAllowlist
    from prismgate.media.dialing import Resolve

__all__ = [
    "JSON_ANSWER_BYTES",
    "MAX_ERROR_BODY_BYTES",
    "UPSTREAM_WAIT",
    "HttpTransport",
    "Transport",
    "UpstreamRequest",
    "UpstreamResponse",
    "UpstreamStream",
    "UpstreamWait",
    "answer_cap",
    "image_answer_bytes",
    "multipart_body",
    "retry_after_seconds",
    "with_headers",
]

log = logging.getLogger("prismgate.transport")

DEFAULT_CONNECT_TIMEOUT = 10.0
_MB = 1024 * 1024
# The ceiling over every cap: ten 4K images as base64 fit well inside this.
DEFAULT_MAX_RESPONSE_BYTES = 512 * _MB
# A JSON answer without images (chat, a token, a health probe) is far below this.
JSON_ANSWER_BYTES = 16 * _MB
# One image as base64 in a JSON answer: a 4K PNG is about 25 MB encoded.
_IMAGE_BYTES = 32 * _MB
# An error answer is read up to this and cut there (one provider echoed 1 MB of base64).
MAX_ERROR_BODY_BYTES = 1 * _MB
# aiohttp inflates what it already received without giving the loop a turn: a 1 MB gzip
# bomb in the socket buffer would inflate to the cap in one step. Yield this often.
_YIELD_EVERY_BYTES = 1 * _MB


def image_answer_bytes(images: int) -> int:
    """The most an answer carrying `images` images as base64 can be, with its JSON."""
    return min(DEFAULT_MAX_RESPONSE_BYTES, max(1, images) * _IMAGE_BYTES + _MB)


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
    # The most this kind of answer can be, as inflated (`image_answer_bytes` for images);
    # a streamed answer counts all its chunks against it.
    max_answer_bytes: int = JSON_ANSWER_BYTES


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
        """The (remaining) body of an error answer, cut at `MAX_ERROR_BODY_BYTES`."""
        ...


class Transport(Protocol):
    """Sends requests upstream: whole answers, or streamed ones."""

    async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...

    def stream(self, request: UpstreamRequest) -> AbstractAsyncContextManager[UpstreamStream]: ...


def answer_cap(transport: Transport, max_answer_bytes: int) -> Transport:
    """`transport`, with every request it sends allowed answers up to `max_answer_bytes`:
    for a provider whose requests are built by shared code (images through a chat API)."""
    return _AnswerCap(transport, max_answer_bytes)


@dataclass(frozen=True, slots=True)
class _AnswerCap:
    transport: Transport
    max_answer_bytes: int

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        return await self.transport.send(replace(request, max_answer_bytes=self.max_answer_bytes))

    def stream(self, request: UpstreamRequest) -> AbstractAsyncContextManager[UpstreamStream]:
        return self.transport.stream(replace(request, max_answer_bytes=self.max_answer_bytes))


def with_headers(transport: Transport, headers: Callable[[], Mapping[str, str]]) -> Transport:
    """`transport`, adding to each request the headers `headers()` gives as it is sent (a
    trace context: the span current at that moment). They are added after signing: a
    signature (SigV4) covers only the headers it lists.

    A transport whose `send` and `stream` take them as `added_headers` (this module's; a
    wrapper passing them on) is handed them; another gets a copy of each request."""
    if _takes_added_headers(transport):
        return _WireHeaders(cast("_TakesAddedHeaders", transport), headers)
    return _AddedHeaders(transport, headers)


def _takes_added_headers(transport: Transport) -> bool:
    if isinstance(transport, _AiohttpTransport):
        return True
    try:
        return all(
            "added_headers" in inspect.signature(method).parameters
            for method in (transport.send, transport.stream)
        )
    except (TypeError, ValueError):  # no signature to read
        return False


class _TakesAddedHeaders(Protocol):
    def send(
        self, request: UpstreamRequest, *, added_headers: Mapping[str, str] | None = None
    ) -> Coroutine[Any, Any, UpstreamResponse]: ...

    def stream(
        self, request: UpstreamRequest, *, added_headers: Mapping[str, str] | None = None
    ) -> AbstractAsyncContextManager[UpstreamStream]: ...


@dataclass(frozen=True, slots=True)
class _WireHeaders:
    transport: _TakesAddedHeaders
    headers: Callable[[], Mapping[str, str]]

    # Plain methods returning the transport's coroutine and context manager: no copy of
    # the request (dataclasses.replace cost ~29k instructions a call) and no frame of
    # our own. `headers()` runs as `send` is called, in the caller's context.
    def send(self, request: UpstreamRequest) -> Coroutine[Any, Any, UpstreamResponse]:
        return self.transport.send(request, added_headers=self.headers())

    def stream(self, request: UpstreamRequest) -> AbstractAsyncContextManager[UpstreamStream]:
        return self.transport.stream(request, added_headers=self.headers())


@dataclass(frozen=True, slots=True)
class _AddedHeaders:
    transport: Transport
    headers: Callable[[], Mapping[str, str]]

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        return await self.transport.send(self._with_headers(request))

    def stream(self, request: UpstreamRequest) -> AbstractAsyncContextManager[UpstreamStream]:
        return self.transport.stream(self._with_headers(request))

    def _with_headers(self, request: UpstreamRequest) -> UpstreamRequest:
        return _headers_added(request, self.headers())


def _headers_added(request: UpstreamRequest, added: Mapping[str, str] | None) -> UpstreamRequest:
    if not added:
        return request
    # Field by field: half what dataclasses.replace costs (~14k instructions, ~28k).
    return UpstreamRequest(
        request.method,
        request.url,
        request.provider,
        {**request.headers, **added},
        request.body,
        request.timeout,
        request.connect_timeout,
        request.max_answer_bytes,
    )


class UpstreamWait(msgspec.Struct):
    """How long something (a proxy request: observability/call_tracking.py) waited on
    providers: the time during which at least one of its upstream requests was in
    flight, so that a fan-out's parallel requests count once and a retry's backoff does
    not count. The transport adds to the one in `UPSTREAM_WAIT` as it sends: a context
    variable is the one way to reach the request without threading it through every
    provider, and asyncio copies it into the tasks a request starts."""

    calls: int = 0  # upstream requests sent
    seconds: float = 0.0
    in_flight: int = 0  # upstream requests in flight now
    since: float = 0.0  # when the first of them was sent

    @property
    def upstream(self) -> float | None:
        """Seconds spent waiting on providers; None when nothing was sent upstream (a
        stream still open counts up to now)."""
        if self.calls == 0:
            return None
        if self.in_flight:
            return self.seconds + perf_counter() - self.since
        return self.seconds


# What the upstream requests sent in this context add their time to (None: nothing).
UPSTREAM_WAIT: ContextVar[UpstreamWait | None] = ContextVar("prismgate_upstream", default=None)


class _AiohttpTransport:
    """Sending, streaming and reading over aiohttp; subclasses say which pool a URL uses.
    Each request's time is added to the `UpstreamWait` of its context, if any."""

    def __init__(self, *, max_connections: int, max_response_bytes: int) -> None:
        self._max_connections = max_connections
        self._max_response_bytes = max_response_bytes

    def _session_for(self, url: yarl.URL) -> aiohttp.ClientSession:
        raise NotImplementedError

    async def send(
        self, request: UpstreamRequest, *, added_headers: Mapping[str, str] | None = None
    ) -> UpstreamResponse:
        """Send `request`, with `added_headers` too (`with_headers`); raise Timeout or
        APIConnectionError when the wire fails, and AnswerTooLargeError when the answer
        passes `request.max_answer_bytes`. An error answer's body is cut at
        `MAX_ERROR_BODY_BYTES`."""
        async with self._opened(request, added_headers) as response:
            if response.status >= 400:
                body = await _read_error(response)
            else:
                body = await _read_capped(response, request.provider, self._cap(request))
            headers = {k.lower(): v for k, v in response.headers.items()}
            return UpstreamResponse(status=response.status, headers=headers, body=body)

    @contextlib.asynccontextmanager
    async def stream(
        self, request: UpstreamRequest, *, added_headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[UpstreamStream]:
        """Open `request` (with `added_headers` too) and hand over its answer to be read as
        it arrives. Leaving the block closes the upstream connection (a caller that went
        away cancels it)."""
        async with self._opened(request, added_headers) as response:
            yield _AiohttpStream(response, request.provider, self._cap(request))

    def _cap(self, request: UpstreamRequest) -> int:
        return min(request.max_answer_bytes, self._max_response_bytes)

    @contextlib.asynccontextmanager
    async def _opened(
        self, request: UpstreamRequest, added_headers: Mapping[str, str] | None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        # Failures while connecting or reading the answer surface here, translated.
        import aiohttp

        headers = {**request.headers, **added_headers} if added_headers else request.headers
        url = _wire_url(request.url)
        session = self._session_for(url)
        # host[:port], never a `user:pass@` part: for the debug log and a refusal.
        host = urlsplit(request.url).netloc.rpartition("@")[2]
        timeout = aiohttp.ClientTimeout(total=request.timeout, sock_connect=request.connect_timeout)
        # The context's wait, counted inline (this runs for every upstream request): from
        # here until the answer is read, or a stream's block is left.
        wait = UPSTREAM_WAIT.get()
        if wait is not None:
            if wait.in_flight == 0:
                wait.since = perf_counter()
            wait.in_flight += 1
            wait.calls += 1
        try:
            with _translated(request.provider, host, request.timeout):
                async with session.request(
                    request.method,
                    url,
                    headers=headers,
                    data=request.body,
                    timeout=timeout,
                    allow_redirects=False,
                ) as response:
                    yield response
        finally:
            if wait is not None:
                wait.in_flight -= 1
                if wait.in_flight == 0:
                    wait.seconds += perf_counter() - wait.since


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


def _too_large(provider: str, status: int, size: str, limit: int) -> AnswerTooLargeError:
    return AnswerTooLargeError(
        f"{provider} answered {status} with {size} bytes, over the {limit}-byte limit for "
        "this kind of answer; the answer was dropped and the call is not retried",
        provider=provider,
        upstream_status=status,
        # A success status: the provider may have served (and billed) the call.
        request_sent=status < 400,
    )


async def _read_capped(response: aiohttp.ClientResponse, provider: str, limit: int) -> bytes:
    """The whole body, as inflated; AnswerTooLargeError the moment it passes `limit`."""
    # A Content-Length counts the body as sent: compressed, it may exceed what it inflates to.
    plain = response.headers.get("Content-Encoding", "identity").lower() == "identity"
    if plain and response.content_length is not None and response.content_length > limit:
        response.close()
        raise _too_large(provider, response.status, str(response.content_length), limit)
    chunks: list[bytes] = []
    size = 0
    # Chunks as they arrived: no re-slicing of multi-megabyte image answers.
    async for chunk in _paced(response):
        size += len(chunk)
        if size > limit:
            response.close()  # the rest is never read, nor inflated
            raise _too_large(provider, response.status, f"more than {limit}", limit)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _paced(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The body as aiohttp inflates it, giving the event loop a turn every
    `_YIELD_EVERY_BYTES`: buffered compressed data is otherwise inflated in one step."""
    unpaced = 0
    async for chunk in response.content.iter_any():
        yield chunk
        unpaced += len(chunk)
        if unpaced >= _YIELD_EVERY_BYTES:
            unpaced = 0
            await asyncio.sleep(0)


async def _read_error(response: aiohttp.ClientResponse) -> bytes:
    """An error answer's body, cut at MAX_ERROR_BODY_BYTES: past that it is noise."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in _paced(response):
        chunks.append(chunk[: MAX_ERROR_BODY_BYTES - size])
        size += len(chunks[-1])
        if size >= MAX_ERROR_BODY_BYTES:
            response.close()
            break
    return b"".join(chunks)


class _AiohttpStream:
    def __init__(self, response: aiohttp.ClientResponse, provider: str, limit: int) -> None:
        self.status = response.status
        self.headers: Mapping[str, str] = {k.lower(): v for k, v in response.headers.items()}
        self._response = response
        self._provider = provider
        self._limit = limit

    async def chunks(self) -> AsyncIterator[bytes]:
        # Relayed as they come, and counted: a stream is one answer, under one cap.
        size = 0
        async for chunk in _paced(self._response):
            size += len(chunk)
            if size > self._limit:
                self._response.close()
                limit = self._limit
                raise _too_large(self._provider, self.status, f"more than {limit}", limit)
            yield chunk

    async def read(self) -> bytes:
        return await _read_error(self._response)


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
        log.debug("%s at %s: no answer within %g s", provider, host, seconds)
        raise Timeout(
            f"{provider} did not answer within {seconds:g} s",
            provider=provider,
            request_sent=sent,
        ) from exc
    except aiohttp.ClientConnectorError as exc:
        from prismgate.media.dialing import AddressRefused

        if isinstance(exc.os_error, AddressRefused):
            # The guarded transport's rules said no: final, so a 403 and not a retry.
            # The caller chose this host: naming it tells them nothing new.
            raise PermissionDeniedError(
                f"the call to {provider} was refused: {host} resolves to a non-public "
                "address (private, loopback, link-local or reserved), which this gateway "
                "calls only when the operator lists the host or host:port in "
                "general_settings.media.allowed_hosts",
                # The gateway's refusal, not the provider's: nothing to retry or fall back on.
                code="address_not_allowed",
            ) from exc
        log.debug("%s at %s: could not connect: %s", provider, host, exc.os_error)
        raise APIConnectionError(
            f"could not connect to {provider}: {exc.os_error.strerror}",
            provider=provider,
        ) from exc
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
        log.debug("%s at %s: the answer broke off: %s", provider, host, exc)
        raise APIConnectionError(
            f"the connection to {provider} broke before the answer was complete",
            provider=provider,
            request_sent=True,
        ) from exc
    except aiohttp.ClientError as exc:
        log.debug("%s at %s: %r", provider, host, exc)
        raise APIConnectionError(
            f"the call to {provider} failed: {type(exc).__name__}",
            provider=provider,
            request_sent=True,
        ) from exc
