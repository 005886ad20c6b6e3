"""An OpenAI-compatible upstream that lies: a raw asyncio HTTP server on loopback, in its
own thread, that answers what a broken or hostile provider could send (a gzip bomb,
garbage or HTML under a 200, a body cut short, a Content-Length that never arrives, a
huge error body). Raw sockets, because a real HTTP server library refuses to lie.

Each behaviour is chosen by the first path segment, so one server serves many
deployments: `api_base: {base_url}/<behaviour>/v1`. Every request is counted by
behaviour, so a test can assert how many times the gateway called.

`/sized/<status>/<bytes>/<gzip|identity>/<length|chunked>` answers `bytes` of JSON-ish
filler (as inflated), gzip'd or not, with a Content-Length or chunked: for rules stated
over many sizes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import threading
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Self

# 1 GiB of zeros, gzip'd: about 1 MB on the wire.
BOMB_INFLATED_BYTES = 1024 * 1024 * 1024
# The 1 MB of echoed base64 an upstream once put in an error message.
ECHO_BYTES = 1024 * 1024
# A marker in every lying body: the serving process's log must never hold it in full.
MARKER = "HOSTILE-ECHO-"

_IMAGE_ANSWER = json.dumps(
    {"created": 1700000000, "data": [{"b64_json": base64.b64encode(b"\x89PNG fake").decode()}]}
).encode()
_CHAT_ANSWER = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "fine"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
).encode()


def make_gzip_bomb(path: Path, inflated: int = BOMB_INFLATED_BYTES) -> Path:
    """Write `inflated` zero bytes, gzip'd, to `path` (once; about 1 MB for 1 GiB).

    One MiB of zeros is deflated once, ending in a full flush (which forgets the history,
    so the piece decodes alone), and repeated: compressing the whole GiB took seconds."""
    if path.exists():
        return path
    block = bytes(1024 * 1024)
    count = inflated // len(block)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw: gzip's framing below
    piece = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    last = deflate.flush()  # the final, empty block
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    with path.open("wb") as out:
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff")  # gzip, no name, no time
        out.write(piece * count)
        out.write(last)
        out.write(struct.pack("<II", crc, (count * len(block)) & 0xFFFFFFFF))
    return path


def sized_body(size: int) -> bytes:
    """`size` bytes of filler, the same for the same size."""
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


def gzip_bytes(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def echo_error_body(size: int = ECHO_BYTES) -> bytes:
    """An OpenAI-shaped error whose message echoes `size` bytes of base64."""
    echoed = MARKER + base64.b64encode(os.urandom(size * 3 // 4)).decode()
    return json.dumps(
        {"error": {"message": f"invalid image: {echoed}", "type": "invalid_request_error"}}
    ).encode()


Writer = asyncio.StreamWriter
Behaviour = Callable[[Writer, bool], Awaitable[None]]


class HostileUpstream:
    """The server; `calls[behaviour]` counts the requests each behaviour received."""

    def __init__(self, bomb: Path) -> None:
        self._bomb = bomb
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._hanging: list[Writer] = []
        self.port = 0
        self._behaviours: dict[str, Behaviour] = {
            "ok": self._ok,
            "bomb": self._gzip_bomb(200),
            "bomb-error": self._gzip_bomb(500),
            "garbage": self._whole(200, "application/json", os.urandom(4096)),
            "html": self._whole(200, "text/html", b"<html><body>" + b"x" * 4096 + b"</html>"),
            "bad-gzip": self._whole(
                200, "application/json", b"\x1f\x8b\x08\x00" + b"x" * 512, encoding="gzip"
            ),
            "truncated": self._truncated,
            "stalled": self._stalled,
            "huge-length": self._huge_length,
            "echo-400": self._whole(400, "application/json", echo_error_body()),
            "echo-500": self._whole(500, "application/json", echo_error_body()),
            "echo-text-500": self._whole(500, "text/plain", echo_error_body()[60:]),
        }

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api_base(self, behaviour: str) -> str:
        assert behaviour in self._behaviours, behaviour
        return f"{self.base_url}/{behaviour}/v1"

    def count(self, behaviour: str) -> int:
        with self._lock:
            return self.calls[behaviour]

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    def __enter__(self) -> Self:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, sock=sock), self._loop
        )
        self._server = started.result(timeout=5)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        async def close() -> None:
            for writer in self._hanging:
                writer.close()
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _handle(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        try:
            while True:  # keep-alive: the gateway reuses connections
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                }
                await reader.readexactly(int(headers.get("content-length", "0")))
                behaviour = path.split("/")[1]
                if behaviour == "sized":
                    await self._sized(writer, *path.split("/")[2:6])
                    continue
                with self._lock:
                    self.calls[behaviour] += 1
                chat = path.endswith("/chat/completions")
                await self._behaviours.get(behaviour, self._ok)(writer, chat)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    @staticmethod
    async def _send(writer: Writer, status: int, headers: dict[str, str], body: bytes) -> None:
        lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()

    async def _ok(self, writer: Writer, chat: bool) -> None:
        body = _CHAT_ANSWER if chat else _IMAGE_ANSWER
        await self._send(
            writer,
            200,
            {"Content-Type": "application/json", "Content-Length": str(len(body))},
            body,
        )

    def _whole(
        self, status: int, content_type: str, body: bytes, encoding: str | None = None
    ) -> Behaviour:
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        if encoding:
            headers["Content-Encoding"] = encoding

        async def answer(writer: Writer, chat: bool) -> None:
            await self._send(writer, status, headers, body)

        return answer

    def _gzip_bomb(self, status: int) -> Behaviour:
        async def answer(writer: Writer, chat: bool) -> None:
            size = self._bomb.stat().st_size
            headers = {
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "Content-Length": str(size),
            }
            await self._send(writer, status, headers, b"")
            with self._bomb.open("rb") as bomb:
                while chunk := bomb.read(64 * 1024):
                    writer.write(chunk)
                    await writer.drain()

        return answer

    async def _sized(
        self, writer: Writer, status: str, size: str, encoding: str, framing: str
    ) -> None:
        inflated = sized_body(int(size))
        body = gzip_bytes(inflated) if encoding == "gzip" else inflated
        headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
        if framing == "length":
            headers["Content-Length"] = str(len(body))
            await self._send(writer, int(status), headers, body)
            return
        headers["Transfer-Encoding"] = "chunked"
        await self._send(writer, int(status), headers, b"")
        for start in range(0, len(body), 65536):
            piece = body[start : start + 65536]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _truncated(self, writer: Writer, chat: bool) -> None:
        body = _CHAT_ANSWER if chat else _IMAGE_ANSWER
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body) * 4)}
        await self._send(writer, 200, headers, body[: len(body) // 2])
        writer.close()

    async def _stalled(self, writer: Writer, chat: bool) -> None:
        # The rest of the announced body never comes; the connection stays open.
        body = _CHAT_ANSWER if chat else _IMAGE_ANSWER
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body) * 4)}
        await self._send(writer, 200, headers, body[: len(body) // 2])
        self._hanging.append(writer)
        await asyncio.sleep(3600)

    async def _huge_length(self, writer: Writer, chat: bool) -> None:
        headers = {"Content-Type": "application/json", "Content-Length": str(10**12)}
        await self._send(writer, 200, headers, b"{" * 65536)
        self._hanging.append(writer)
        await asyncio.sleep(3600)


__all__ = ["HostileUpstream", "make_gzip_bomb", "sized_body"]
