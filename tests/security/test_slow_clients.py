"""Rule: idle and slow clients are dropped on deadlines, and real requests are still
served (issue 11, §3). Each connection has a header deadline (from connect), a body
deadline (from the end of the headers, extended by what arrives at the minimum rate) and
a keep-alive deadline; above the connection cap the longest-idle connection is closed;
`prismgate serve` raises its open-file limit so that the cap, not the OS, turns clients
away. Tried against the real `prismgate serve`, with loopback sockets as the clients."""

from __future__ import annotations

import json
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prismgate.config import load_config
from prismgate.errors import ConfigError
from tests.security.process import MASTER_KEY, LivenessProbe, ServedProcess

DEADLINE = 2.0  # seconds, every deadline of the served process
MARGIN = 1.5  # seconds the server may take beyond a deadline on a busy 2-core machine
FLOOD = 1500  # idle connections: more than the 1,024 files a worker gets by default
CAP = 1000


def _request(body: bytes) -> bytes:
    """An image generation request, as bytes on the wire."""
    return (
        b"POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + MASTER_KEY.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    ) + body


REQUEST_BODY = json.dumps({"model": "art", "prompt": "an otter"}).encode()
REQUEST = _request(REQUEST_BODY)


def _config(**server: Any) -> dict[str, Any]:
    deadlines = {
        "header_timeout_seconds": DEADLINE,
        "body_timeout_seconds": DEADLINE,
        "keep_alive_timeout_seconds": DEADLINE,
    }
    return {
        "model_list": [{"model_name": "art", "litellm_params": {"model": "mock/art"}}],
        "general_settings": {"master_key": MASTER_KEY, "server": {**deadlines, **server}},
    }


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setblocking(False)
    return sock


def _wait_closed(socks: list[socket.socket], limit: float) -> dict[socket.socket, bytes]:
    """Read each socket until the server closes it, for at most `limit` seconds; what
    each one received, for those closed in time (the others are missing)."""
    received: dict[socket.socket, bytearray] = {sock: bytearray() for sock in socks}
    closed: dict[socket.socket, bytes] = {}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + limit
        while len(closed) < len(socks) and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(timeout=left):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    chunk = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    received[sock] += chunk
                else:
                    selector.unregister(sock)
                    closed[sock] = bytes(received[sock])
    return closed


def _assert_timeout_answer(data: bytes) -> None:
    """A 408 with the OpenAI error body, telling the client what to change."""
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), data[:200]
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "request_timeout"
    assert "Send the whole request" in error["message"]


@contextmanager
def _file_limit(soft: int) -> Iterator[None]:
    """This process's open-file soft limit set to `soft` (children inherit it)."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


class _Trickle(threading.Thread):
    """A slowloris: sends `data` one byte a second after `lead` bytes at once, until the
    server closes the socket or the bytes run out."""

    def __init__(self, port: int, data: bytes, lead: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.connected = time.monotonic()
        self._data = data
        self._lead = lead
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self.sock.sendall(self._data[: self._lead])
            for index in range(self._lead, len(self._data)):
                if self.stop.wait(1.0):
                    return
                self.sock.sendall(self._data[index : index + 1])
        except OSError:
            return  # the server closed it: what the test waits for


def test_idle_and_slow_clients_are_dropped_while_real_requests_are_served(
    served_process: Callable[..., ServedProcess],
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard < FLOOD + 200:
        pytest.skip(f"the open-file hard limit ({hard}) is too low for the flood")
    # The server starts with the 1,024 files many systems give a process ...
    with _file_limit(1024):
        proxy = served_process(_config(max_connections=CAP))
    # ... and the attacker (this test) needs more than that for its sockets.
    with _file_limit(hard), LivenessProbe(proxy.port) as probe:
        started = time.monotonic()
        flood = [_connect(proxy.port) for _ in range(FLOOD)]
        flood_opened = time.monotonic()
        assert flood_opened - started < 10, "opening the idle connections took too long"
        header_trickles = [_Trickle(proxy.port, REQUEST, lead=5) for _ in range(5)]
        body_trickles = [
            _Trickle(proxy.port, REQUEST, lead=len(REQUEST) - len(REQUEST_BODY) + 1)
            for _ in range(5)
        ]
        trickles = header_trickles + body_trickles
        for trickle in trickles:
            trickle.start()
        # A real client during the attack, on a fresh connection.
        answer = httpx.post(
            f"{proxy.base_url}/v1/images/generations",
            content=REQUEST_BODY,
            headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
            timeout=5,
        )
        assert answer.status_code == 200, answer.text
        closed = _wait_closed(flood, limit=DEADLINE + MARGIN - (time.monotonic() - flood_opened))
        trickled = _wait_closed([t.sock for t in trickles], limit=DEADLINE + MARGIN)
        finished = time.monotonic()
        for trickle in trickles:
            trickle.stop.set()
    try:
        assert len(closed) == FLOOD, (
            f"{FLOOD - len(closed)} of {FLOOD} idle connections still open "
            f"{DEADLINE + MARGIN:g} s after they were opened"
        )
        assert all(data == b"" for data in closed.values()), "an idle client got an answer"
        assert len(trickled) == len(trickles), "a slowloris client is still connected"
        for trickle in trickles:
            _assert_timeout_answer(trickled[trickle.sock])
        # Closed on the deadline, not only after the attack stopped.
        assert finished - max(t.connected for t in trickles) < DEADLINE + MARGIN + 0.5
        probe.assert_responsive()
    finally:
        for sock in [*flood, *(t.sock for t in trickles)]:
            sock.close()


def test_a_request_stalled_at_any_byte_is_answered_408_and_closed(
    served_process: Callable[..., ServedProcess],
) -> None:
    """Every cut of a real request (each prefix, then silence): the server closes the
    connection within its deadline, with a 408 once the client has begun a request."""
    proxy = served_process(_config())
    cuts = range(len(REQUEST))  # from nothing at all to all but the last body byte
    with LivenessProbe(proxy.port) as probe:
        socks = [_connect(proxy.port) for _ in cuts]
        for sock, cut in zip(socks, cuts, strict=True):
            sock.sendall(REQUEST[:cut])
        closed = _wait_closed(socks, limit=DEADLINE + MARGIN)
    try:
        late = [cut for sock, cut in zip(socks, cuts, strict=True) if sock not in closed]
        assert not late, f"stalled after {late[:10]} bytes, still open"
        assert closed[socks[0]] == b"", "a client that sent nothing got an answer"
        for sock in socks[1:]:
            _assert_timeout_answer(closed[sock])
        probe.assert_responsive()
    finally:
        for sock in socks:
            sock.close()


def test_slow_steady_uploads_and_kept_alive_clients_are_served_then_closed(
    served_process: Callable[..., ServedProcess],
) -> None:
    """The body deadline stretches with what arrives: an upload that keeps up the minimum
    rate passes however long it takes; a kept-alive connection closes when idle."""
    proxy = served_process(_config(body_min_bytes_per_second=100))
    padded = REQUEST_BODY[:-1] + b', "user": "' + b"x" * 300 + b'"}'
    head = _request(padded)[: -len(padded)]
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(head)
        sent_at = time.monotonic()
        # 330 bytes over ~3.3 s: past the 2 s deadline, but never under 100 B/s.
        for start in range(0, len(padded), 50):
            if start:
                time.sleep(0.5)
            sock.sendall(padded[start : start + 50])
        last_byte_at = time.monotonic()
        response = b""
        while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, f"closed before the answer: {response[:200]!r}"
            response += chunk
        assert time.monotonic() - sent_at > DEADLINE
        assert response.startswith(b"HTTP/1.1 200 "), response[:300]
        sock.setblocking(False)
        closed = _wait_closed([sock], limit=DEADLINE + MARGIN)
        assert sock in closed, "a kept-alive idle connection was not closed"
        assert time.monotonic() - last_byte_at >= DEADLINE - 0.1  # not before its deadline


def test_workers_keep_the_deadlines(served_process: Callable[..., ServedProcess]) -> None:
    """`--workers 2`: every worker process has the deadlines, and answers."""
    proxy = served_process(_config(), args=("--workers", "2"))
    deadline = time.monotonic() + 20
    while True:  # the workers start after the socket is bound
        try:
            answer = httpx.get(f"{proxy.base_url}/health/liveliness", timeout=2)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, proxy.log()
            time.sleep(0.1)
    assert answer.status_code == 200
    socks = [_connect(proxy.port) for _ in range(40)]  # spread over both workers
    closed = _wait_closed(socks, limit=DEADLINE + MARGIN)
    for sock in socks:
        sock.close()
    assert len(closed) == len(socks)


@given(
    key=st.sampled_from(
        [
            "header_timeout_seconds",
            "body_timeout_seconds",
            "keep_alive_timeout_seconds",
            "body_min_bytes_per_second",
            "max_connections",
        ]
    ),
    value=st.one_of(st.integers(max_value=0), st.floats(max_value=0), st.text(max_size=5)),
)
def test_server_settings_that_cannot_work_are_refused_naming_the_path(
    key: str, value: object
) -> None:
    raw = {"general_settings": {"server": {key: value}}}
    with pytest.raises(ConfigError, match=rf"general_settings\.server\.{key}"):
        load_config(raw, environ={})
