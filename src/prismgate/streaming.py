"""Reading OpenAI server-sent events back into typed chunks (for SDK callers)."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import msgspec

from prismgate.errors import APIError, PrismgateError
from prismgate.observability.redaction import Redactor
from prismgate.types.chat import ChatChunk

__all__ = ["OpenedStream", "chunks_from_events", "guarded_stream", "iterate_in_thread"]

_ErrorEnvelope = msgspec.json.Decoder(dict[str, dict[str, object]])


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
