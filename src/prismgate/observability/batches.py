"""What the gateway POSTs to an operator's endpoint off the request path, in batches: a
webhook's call records (callbacks.py) and OpenTelemetry spans (span_export.py).

`BatchPoster.add` queues an item and returns: no I/O, no thread, no lock; the queue is
sent by a task of its own on the event loop, a batch when `batch_size` items are queued
or `flush_interval` has passed. Encoding a batch and POSTing it happen there, between
requests (a thread would hold the same GIL and make the loop wait for it at each switch,
which cost the span exporter more than its own work).

A batch the endpoint fails (no answer, a timeout, or a status that says to try again) is
sent again after a backoff that doubles up to `max_backoff` (or the endpoint's
`Retry-After`, when it says more); items queue meanwhile up to `max_queued`, and past it
are dropped, counted and logged. A batch it refuses (any other 3xx or 4xx) is dropped and
logged: sending it again cannot help. Logs name the poster (`name`), never its URL or
headers: either may hold a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import ssl
import zlib
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

from prismgate.transport import retry_after_seconds

if TYPE_CHECKING:
    import aiohttp

__all__ = ["BatchPoster", "compressor"]

T = TypeVar("T")

log = logging.getLogger("prismgate.batches")

# A failing endpoint is tried again after the flush interval, doubled each time, up to this.
MAX_BACKOFF = 60.0
# Bodies at least this big are compressed in a worker thread (zlib lets go of the GIL):
# ~1 ms of the loop for 128 KiB, which a small body does not cost.
_COMPRESS_OFF_LOOP = 64 * 1024


class _Sent(enum.Enum):
    OK = "ok"
    LATER = "later"  # no answer, or one that says to try again
    REFUSED = "refused"  # an answer that says this batch will never be taken


class BatchPoster(Generic[T]):
    """Items POSTed to `endpoint` in batches, `encode`d to a body (see the module
    docstring). `retry_statuses`: the 4xx statuses after which a batch is sent again (a
    5xx always is). `compress`: a body encoder (`compressor`) and its Content-Encoding.
    `what` names the items in logs ("records", "spans"), written to `logger`."""

    def __init__(
        self,
        name: str,
        endpoint: str,
        encode: Callable[[Sequence[T]], bytes],
        *,
        headers: Mapping[str, str],
        what: str = "records",
        batch_size: int = 100,
        flush_interval: float = 5.0,
        max_queued: int = 10_000,
        timeout: float = 10.0,
        max_backoff: float = MAX_BACKOFF,
        close_timeout: float = 5.0,
        retry_statuses: Collection[int] = frozenset({408, 425, 429}),
        compress: tuple[Callable[[bytes], bytes], str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        logger: logging.Logger = log,
    ) -> None:
        self.name = name
        self._log = logger
        self._endpoint = endpoint
        self._encode = encode
        self._headers = dict(headers)
        if compress is not None:
            self._headers["Content-Encoding"] = compress[1]
        self._compress = None if compress is None else compress[0]
        self._what = what
        self._batch_size = batch_size
        self._interval = flush_interval
        self._max_queued = max_queued
        self._timeout = timeout
        self._max_backoff = max_backoff
        self._close_timeout = close_timeout
        self._retry_statuses = frozenset(retry_statuses)
        self._ssl: ssl.SSLContext | bool = True if ssl_context is None else ssl_context
        self._queue: deque[T] = deque()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._retry_after = 0.0  # seconds the endpoint asked to wait, at its last failure
        self.sent = 0
        self.dropped = 0
        self._dropped_in_outage = 0
        self._outage = False

    @property
    def queued(self) -> int:
        """Items waiting to be sent."""
        return len(self._queue)

    def add(self, item: T) -> None:
        """Queue `item` (never blocks); a full queue drops it, counted and logged."""
        queue = self._queue
        if len(queue) >= self._max_queued:
            self._drop(1, "the queue is full")
            return
        queue.append(item)
        if self._sender is None:
            self._start()
        if len(queue) >= self._batch_size:
            self._wake.set()

    def _start(self) -> None:
        if self._stopping.is_set():
            return  # closing: aclose() sends what is queued
        self._sender = asyncio.get_running_loop().create_task(self._send_periodically())
        self._sender.add_done_callback(self._stopped)

    def _stopped(self, sender: asyncio.Task[None]) -> None:
        if self._sender is sender:
            self._sender = None  # the next item starts another (the loop that ran it closed)
        if not sender.cancelled() and (failure := sender.exception()) is not None:
            # Its type only: a message may quote the endpoint, which may hold a token.
            self._log.error(
                "%s: the sender stopped (%s); the next item starts another",
                self.name,
                type(failure).__name__,
            )
            self._log.debug("%s: the sender's traceback", self.name, exc_info=failure)

    async def aclose(self) -> None:
        """Stop the sender and send what is queued (within `close_timeout`); what cannot
        be sent is counted as dropped, and logged."""
        self._stopping.set()
        self._wake.set()
        sender, self._sender = self._sender, None
        if sender is not None:
            with contextlib.suppress(TimeoutError):
                # A batch under way is let finish; a backoff wait is cut short.
                await asyncio.wait_for(asyncio.shield(sender), self._close_timeout)
            if not sender.done():
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
        try:
            if self._queue:
                await asyncio.wait_for(self._send_queue(), self._close_timeout)
        except TimeoutError:
            pass
        finally:
            if self._queue:
                self._drop(len(self._queue), "the gateway stopped before the endpoint took them")
                self._queue.clear()
            if self._session is not None:
                await self._session.close()
                self._session = None

    async def _send_periodically(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            everything = await self._pause(failures)
            if self._stopping.is_set():
                return  # aclose() sends what is left
            if self._queue:
                failures = 0 if await self._send_queue(everything) else failures + 1

    async def _pause(self, failures: int) -> bool:
        """The flush interval, cut short by a full batch; while the endpoint fails, the
        backoff (or what its Retry-After asked for), cut short only by aclose(). True when
        everything queued is to be sent (the interval passed, or a try again); False when
        a full batch cut it short: full batches only, the rest waits for more."""
        if failures:
            backoff = min(self._interval * 2 ** (failures - 1), self._max_backoff)
            delay = max(backoff, min(self._retry_after, self._max_backoff))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            return True
        try:
            if len(self._queue) < self._batch_size:
                await asyncio.wait_for(self._wake.wait(), self._interval)
        except TimeoutError:
            return True
        finally:
            self._wake.clear()
        return False

    async def _send_queue(self, everything: bool = True) -> bool:
        """Send the queue in batches, oldest first: all of it, or (not `everything`) its
        full batches, so that a busy gateway sends `batch_size` items a POST, not what
        came in while the last POST was under way. False when the endpoint failed (the
        batch stays queued)."""
        queue, size = self._queue, self._batch_size
        while len(queue) >= size or (everything and queue):
            batch = list(itertools.islice(queue, size))
            sent = await self._post(batch)
            if sent is _Sent.LATER:
                return False
            for _ in batch:
                queue.popleft()
            if sent is _Sent.OK:
                self.sent += len(batch)
        if self._outage:
            self._outage = False
            self._log.warning(
                "%s: the endpoint takes %s again; %d were dropped meanwhile",
                self.name,
                self._what,
                self._dropped_in_outage,
            )
            self._dropped_in_outage = 0
        return True

    async def _post(self, batch: Sequence[T]) -> _Sent:
        import aiohttp

        body = self._encode(batch)
        if self._compress is not None:
            if len(body) >= _COMPRESS_OFF_LOOP:
                body = await asyncio.to_thread(self._compress, body)
            else:
                body = self._compress(body)
        if self._session is None or self._session.closed:
            # Its own pool: a slow endpoint never holds connections the providers need.
            self._session = aiohttp.ClientSession(
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
        try:
            async with self._session.post(
                self._endpoint,
                data=body,
                headers=self._headers,
                allow_redirects=False,
                ssl=self._ssl,
            ) as response:
                status = response.status
                retry_after = retry_after_seconds(response.headers)
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._note_outage(type(exc).__name__, None)
            return _Sent.LATER
        if status < 300:
            return _Sent.OK
        if status >= 500 or status in self._retry_statuses:
            self._note_outage(f"status {status}", retry_after)
            return _Sent.LATER
        self._drop(len(batch), f"the endpoint refused them with status {status}")
        return _Sent.REFUSED

    def _note_outage(self, why: str, retry_after: float | None) -> None:
        self._retry_after = retry_after or 0.0
        if not self._outage:
            self._outage = True
            self._log.warning(
                "%s: the endpoint did not take a batch (%s); %s wait (up to %d) and are "
                "sent again, every %g s at first, then less often",
                self.name,
                why,
                self._what,
                self._max_queued,
                self._interval,
            )
        else:
            self._log.debug("%s: the endpoint failed again (%s)", self.name, why)

    def _drop(self, count: int, why: str) -> None:
        before = self.dropped
        self.dropped += count
        self._dropped_in_outage += count
        # Logged on the first drop and on each power of ten after it: never silent,
        # never a line per item.
        if before == 0 or len(str(self.dropped)) > len(str(before)) or count > 1:
            self._log.error(
                "%s: %d %s dropped (%s); %d dropped in all",
                self.name,
                count,
                self._what,
                why,
                self.dropped,
            )


def compressor(name: str) -> tuple[Callable[[bytes], bytes], str] | None:
    """The body encoder of a Content-Encoding ("gzip", "deflate"; "none": None), for
    `BatchPoster(compress=...)`."""
    if name == "gzip":
        return (_gzip, "gzip")
    if name == "deflate":
        return (zlib.compress, "deflate")
    return None


def _gzip(body: bytes) -> bytes:
    # wbits 31: zlib's gzip framing, without gzip.compress's Python-level header work.
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    return packer.compress(body) + packer.flush()
