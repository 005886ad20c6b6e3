"""`/docs` over HTTP: the page and the files it names come from the installed Swagger UI
with their content types, long cache lifetimes and a Content-Security-Policy that allows
this origin only; nothing but the allowlisted files is served, whatever the path; the
document itself still needs the key. (tests/ui/test_docs_page.py runs it in Chromium.)"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from prismgate.proxy.handlers.docs import find_swagger_ui
from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

MODELS = [model("painter", "mock/dall-e-3")]
KEPT = "public, max-age=31536000, immutable"


@pytest.fixture(scope="module")
def keyed() -> Iterator[RunningProxy]:
    running = RunningProxy(
        {"model_list": MODELS, "general_settings": {"master_key": MASTER_KEY}}
    ).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def open_gateway() -> Iterator[RunningProxy]:
    running = RunningProxy({"model_list": MODELS}).start()
    yield running
    running.stop()


def referenced(page: str) -> list[str]:
    """Every URL the page loads (scripts, stylesheets, icons)."""
    return re.findall(r'(?:src|href)="([^"]+)"', page)


def policy(answer: httpx.Response) -> dict[str, list[str]]:
    directives = answer.headers["content-security-policy"].split(";")
    return {name: sources for name, *sources in (d.split() for d in directives if d.strip())}


def test_the_page_needs_no_key_and_allows_only_its_own_origin(keyed: RunningProxy) -> None:
    answer = httpx.get(keyed.base_url + "/docs")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert 'data-needs-key="true"' in answer.text  # a master key: the page asks for a key
    rules = policy(answer)
    assert rules["default-src"] == ["'none'"]
    for directive in ("script-src", "style-src", "connect-src"):
        assert rules[directive] == ["'self'"], directive
    assert rules["img-src"] == ["'self'", "data:"]  # the stylesheet's own inline icons
    assert rules["frame-ancestors"] == ["'none'"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-cache"
    # The page names no other origin; the document itself still wants the key.
    assert all(url.startswith("/docs/") for url in referenced(answer.text))
    assert "http" not in answer.text
    assert httpx.get(keyed.base_url + "/openapi.json").status_code == 401


def test_an_open_gateway_shows_its_document_at_once(open_gateway: RunningProxy) -> None:
    answer = httpx.get(open_gateway.base_url + "/docs")
    assert 'data-needs-key="false"' in answer.text
    assert httpx.get(open_gateway.base_url + "/openapi.json").status_code == 200


def test_the_files_come_with_their_types_and_are_kept(keyed: RunningProxy) -> None:
    page = httpx.get(keyed.base_url + "/docs").text
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
    types[".png"] = "image/png"
    swagger = find_swagger_ui()
    assert swagger.folder is not None and int(swagger.version.split(".")[0]) >= 5
    urls = referenced(page)
    assert len(urls) == 5  # stylesheet, two icons, Swagger UI, the page's own script
    for url in urls:
        answer = httpx.get(keyed.base_url + url)
        assert answer.status_code == 200, url
        suffix = Path(url.split("?")[0]).suffix
        assert answer.headers["content-type"] == types[suffix], url
        assert answer.headers["cache-control"] == KEPT, url
        assert answer.headers["x-content-type-options"] == "nosniff"
        name = url.split("?")[0].removeprefix("/docs/")
        if name != "start.js":  # Swagger UI's file, byte for byte
            assert answer.content == (swagger.folder / name).read_bytes(), url
        # Without the version it is the same file, but not to be kept.
        unversioned = httpx.get(keyed.base_url + url.split("?")[0])
        assert unversioned.content == answer.content
        assert unversioned.headers["cache-control"] == "no-cache"


def raw_get(proxy: RunningProxy, target: str) -> tuple[int, bytes]:
    """A GET with the request target exactly as written (no client normalizes it)."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as connection:
        request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        connection.sendall(request.encode())
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    "target",
    [
        "/docs/index.html",  # Swagger UI's own page: it would load the petstore
        "/docs/swagger-initializer.js",
        "/docs/oauth2-redirect.html",
        "/docs/swagger-ui.js",
        "/docs/../pyproject.toml",
        "/docs/..%2f..%2fpyproject.toml",
        "/docs/%2e%2e/%2e%2e/pyproject.toml",
        "/docs/..%5c..%5cpyproject.toml",
        "/docs//etc/passwd",
        "/docs/%2fetc%2fpasswd",
        "/docs/swagger-ui.css%00.png",
        "/docs/swagger-ui-bundle.js/",
        "/docs/" + "a" * 5000,
    ],
)
def test_nothing_else_is_served(open_gateway: RunningProxy, target: str) -> None:
    status, body = raw_get(open_gateway, target)
    assert status in (404, 307), (target, body[:200])  # 307: the router's slash redirect
    assert b"root:" not in body and b"[project]" not in body and b"petstore" not in body
    if status == 404:
        error = httpx.Response(404, content=body).json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert "Traceback" not in error["message"]


def test_the_page_only_answers_get(open_gateway: RunningProxy) -> None:
    answer = httpx.post(open_gateway.base_url + "/docs", content=b"<script>")
    assert answer.status_code == 405
    assert answer.json()["error"]["code"] == "method_not_allowed"
    assert httpx.head(open_gateway.base_url + "/docs").status_code == 200


def test_the_page_does_not_reflect_its_address(open_gateway: RunningProxy) -> None:
    hostile = "/docs?url=https://example.invalid/x.json&configUrl=%3Cscript%3Emarker-7301"
    answer = httpx.get(open_gateway.base_url + hostile)
    assert answer.status_code == 200
    assert "example.invalid" not in answer.text and "marker-7301" not in answer.text
    assert answer.content == httpx.get(open_gateway.base_url + "/docs").content


def test_only_swagger_ui_5_or_later_is_used(tmp_path: Path) -> None:
    names = ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui.css.map")
    names += ("favicon-16x16.png", "favicon-32x32.png")
    old = tmp_path / "swagger-ui-4.15.5"
    old.mkdir()
    for name in names:
        (old / name).write_bytes(b"x")
    refused = find_swagger_ui(tmp_path)
    assert refused.folder is None
    assert refused.problem is not None and "pip install swagger-ui-bundle-v2" in refused.problem
    new = tmp_path / "swagger-ui-5.31.0"
    new.mkdir()
    for name in names:
        (new / name).write_bytes(b"x")
    (tmp_path / "swagger-ui-5.40.0").mkdir()  # incomplete: not used
    chosen = find_swagger_ui(tmp_path)
    assert (chosen.folder, chosen.version, chosen.problem) == (new, "5.31.0", None)
    assert find_swagger_ui(tmp_path / "missing").folder is None
