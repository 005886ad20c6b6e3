"""Relayed streams: reading OpenAI server-sent events back into typed chunks (for SDK
callers), ending a failed stream cleanly, and the usage a stream reports at its end."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import msgspec

from prismgate.errors import APIError, PrismgateError
from prismgate.observability.redaction import Redactor
from prismgate.types.chat import ChatChunk, ChatUsage

__all__ = [
    "OpenedStream",
    "StreamUsage",
    "chunks_from_events",
    "guarded_stream",
    "iterate_in_thread",
]

_ErrorEnvelope = msgspec.json.Decoder(dict[str, dict[str, object]])
TAIL_BYTES = 8192  # what is kept of a stream's end: its usage chunk is well under this


class _UsageChunk(msgspec.Struct):
    usage: ChatUsage | None = None


_usage_chunk = msgspec.json.Decoder(_UsageChunk)


class StreamUsage:
    """The usage a relayed stream reports in its last chunk (OpenAI's, when the request
    sets `stream_options.include_usage`), read from the stream's tail: the stream itself
    is relayed as it comes, never parsed. One per call; each attempt's stream replaces
    the last one's."""

    def __init__(self) -> None:
        self._tail: deque[bytes] = deque()
        self._cost_of: Callable[[ChatUsage], float | None] = lambda _: None

    def watching(
        self, events: AsyncGenerator[bytes, None], cost_of: Callable[[ChatUsage], float | None]
    ) -> AsyncGenerator[bytes, None]:
        """`events`, unchanged, with their tail kept; `cost_of` prices the usage found."""
        self._tail.clear()
        self._cost_of = cost_of
        return self._watch(events)

    async def _watch(self, events: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
        tail = self._tail
        kept = 0
        try:
            async for chunk in events:
                tail.append(chunk)
                kept += len(chunk)
                while kept - len(tail[0]) >= TAIL_BYTES:
                    kept -= len(tail.popleft())
                yield chunk
        finally:
            await events.aclose()

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


def iterate_in_thread(make: Callable[[], AsyncIterator[ChatChunk]]) -> Iterator[ChatChunk]:
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
            assert isinstance(value, ChatChunk)
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # let a blocked producer finish its put
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


@dataclass(slots=True)
class OpenedStream:
    """A stream whose first event arrived: from here on, failures are events."""

    first: bytes
    events: AsyncGenerator[bytes, None]


async def guarded_stream(
    first: bytes, events: AsyncGenerator[bytes, None], redact: Redactor
) -> AsyncIterator[bytes]:
    """The events, and if the provider fails mid-stream, an OpenAI error event to end it
    cleanly. Closing this generator (a caller that left) closes the upstream call."""
    try:
        yield first
        async for event in events:
            yield event
    except PrismgateError as error:
        body = msgspec.json.encode(error.body()).decode()
        yield f"\n\ndata: {redact(body)}\n\ndata: [DONE]\n\n".encode()
    finally:
        await events.aclose()
