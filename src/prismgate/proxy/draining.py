"""A `prismgate serve` worker's graceful shutdown, from SIGTERM.

uvicorn ends a worker on SIGTERM by closing its listener at once, then waiting for the
connections in flight (up to its `timeout_graceful_shutdown`), then running the app's
lifespan shutdown (which flushes the spend queue). A load balancer
learns nothing until connections are refused. So the worker first marks itself draining,
and `GET /health/readiness` answers 503 from then on, while it keeps serving for
`shutdown_delay_seconds`; only then is uvicorn's own SIGTERM handler called. Calls
still running `drain_seconds` later are cancelled here (their upstream requests with
them), each answered with a 503 that says why when its answer had not begun; uvicorn's
own deadline, a little later, is only a backstop.

The hook goes around the handler uvicorn installed for the worker (the app's lifespan
starts after it), on the event loop, so the delay is an ordinary timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["Drain"]

log = logging.getLogger("prismgate.proxy")

_Handler = Callable[[int, FrameType | None], Any]


class Drain:
    """Whether this worker is shutting down, and the SIGTERM hook that says so."""

    def __init__(self, delay_seconds: float, drain_seconds: float) -> None:
        self.delay_seconds = delay_seconds
        self.drain_seconds = drain_seconds
        self.draining = False
        # Set once the deadline passed: the calls cancelled then were cut by it.
        self.cut = False
        # Each request's work, while it runs (CancelOnDisconnect adds and removes it).
        self.in_flight: set[asyncio.Future[None]] = set()
        self._server_handler: _Handler | None = None

    def install(self) -> None:
        """Put the hook in front of the server's SIGTERM handler (the running loop's
        thread must be the main thread; otherwise there is no handler to go around)."""
        handler = signal.getsignal(signal.SIGTERM)
        if not callable(handler):
            return  # not under a server that handles SIGTERM: nothing to delay
        with contextlib.suppress(RuntimeError, ValueError):  # not the main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._begin)
            self._server_handler = handler

    def uninstall(self) -> None:
        """Give SIGTERM back to the server's handler."""
        handler, self._server_handler = self._server_handler, None
        if handler is None:
            return
        with contextlib.suppress(RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, handler)

    def _begin(self) -> None:
        handler = self._server_handler
        if handler is None:
            return
        if self.draining:  # a second SIGTERM: stop waiting
            handler(signal.SIGTERM, None)
            return
        self.draining = True
        log.warning(
            "SIGTERM: draining; readiness answers 503, calls in flight finish, listening "
            "stops in %g s",
            self.delay_seconds,
        )
        asyncio.get_running_loop().call_later(self.delay_seconds, self._stop_listening)

    def _stop_listening(self) -> None:
        if self._server_handler is not None:
            self._server_handler(signal.SIGTERM, None)
        asyncio.get_running_loop().call_later(self.drain_seconds, self._cut)

    def _cut(self) -> None:
        if not self.in_flight:
            return
        log.warning(
            "drain deadline (%g s): cancelling %d call(s) still in flight",
            self.drain_seconds,
            len(self.in_flight),
        )
        self.cut = True
        for work in list(self.in_flight):
            work.cancel()
