"""A Google token endpoint that answers with something other than a token (an HTML error
page from a proxy, garbage, an empty body) is a mapped 503, never a 500 with a traceback."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.emulators.google_oauth import ServiceAccount
from tests.serving import MASTER_KEY, RunningProxy

ANSWERS: dict[str, tuple[str, bytes]] = {
    "html": ("text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "garbage": ("application/json", b"\x00\xff not json"),
    "empty": ("application/json", b""),
    "a list": ("application/json", b"[1, 2, 3]"),
    "no token": ("application/json", b'{"expires_in": 3600}'),
}


class _LyingTokenEndpoint(BaseHTTPRequestHandler):
    answer: tuple[str, bytes] = ANSWERS["html"]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind, body = self.answer
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def token_endpoint() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LyingTokenEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("answer", ANSWERS)
def test_a_token_endpoint_that_lies_is_a_503(
    serve: Callable[..., RunningProxy], token_endpoint: ThreadingHTTPServer, answer: str
) -> None:
    _LyingTokenEndpoint.answer = ANSWERS[answer]
    port = token_endpoint.server_address[1]
    account = ServiceAccount("proj-1", "svc@proj-1.iam.gserviceaccount.com", "1234")
    credentials = account.info(f"http://127.0.0.1:{port}/token")
    config = {
        "model_list": [{"model_name": "imagen", "litellm_params": {
            "model": "vertex_ai/gemini-2.5-flash-image", "vertex_credentials": credentials,
            "vertex_location": "us-central1"}}],
        "general_settings": {"master_key": MASTER_KEY},
    }  # fmt: skip
    proxy = serve(config)
    reply = httpx.post(
        f"{proxy.base_url}/v1/images/generations",
        json={"model": "imagen", "prompt": "x"},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=30,
    )
    assert reply.status_code in (401, 503), reply.text
    error = reply.json()["error"]
    assert error["message"] and "Traceback" not in reply.text
    assert "PRIVATE KEY" not in reply.text
