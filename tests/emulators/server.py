"""What every provider emulator shares: a loopback aiohttp server, request log and fault queue.

A subclass implements :meth:`EmulatorServer._dispatch` (answer one request) and
:meth:`EmulatorServer._status_fault` (the provider's own error body for an
injected status). The base class runs the server in a background thread with its
own event loop, records every request and applies the queued faults:

``status``
    answer ``status`` with the provider's error body (plus Retry-After when given);
``delay``
    sleep ``delay`` seconds, then go on (with any other kind: sleep first, then apply it);
``reset``
    drop the connection with a TCP RST, answering nothing;
``truncate``
    announce the full Content-Length, send half the body and close (a streamed answer
    sends its first events, then closes without its final ones);
``stream_error``
    emulators that stream: send the provider's mid-stream error after the first chunk.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import struct
import threading
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web

JsonObject = dict[str, Any]
FaultKind = Literal["status", "delay", "reset", "truncate", "stream_error"]
FAULT_KINDS: tuple[str, ...] = ("status", "delay", "reset", "truncate", "stream_error")


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the emulator saw it."""

    method: str
    path: str  # percent-decoded, without the query
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    json: JsonObject | None  # the body, when it is a JSON object
    raw: bytes
    raw_path: str = ""  # as sent on the request line: still percent-encoded, with the query


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    status: int | None = None
    retry_after: float | None = None
    delay: float | None = None
    message: str | None = None


class EmulatorServer:
    """Lifecycle, request log and fault queue; see the module docstring."""

    name = "emulator"
    fault_kinds: tuple[str, ...] = ("status", "delay", "reset", "truncate")
    max_body = 64 * 1024 * 1024
    # aiohttp inflates a gzip or deflate request body before a handler sees it; an
    # emulator that checks the encoding itself turns that off.
    auto_decompress = True
    # Set before start(): the emulator answers over TLS with it (https base URL).
    tls: ssl.SSLContext | None = None

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._faults: dict[str, deque[Fault]] = {}  # queue name -> one entry per request
        self._lock = threading.Lock()
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("the emulator is not running; call start() first")
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://127.0.0.1:{self._port}"

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(
            self._build_app(),
            access_log=None,
            shutdown_timeout=0.5,
            auto_decompress=self.auto_decompress,
        )
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.SockSite(runner, sock, ssl_context=self.tls).start())
        except BaseException:
            loop.run_until_complete(runner.cleanup())
            loop.close()
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        self._loop = loop
        self._thread = threading.Thread(
            target=self._serve, args=(loop, runner), name=f"emulator-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop, runner: web.AppRunner) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            # Cancel in-flight handlers (e.g. a long "delay" fault) so stopping is immediate.
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = self._loop = self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ test controls

    def fail_next(
        self,
        kind: FaultKind,
        *,
        times: int = 1,
        status: int | None = None,
        retry_after: float | None = None,
        delay: float | None = None,
        message: str | None = None,
    ) -> None:
        """Fail the next ``times`` requests (after any faults already queued).

        See the module docstring for the kinds. ``message`` replaces the error message of
        a ``status`` or ``stream_error`` fault.
        """
        self._queue_fault("api", kind, times, status, retry_after, delay, message)

    def _queue_fault(
        self,
        queue: str,
        kind: FaultKind,
        times: int,
        status: int | None,
        retry_after: float | None,
        delay: float | None,
        message: str | None,
    ) -> None:
        if kind not in self.fault_kinds:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {self.fault_kinds}")
        if kind == "status" and (status is None or not 100 <= status <= 599):
            raise ValueError("fail_next('status') needs status=<100..599>")
        if status is not None and not 100 <= status <= 599:
            raise ValueError("status must be within 100..599")
        if kind == "delay" and (delay is None or delay < 0):
            raise ValueError("fail_next('delay') needs delay=<seconds>")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            pending = self._faults.setdefault(queue, deque())
            pending.extend([Fault(kind, status, retry_after, delay, message)] * times)

    def reset(self) -> None:
        """Forget recorded requests and pending faults."""
        with self._lock:
            self.requests.clear()
            self._faults.clear()

    def _fault_queue(self, request: web.Request) -> str | None:
        """Which fault queue ``request`` draws from; ``None``: it is never failed."""
        return "api"

    def _take_fault(self, queue: str | None) -> Fault | None:
        with self._lock:
            pending = self._faults.get(queue or "")
            return pending.popleft() if queue is not None and pending else None

    # ------------------------------------------------------------------ subclass hooks

    async def _dispatch(
        self, request: web.Request, raw: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        """Answer one request. A streamed answer applies ``truncate``/``stream_error`` itself."""
        raise NotImplementedError

    def _status_fault(self, request: web.Request, fault: Fault) -> web.Response:
        """The provider's error answer for an injected ``status`` fault."""
        raise NotImplementedError

    async def _on_response_prepare(
        self, request: web.Request, response: web.StreamResponse
    ) -> None:
        """Add per-response headers (request ids)."""

    # ------------------------------------------------------------------ HTTP plumbing

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_response_prepare.append(self._on_response_prepare)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        self.requests.append(
            Received(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers={name.lower(): value for name, value in request.headers.items()},
                json=parsed if isinstance(parsed, dict) else None,
                raw=raw,
                raw_path=request.raw_path,
            )
        )
        fault = self._take_fault(self._fault_queue(request))
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.kind == "reset":
                return abort(request)
            if fault.kind == "status":
                return self._status_fault(request, fault)
        response = await self._dispatch(request, raw, fault)
        if fault is not None and fault.kind == "truncate" and not response.prepared:
            assert isinstance(response, web.Response)
            return await truncate(request, response)
        return response


# ---------------------------------------------------------------------- helpers


def retry_headers(retry_after: float | None, *, with_ms: bool = False) -> dict[str, str]:
    if retry_after is None:
        return {}
    headers = {"Retry-After": f"{retry_after:g}"}
    if with_ms:
        headers["retry-after-ms"] = str(round(retry_after * 1000))
    return headers


def abort(request: web.Request) -> web.Response:
    """Drop the connection with a TCP RST; the returned response is never sent."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response(status=500)


async def truncate(request: web.Request, full: web.Response) -> web.StreamResponse:
    """Send ``full``'s headers with its real Content-Length, but only half its body."""
    body = full.body if isinstance(full.body, bytes) else b""
    response = web.StreamResponse(status=full.status, headers=full.headers)
    response.content_length = max(len(body), 1)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])  # always less than announced
    if request.transport is not None:
        request.transport.close()
    return response


async def start_stream(
    request: web.Request, content_type: str, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """Send a 200 with chunked transfer encoding; write the body with :func:`send`."""
    response = web.StreamResponse(status=200, headers=headers or {})
    response.content_type = content_type
    response.enable_chunked_encoding()
    await response.prepare(request)
    return response


async def send(response: web.StreamResponse, chunk: bytes) -> None:
    await response.write(chunk)
    await asyncio.sleep(0)  # let each chunk leave on its own


def break_stream(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """End a chunked answer without its terminating chunk, as a dropped connection does."""
    if request.transport is not None:
        request.transport.close()
    return response


def sse(payload: JsonObject, event: str | None = None, *, newline: str = "\n") -> bytes:
    """One server-sent event: an optional ``event:`` line, a ``data:`` line, a blank line."""
    head = f"event: {event}{newline}" if event is not None else ""
    data = json.dumps(payload, separators=(",", ":"))
    return f"{head}data: {data}{newline}{newline}".encode()
