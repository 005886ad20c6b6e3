"""Server-sent events read from a byte stream, for providers whose streams need
translating (Anthropic, Gemini). OpenAI-shaped streams are passed through untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

__all__ = ["ServerSentEvent", "read_events", "sse_data"]


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One event: its `event:` name (empty when absent) and its joined `data:` lines."""

    event: str
    data: bytes


async def read_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[ServerSentEvent]:
    """Events as they complete, whatever the chunk boundaries (blank-line separated,
    `\\n` or `\\r\\n` line ends)."""
    pending = b""
    event: str = ""
    data: list[bytes] = []
    async for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r")
            if not line:
                if data or event:
                    yield ServerSentEvent(event, b"\n".join(data))
                event, data = "", []
            elif line.startswith(b"data:"):
                data.append(line[5:].removeprefix(b" "))
            elif line.startswith(b"event:"):
                event = line[6:].strip().decode()
    if data:
        yield ServerSentEvent(event, b"\n".join(data))


def sse_data(payload: bytes) -> bytes:
    """One OpenAI stream event carrying `payload`."""
    return b"data: " + payload + b"\n\n"
