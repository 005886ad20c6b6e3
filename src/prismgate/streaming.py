"""Relayed streams: reading OpenAI server-sent events back into typed chunks (for SDK
callers), ending a failed stream cleanly, and the usage a stream reports at its end."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar, cast

import msgspec

from prismgate.errors import APIError, PrismgateError
from prismgate.observability.redaction import Redactor
from prismgate.types.chat import ChatChunk, ChatUsage

__all__ = ["RelayedStream", "chunks_from_events", "iterate_in_thread"]

log = logging.getLogger(__name__)

Item = TypeVar("Item")
_ErrorEnvelope = msgspec.json.Decoder(dict[str, dict[str, object]])
TAIL_BYTES = 8192  # what is kept of a stream's end: its usage chunk is well under this


class _UsageChunk(msgspec.Struct):
    usage: ChatUsage | None = None


_usage_chunk = msgspec.json.Decoder(_UsageChunk)
OnClose = Callable[[BaseException | None], Awaitable[None] | None]


class RelayedStream:
    """A provider's event stream on its way to the caller, closed exactly once, whether it
    was read to its end, left half-read or never read: closing ends the upstream call and
    runs what waits for the end of the call (`at_close`: paying its budget hold, freeing
    its rate-limit slot, reporting it). Whoever serves it must `aclose()` it; one dropped
    unclosed is closed when it is collected.

    After the first event, a provider failure becomes an OpenAI error event that ends the
    stream cleanly. The last few KB are kept, for the usage the last chunk may report
    (OpenAI's, when the request sets `stream_options.include_usage`): the stream itself is
    relayed as it comes, never parsed.
    """

    def __init__(
        self,
        first: bytes,
        events: AsyncGenerator[bytes, None],
        *,
        redact: Redactor,
        cost_of: Callable[[ChatUsage], float | None],
    ) -> None:
        self._first: bytes | None = first
        self._events = events
        self._redact = redact
        self._cost_of = cost_of
        self._tail: deque[bytes] = deque([first])
        self._kept = len(first)
        self._ended = False
        self._closed = False
        self._failure: BaseException | None = None
        self._at_close: list[OnClose] = []
        self._loop = asyncio.get_running_loop()

    def at_close(self, callback: OnClose) -> None:
        """Run `callback(failure)` when the stream is closed (`failure`: what ended it
        early, None when it was read to its end or never read)."""
        self._at_close.append(callback)

    def __aiter__(self) -> RelayedStream:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return self._redacted(first)
        if self._ended:
            await self.aclose()
            raise StopAsyncIteration
        try:
            chunk = await anext(self._events)
        except StopAsyncIteration:
            await self.aclose()
            raise
        except PrismgateError as error:
            self._failure = error
            self._ended = True
            body = msgspec.json.encode(error.wire_body()).decode()
            return f"\n\ndata: {self._redact(body)}\n\ndata: [DONE]\n\n".encode()
        except BaseException as exc:  # the caller left (cancelled), or a bug
            self._failure = exc
            await self.aclose()
            raise
        chunk = self._redacted(chunk)
        self._keep(chunk)
        return chunk

    def _redacted(self, chunk: bytes) -> bytes:
        # An error event the provider sent itself may echo a credential: redacted, as every
        # error is (the check is a substring search; other events pass as they are).
        if b'"error"' in chunk:
            return self._redact(chunk.decode("utf-8", "replace")).encode()
        return chunk

    async def aclose(self) -> None:
        """End the upstream call and run the `at_close` callbacks (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._events.aclose()
        finally:
            for callback in self._at_close:
                try:
                    outcome = callback(self._failure)
                    if outcome is not None:
                        await outcome
                except Exception:
                    log.exception("a stream's closing step failed")

    def __del__(self) -> None:
        # Dropped without aclose() (a caller that never read it): closed on its loop.
        if not self._closed and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.create_task, self.aclose())

    @property
    def usage(self) -> ChatUsage | None:
        """The usage of the stream's last chunk that has one; None when none did."""
        lines = b"".join(self._tail).split(b"\n")
        for raw_line in reversed(lines):
            line = raw_line.strip()
            if line.startswith(b"data:") and b'"usage"' in line:
                try:
                    found = _usage_chunk.decode(line[5:].strip()).usage
                except msgspec.DecodeError:
                    continue  # the tail began inside this line
                if found is not None:
                    return found
        return None

    @property
    def cost(self) -> float | None:
        """What the reported usage cost; None without usage or a price."""
        usage = self.usage
        return None if usage is None else self._cost_of(usage)

    def _keep(self, chunk: bytes) -> None:
        tail = self._tail
        tail.append(chunk)
        self._kept += len(chunk)
        while self._kept - len(tail[0]) >= TAIL_BYTES:
            self._kept -= len(tail.popleft())


async def chunks_from_events(events: AsyncIterator[bytes]) -> AsyncIterator[ChatChunk]:
    """`data:` lines → ChatChunk, until `[DONE]`. An error event raises APIError."""
    decoder = msgspec.json.Decoder(ChatChunk)
    pending = b""
    async for piece in events:
        pending += piece
        *lines, pending = pending.split(b"\n")
        for raw_line in lines:
            line = raw_line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                return
            if payload.startswith(b'{"error"'):
                detail = _ErrorEnvelope.decode(payload)["error"]
                raise APIError(str(detail.get("message", "the stream failed")))
            yield decoder.decode(payload)


def iterate_in_thread(make: Callable[[], AsyncIterator[Item]]) -> Iterator[Item]:
    """A blocking iterator over an async one, run on its own event loop in a thread.

    Leaving the loop early stops the producer, which closes the upstream call.
    """
    items: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=64)
    stop = threading.Event()

    async def produce() -> None:
        try:
            async for item in make():
                if stop.is_set():
                    break
                items.put(("item", item))
        except BaseException as error:  # handed to the consumer, raised there
            items.put(("error", error))
        else:
            items.put(("done", None))

    thread = threading.Thread(target=asyncio.run, args=(produce(),), daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "done":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield cast("Item", value)
    finally:
        stop.set()
        while thread.is_alive():  # let a blocked producer finish its put
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
