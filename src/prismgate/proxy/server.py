"""The HTTP server under the proxy: uvicorn's httptools protocol, with the deadlines and
the connection cap that uvicorn lacks.

uvicorn (checked on 0.55) closes a kept-alive connection after `timeout_keep_alive`, but
a fresh connection that sends nothing, or its headers or body a byte at a time, is held
as long as the client likes; and `limit_concurrency` answers 503 to new requests instead
of closing idle sockets, so idle clients would lock real ones out. Here each connection
is in one phase with at most one deadline:

    headers  from connect, or the next request's first byte   header deadline
    body     headers done, body arriving                        body deadline (min-rate extended)
    app      the application has the request                    none: not the client's doing
    idle     response sent, waiting for the next request        keep-alive deadline

Connections in `headers` or `idle` are idle for the cap: above it, the one idle longest
is closed. A client that misses a deadline mid-request gets a 408 (OpenAI-shaped) first.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import logging
import os
import resource
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import msgspec
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors import Multiprocess

from prismgate.config import SUPERVISOR_PID_VARIABLE, ServerSettings
from prismgate.errors import RequestTimeoutError

__all__ = [
    "ConnectionGuard",
    "GuardedConfig",
    "GuardedProtocol",
    "PortUnavailable",
    "bind",
    "raise_file_limit",
    "run",
]

logger = logging.getLogger("prismgate.server")

# Descriptors kept for everything a worker opens besides client sockets.
_DESCRIPTOR_SHARE = 2
# uvicorn's exit status when the server could not start (port taken, app failed); a
# supervisor of several workers that never served exits with it too.
_STARTUP_FAILURE = 3


def raise_file_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit (workers inherit it),
    so that the connection cap, not the OS, decides who is turned away. The new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard not in (resource.RLIM_INFINITY, soft):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:  # a sandbox may refuse it
            logger.warning("could not raise the open-file limit to %d: %s", hard, error)
    return soft


class ConnectionGuard:
    """The deadlines and the cap of one server (one worker), and its idle connections,
    longest idle first."""

    def __init__(self, settings: ServerSettings, file_limit: int) -> None:
        self.settings = settings
        self.max_connections = max(
            1, min(settings.max_connections, file_limit // _DESCRIPTOR_SHARE)
        )
        # dict keeps insertion order: re-inserting a connection makes it the newest.
        self._idle: dict[GuardedProtocol, None] = {}
        self._full = False  # said once in the log, not for every connection turned away

    def idle(self, connection: GuardedProtocol) -> None:
        self._idle.pop(connection, None)
        self._idle[connection] = None

    def busy(self, connection: GuardedProtocol) -> None:
        self._idle.pop(connection, None)

    def admit(self, connection: GuardedProtocol, open_connections: int) -> bool:
        """Count `connection` in; close the longest-idle one when over the cap. False when
        every other connection is busy: the new one is the one to close."""
        self.idle(connection)
        if open_connections <= self.max_connections:
            self._full = False
            return True
        oldest = next(iter(self._idle))
        if oldest is connection:
            if not self._full:
                logger.warning(
                    "%d connections, all busy: closing new ones until one is free "
                    "(general_settings.server.max_connections)",
                    open_connections - 1,
                )
                self._full = True
            return False
        self.busy(oldest)
        oldest.close_idle()
        return True


class GuardedConfig(uvicorn.Config):
    """uvicorn's Config with the guard the protocol reads; pickled to each worker."""

    def __init__(self, app: Any, *, guard: ConnectionGuard, **settings: Any) -> None:
        self.guard = guard
        super().__init__(app, http=GuardedProtocol, **settings)


class _Phase(enum.Enum):
    HEADERS = "headers"
    BODY = "body"
    APP = "app"
    IDLE = "idle"


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline per phase and the connection cap."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if not isinstance(config, GuardedConfig):
            raise TypeError("GuardedProtocol needs a GuardedConfig")
        self._guard = config.guard
        self._settings = config.guard.settings
        self._phase = _Phase.HEADERS
        self._deadline: asyncio.TimerHandle | None = None
        self._request_begun = False
        self._body_started = 0.0
        self._body_received = 0

    # Connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._settings.header_timeout_seconds, self._headers_late)
        if not self._guard.admit(self, len(self.connections)):
            self.close_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._guard.busy(self)
        super().connection_lost(exc)

    def close_idle(self) -> None:
        """Close this connection, which has no request in progress."""
        self._disarm()
        if not self.transport.is_closing():
            self.transport.close()

    # Parser callbacks, in the order a request arrives

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase is _Phase.IDLE:
            self._phase = _Phase.HEADERS
            self._arm(self._settings.header_timeout_seconds, self._headers_late)
        self._request_begun = True

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self._phase is _Phase.HEADERS:
            self._guard.busy(self)
            self._phase = _Phase.BODY
            self._body_started = self.loop.time()
            self._body_received = 0
            self._arm(self._settings.body_timeout_seconds, self._body_late)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._body_received += len(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._phase is _Phase.BODY:
            self._phase = _Phase.APP
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing() or not self.cycle.response_complete:
            return  # closing, or a pipelined request has started
        # uvicorn armed its own keep-alive timer (whole seconds); ours replaces it.
        self._unset_keepalive_if_required()
        self._phase = _Phase.IDLE
        self._request_begun = False
        self._guard.idle(self)
        self._arm(self._settings.keep_alive_timeout_seconds, self.close_idle)

    # Deadlines

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        if self._phase is not _Phase.HEADERS:
            return
        if not self._request_begun:
            self.close_idle()  # connected and said nothing: nothing to answer
            return
        seconds = self._settings.header_timeout_seconds
        self._answer_late(f"The request headers did not arrive within {seconds:g} s.")

    def _body_late(self) -> None:
        self._deadline = None
        if self._phase is not _Phase.BODY:
            return
        if self.flow.read_paused:  # the application is not reading: not the client's doing
            self._arm(self._settings.body_timeout_seconds, self._body_late)
            return
        rate = self._settings.body_min_bytes_per_second
        allowed = self._settings.body_timeout_seconds + self._body_received / rate
        remaining = self._body_started + allowed - self.loop.time()
        if remaining > 0:
            self._arm(remaining, self._body_late)
            return
        self._answer_late(
            f"The request body did not arrive within {self._settings.body_timeout_seconds:g} s "
            f"(plus 1 s per {rate} bytes received)."
        )

    def _answer_late(self, what: str) -> None:
        """Answer 408 (unless the application already started answering) and close."""
        error = RequestTimeoutError(f"{what} Send the whole request without pausing.")
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            body = msgspec.json.encode(error.wire_body())
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
        if cycle is not None and not cycle.response_complete:
            # The application sees a disconnect and writes nothing more to this socket.
            cycle.disconnected = True
            cycle.message_event.set()
        self.close_idle()


class PortUnavailable(Exception):
    """The address `prismgate serve` was asked to listen on cannot be had; the message is
    one line saying why and what to do."""


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host`:`port` (IPv6 when `host` has a colon), as uvicorn binds
    one, not yet listening. PortUnavailable when the port is taken or not allowed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise PortUnavailable(_why_not(error, host, port)) from None
    sock.set_inheritable(True)
    return sock


def _why_not(error: OSError, host: str, port: int) -> str:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if error.errno == errno.EADDRINUSE:
        why = "the port is in use (another server listens there); stop it, or pick another --port"
    elif error.errno == errno.EACCES:
        why = "permission denied (ports below 1024 need privileges); pick another --port"
    elif error.errno == errno.EADDRNOTAVAIL:
        why = f"this machine has no address {host}; use --host 127.0.0.1, or 0.0.0.0 for all"
    elif isinstance(error, socket.gaierror):
        why = f"{host} is not a known host name ({error.strerror})"
    else:
        why = error.strerror or str(error)
    return f"cannot listen on {where}: {why}"


def run(
    app: str,
    *,
    guard: ConnectionGuard,
    sock: socket.socket,
    workers: int,
    on_ready: Callable[[], None],
    on_worker_exit: Callable[[int], None] | None = None,
    **options: Any,
) -> None:
    """Serve the app factory named by `app` on `sock` (from `bind`) as `uvicorn.run`
    does, with the guarded protocol, in `workers` processes (each one gets its own copy
    of `guard`). `on_ready` is called once the server accepts connections: when its
    application has started (the first worker's, with several); `on_worker_exit(pid)`
    when a worker died and was replaced. SystemExit(3) when it could not start."""
    # No route speaks WebSocket; an upgrade would outlive the phases above.
    config = GuardedConfig(app, guard=guard, workers=workers, ws="none", **options)
    if workers > 1:
        # Workers ask the supervisor to reload them all (POST /config/reload).
        os.environ[SUPERVISOR_PID_VARIABLE] = str(os.getpid())
        supervisor = _AnnouncingSupervisor(
            config, sockets=[sock], on_ready=on_ready, on_worker_exit=on_worker_exit
        )
        supervisor.run()
        if not supervisor.announced:
            raise SystemExit(_STARTUP_FAILURE)
        return
    single = _AnnouncingServer(config, on_ready)
    # uvicorn raises the SIGTERM it shut down for again once done, with the handler it
    # found: this one, so a drained server exits 0, not killed by the signal.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    with contextlib.suppress(KeyboardInterrupt):
        single.run(sockets=[sock])
    if not single.started:
        raise SystemExit(_STARTUP_FAILURE)


def _exit_cleanly(_signal: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


class _AnnouncingServer(uvicorn.Server):
    """uvicorn's server, calling `on_ready` once it listens with its application started."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_ready()


class _AnnouncingSupervisor(Multiprocess):
    """uvicorn's worker supervisor, calling `on_ready` once a worker serves, and
    `on_worker_exit(pid)` for each worker it replaces."""

    def __init__(
        self,
        config: uvicorn.Config,
        sockets: list[socket.socket],
        on_ready: Callable[[], None],
        on_worker_exit: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(config, sockets)
        self._on_ready = on_ready
        self._on_worker_exit = on_worker_exit
        self.announced = False

    def handle_hup(self) -> None:
        """SIGHUP: every worker reloads the config file in place (proxy/reload.py), rather
        than uvicorn's restart of each worker; a worker that refuses it says why."""
        for process in self.processes:
            if process.pid is not None and process.process.is_alive():
                os.kill(process.pid, signal.SIGHUP)

    def keep_subprocess_alive(self) -> None:
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        if self._on_worker_exit is not None:
            for pid in before - {process.pid for process in self.processes}:
                if pid is not None:
                    self._on_worker_exit(pid)

    def init_processes(self) -> None:
        super().init_processes()
        # Signals only queue while waiting (Multiprocess handles them in its loop).
        # `Process.is_ready` came with uvicorn 0.51 (pyproject.toml's minimum).
        while True:
            alive = [process for process in self.processes if process.process.is_alive()]
            # Any worker: the first one made may be the last to start, while callers are
            # answered already by another (a SIGTERM then must not read as a failed start).
            if any(process.is_ready(timeout=0.2) for process in alive):
                self.announced = True
                self._on_ready()
                return
            if self.signal_queue or not alive:
                return  # asked to stop, or every worker died, before any served
            time.sleep(0.05)
