"""Proxy input and the error surface (README, "Security model").

Rules, each tried with many inputs against the real proxy (uvicorn on loopback, the
offline mock provider):

- JSON nested deeper than MAX_JSON_DEPTH (body, `messages`, `x-portkey-metadata`) is a
  400, checked before decoding (`x-portkey-config` too).
- No input, in any field or header, is answered with a 500: every answer is JSON, and
  every failure the OpenAI error body.
- An unexpected exception is a JSON 500 naming only the request id; the log gets one
  line, and the traceback only at debug level.
- A client that leaves a non-streaming call has its upstream request closed.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from prismgate import Gateway
from prismgate.config import load_config
from prismgate.errors import BadRequestError, ConfigError
from prismgate.types.validation import MAX_JSON_DEPTH, check_json_depth
from tests.emulators import OpenAIEmulator
from tests.serving import MASTER_KEY, RunningProxy, model

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
CONFIG: dict[str, Any] = {
    "model_list": [model("painter", "mock/painter")],
    "general_settings": {"master_key": MASTER_KEY},
}
GENERATION = {"model": "painter", "prompt": "an otter", "size": "64x64"}
CHAT = {"model": "painter", "messages": [{"role": "user", "content": "hello"}]}
FUZZ = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], database=None)


def _png(width: int = 32, height: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG_URL = "data:image/png;base64," + base64.b64encode(_png()).decode()


@pytest.fixture(scope="module")
def proxy() -> Iterator[RunningProxy]:
    running = RunningProxy(CONFIG).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(proxy: RunningProxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.base_url, headers=AUTH, timeout=30) as http:
        yield http


def assert_openai_shaped(answer: httpx.Response) -> None:
    """Not a 500; JSON; a failure is exactly OpenAI's error body."""
    assert answer.status_code != 500, answer.text
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    body = answer.json()
    if answer.status_code >= 400:
        assert set(body) == {"error"}, body
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str)
        assert error["param"] is None or isinstance(error["param"], str)
        assert error["code"] is None or isinstance(error["code"], str)
        assert "Traceback" not in error["message"]


# ---------------------------------------------------------------- JSON nesting depth


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


# Strings full of what the scan must not count: brackets, quotes, backslashes.
_TRICKY_TEXT = st.text(alphabet='[]{}"\\ab\n', max_size=12)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TRICKY_TEXT,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(_TRICKY_TEXT, children, max_size=3)
    ),
    max_leaves=40,
)


@settings(max_examples=400, database=None)
@given(value=_JSON, limit=st.integers(min_value=0, max_value=8))
def test_the_depth_check_agrees_with_the_real_depth(value: Any, limit: int) -> None:
    text = json.dumps(value)
    if _depth(value) <= limit:
        check_json_depth(text, what="it", limit=limit)
    else:
        with pytest.raises(BadRequestError, match="more than"):
            check_json_depth(text, what="it", limit=limit)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 1000 + "]" * 1000,
        "[" * 1000,  # never closed: the decoder would still recurse into it
        '{"a":' * 1000 + "1" + "}" * 1000,
        "[" * 500 + "}" * 500,
        '{"k": "\\\\"' + ", " + '"x": ' + "[" * 100 + "]" * 100 + "}",
    ],
)
def test_deep_json_is_refused(text: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        check_json_depth(text, what="the request body")
    assert caught.value.status_code == 400


def test_brackets_inside_strings_cannot_hide_nesting() -> None:
    # Closing brackets in a string before the deep part, opening ones after it: a scan
    # that counted them would see a shallow, balanced document.
    deep = "[" * 70 + "]" * 70
    text = '["' + "]" * 60 + '", ' + deep + ', "' + "[" * 60 + '"]'
    with pytest.raises(BadRequestError):
        check_json_depth(text, what="it")


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"prompt": "[" * 5000 + '\\"{' * 500, "n": [[1]]})
    check_json_depth(text, what="the request body")


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/v1/images/generations", "[" * 1000 + "]" * 1000, {}),
        (
            "/v1/images/generations",
            '{"model": "painter", "x": ' + "[" * 1000 + "]" * 1000 + "}",
            {},
        ),
        (
            "/v1/chat/completions",
            '{"model": "painter", "messages": ' + "[" * 1000 + "]" * 1000 + "}",
            {},
        ),
        (
            "/v1/chat/completions",
            '{"model": "painter", "messages": [{"role": "user", "content": '
            + '{"a":' * 999
            + "1"
            + "}" * 999
            + "}]}",
            {},
        ),
        (
            "/v1/images/edits",
            '{"model": "painter", "images": ' + "[" * 1000 + "]" * 1000 + "}",
            {"content-type": "application/json"},
        ),
        (
            "/v1/images/generations",
            json.dumps(GENERATION),
            {"x-portkey-metadata": '{"a":' * 1000 + "1" + "}" * 1000},
        ),
        (
            "/v1/images/generations",
            json.dumps(GENERATION),
            {"x-portkey-config": '{"retry": ' + "[" * 1000 + "]" * 1000 + "}"},
        ),
    ],
)
def test_deep_json_is_a_400_everywhere(
    client: httpx.Client, path: str, body: str, headers: dict[str, str]
) -> None:
    answer = client.post(path, content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert_openai_shaped(answer)
    assert "levels deep" in answer.json()["error"]["message"]


def test_json_at_the_limit_is_served(client: httpx.Client) -> None:
    nested: Any = "x"
    for _ in range(MAX_JSON_DEPTH - 3):
        nested = {"k": nested}
    answer = client.post(
        "/v1/images/generations",
        json=GENERATION,
        headers={"x-portkey-metadata": json.dumps({"deep": nested})},
    )
    assert answer.status_code == 200, answer.text


# ---------------------------------------------------------------- known 500s, now 4xx


@pytest.mark.parametrize(
    ("path", "kwargs", "param"),
    [
        # str.isdigit takes these; int() does not (latin-1 "²", UTF-8 Arabic-Indic digits)
        (
            "/v1/images/generations",
            {"headers": {"x-portkey-request-timeout": b"\xb2"}},
            "x-portkey-request-timeout",
        ),
        (
            "/v1/images/generations",
            {"headers": {"x-portkey-request-timeout": "١٢٣".encode()}},
            "x-portkey-request-timeout",
        ),
        (
            "/v1/images/generations",
            {"headers": {"x-portkey-request-timeout": "9" * 400}},
            "x-portkey-request-timeout",
        ),
        ("/v1/images/generations", {"json": {**GENERATION, "seed": "abc"}}, "seed"),
        ("/v1/images/generations", {"json": {**GENERATION, "seed": [1]}}, "seed"),
        ("/v1/images/generations", {"json": {**GENERATION, "seed": 1.5}}, "seed"),
        ("/v1/images/generations", {"json": {**GENERATION, "seed": True}}, "seed"),
        ("/v1/images/generations", {"json": {**GENERATION, "seed": "9" * 400}}, "seed"),
        ("/v1/chat/completions", {"json": {"model": "painter", "messages": []}}, "messages"),
        (
            "/v1/images/edits",
            {"files": {"prompt": (None, "x"), "model": (None, "painter")}},
            "image",
        ),
        ("/v1/images/edits", {"json": {"model": "painter", "prompt": "x", "images": []}}, "images"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    client: httpx.Client, path: str, kwargs: dict[str, Any], param: str
) -> None:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    if path.endswith("generations") and "json" not in kwargs:
        kwargs["json"] = GENERATION
    answer = client.post(path, headers=headers, **kwargs)
    assert answer.status_code == 400, answer.text
    assert_openai_shaped(answer)
    assert answer.json()["error"]["param"] == param


def test_a_seed_that_is_a_whole_number_is_served(client: httpx.Client) -> None:
    for seed in (7, "7", -3, 10**18):
        answer = client.post("/v1/images/generations", json={**GENERATION, "seed": seed})
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    "api_base",
    [
        "http://user:s3cr3t-pw@127.0.0.1:9/v1",
        "https://user@api.example.com",
        "http://:s3cr3t-pw@api.example.com/v1",
        "http://a@b@api.example.com",
        "http://api.example.com:notaport/v1",
        "http://[::1",
    ],
)
def test_an_api_base_with_credentials_is_refused_at_load(api_base: str) -> None:
    config = {"model_list": [model("art", "openai/gpt-image-1", api_key="k", api_base=api_base)]}
    with pytest.raises(ConfigError, match=r"model_list\[0\]\.litellm_params: api_base") as caught:
        load_config(config)
    assert "s3cr3t-pw" not in str(caught.value)


@pytest.mark.parametrize("where", ["model_list", "virtual_keys"])
def test_an_endpoint_setting_with_credentials_is_refused_at_load(where: str) -> None:
    endpoint = "https://user:s3cr3t-pw@bedrock-runtime.us-east-1.amazonaws.com"
    params = {"aws_region_name": "us-east-1", "aws_bedrock_runtime_endpoint": endpoint}
    config: dict[str, Any] = (
        {"model_list": [model("art", "bedrock/amazon.nova-canvas-v1:0", **params)]}
        if where == "model_list"
        else {"virtual_keys": {"aws": {"provider": "bedrock", **params}}}
    )
    with pytest.raises(ConfigError, match="aws_bedrock_runtime_endpoint must not carry") as caught:
        Gateway(load_config(config, environ={}))  # virtual keys are checked as it starts
    assert "s3cr3t-pw" not in str(caught.value)


def test_health_never_answers_500(serve: Any) -> None:
    # An endpoint the transport cannot even build a request for, and one that is down.
    running = serve(
        {
            "model_list": [
                model("art", "openai/gpt-image-1", api_key="k", api_base="http://127.0.0.1:9/v1"),
                model("odd", "openai/gpt-image-1", api_key="k", api_base="ftp://127.0.0.1/x"),
                model("painter", "mock/painter"),
            ],
            "general_settings": {"master_key": MASTER_KEY},
        }
    )
    answer = httpx.get(f"{running.base_url}/health", headers=AUTH, timeout=30)
    assert_openai_shaped(answer)
    report = answer.json()
    assert report["healthy_count"] == 1 and report["unhealthy_count"] == 2


# ---------------------------------------------------------------- fuzzing the surface

PORTKEY_HEADERS = (
    "x-portkey-trace-id",
    "x-portkey-metadata",
    "x-portkey-provider",
    "x-portkey-config",
    "x-portkey-virtual-key",
    "x-portkey-custom-host",
    "x-portkey-request-timeout",
    "x-portkey-cache-force-refresh",
    "x-portkey-api-key",
    "x-portkey-cache-namespace",
    "x-portkey-retry-count",
    "x-portkey-forward-headers",
    "authorization",
    "idempotency-key",
    "cache-control",
    "content-type",
)

# What an HTTP/1.1 parser lets through as a header value: no CR, LF or NUL.
_HEADER_BYTES = st.binary(max_size=64)
_HEADER_TEXT = st.one_of(
    _HEADER_BYTES,
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "1e9",
            "NaN",
            "true",
            "null",
            "[]",
            "{}",
            "pc-x",
            "openai",
            '{"a": 1}',
            '{"retry": {"attempts": 99}}',
            '{"targets": []}',
            '{"strategy": {"mode": "fallback"}, "targets": [{"provider": "openai"}]}',
            "Bearer ",
            "Bearer x",
            "http://127.0.0.1:1",
            "9" * 40,
        ]
    ).map(str.encode),
    st.text(max_size=30).map(str.encode),
).map(lambda raw: bytes(b for b in raw if b >= 0x20 and b != 0x7F))
_REQUESTS = st.sampled_from(
    [("/v1/images/generations", GENERATION), ("/v1/chat/completions", CHAT)]
)


@FUZZ
@given(
    request=_REQUESTS,
    headers=st.dictionaries(st.sampled_from(PORTKEY_HEADERS), _HEADER_TEXT, min_size=1, max_size=4),
)
def test_any_header_values_get_a_json_answer(
    client: httpx.Client, request: tuple[str, dict[str, Any]], headers: dict[str, bytes]
) -> None:
    path, body = request
    # HTTP trims the whitespace around a header value; a client cannot send it.
    sent = {"authorization": AUTH["authorization"].encode()}
    sent.update({name: value.strip(b" \t") for name, value in headers.items()})
    answer = client.post(path, content=json.dumps(body).encode(), headers=sent)
    assert_openai_shaped(answer)


_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "",
            "64x64",
            "1024x1024",
            "b64_json",
            "url",
            "png",
            PNG_URL,
            "user",
            "data:image/png;base64,AAAA",
            "file:///etc/passwd",
            "gs://b/o",
        ]
    ),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["type", "text", "image_url", "url", "role", "content", "detail", "format", "x"]
            ),
            children,
            max_size=3,
        )
    ),
    max_leaves=12,
)
_GENERATION_FIELDS = (
    "model",
    "prompt",
    "n",
    "size",
    "quality",
    "response_format",
    "style",
    "user",
    "background",
    "output_format",
    "output_compression",
    "seed",
    "moderation",
    "negative_prompt",
    "stream",
    "api_base",
    "extra_body",
)
_CHAT_FIELDS = (
    "model",
    "messages",
    "stream",
    "max_tokens",
    "n",
    "stop",
    "temperature",
    "response_format",
    "tools",
    "tool_choice",
    "seed",
    "stream_options",
    "logit_bias",
    "user",
    "extra_body",
)
_EDIT_FIELDS = (
    "model",
    "prompt",
    "images",
    "image",
    "mask",
    "n",
    "size",
    "response_format",
    "quality",
    "output_format",
    "input_fidelity",
)
EDIT = {"model": "painter", "prompt": "x", "images": [{"image_url": PNG_URL}], "size": "64x64"}


@FUZZ
@given(
    route=st.sampled_from(
        [
            ("/v1/images/generations", GENERATION, _GENERATION_FIELDS),
            ("/v1/chat/completions", CHAT, _CHAT_FIELDS),
            ("/v1/images/edits", EDIT, _EDIT_FIELDS),
            (
                "/v1/images/variations",
                {"model": "painter", "image": PNG_URL},
                ("model", "image", "n", "size"),
            ),
        ]
    ),
    changes=st.data(),
)
def test_any_field_value_gets_a_json_answer(
    client: httpx.Client, route: tuple[str, dict[str, Any], tuple[str, ...]], changes: Any
) -> None:
    path, valid, fields = route
    replaced = changes.draw(st.dictionaries(st.sampled_from(fields), _VALUES, max_size=3))
    # A large count of large images is a slow test, not a finding.
    if "n" in replaced and "size" in replaced:
        replaced.pop("size")
    answer = client.post(path, json={**valid, **replaced})
    assert_openai_shaped(answer)


@FUZZ
@given(body=st.binary(max_size=200) | _VALUES.map(lambda value: json.dumps(value).encode()))
def test_any_body_gets_a_json_answer(client: httpx.Client, body: bytes) -> None:
    for path in ("/v1/images/generations", "/v1/chat/completions", "/v1/images/edits"):
        assert_openai_shaped(client.post(path, content=body))


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/v1/images/edits", "multipart/form-data", b"garbage"),
        ("/v1/images/edits", "multipart/form-data; boundary=x", b"--x\r\nnonsense"),
        ("/v1/images/edits", "multipart/form-data; boundary=x", b"--x--\r\n"),
        ("/v1/images/variations", "multipart/form-data; boundary=x", b"--x--\r\n"),
        ("/v1/images/edits", "text/plain", b"hello"),
        ("/v1/images/edits", "application/json", b'"just a string"'),
        ("/v1/images/variations", "application/json", b'{"image": 5}'),
        ("/v1/images/variations", "application/json", b'{"image": {"file_id": "f"}}'),
        ("/v1/chat/completions", "application/json", b'{"model": "painter", "messages": [{}]}'),
        (
            "/v1/chat/completions",
            "application/json",
            b'{"model": "painter", "messages": [{"role": "user", "content": [{"type": "image_url",'
            b' "image_url": {"url": "data:image/png;base64,!!!"}}]}]}',
        ),
    ],
)
def test_malformed_forms_and_bodies_get_a_json_answer(
    client: httpx.Client, path: str, content_type: str, body: bytes
) -> None:
    answer = client.post(path, content=body, headers={"content-type": content_type})
    assert 400 <= answer.status_code < 500, answer.text
    assert_openai_shaped(answer)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/v1/images/files/x.png", {"expires": "١٢٣", "signature": "x"}),
        ("/v1/images/files/x.png", {"expires": "9" * 5000, "signature": "x"}),
        ("/v1/images/files/..%2F..%2Fetc%2Fpasswd", {"expires": "1", "signature": "x"}),
        ("/v1/images/files/x.png", {}),
    ],
)
def test_image_links_with_hostile_queries_get_a_json_answer(
    client: httpx.Client, path: str, query: dict[str, str]
) -> None:
    assert_openai_shaped(client.get(path, params=query))


# ---------------------------------------------------------------- unexpected exceptions


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _starlette(app: Any) -> Starlette:
    while not isinstance(app, Starlette):
        app = app.app
    return app


async def _broken(request: Request) -> None:
    raise RuntimeError("internal detail: password hunter2")


def test_an_unexpected_exception_is_a_json_500_naming_the_request_id() -> None:
    running = RunningProxy(CONFIG)
    # A route with a bug, added to the real app: every layer above it is prismgate's.
    _starlette(running._server.config.app).router.routes.append(Route("/v1/broken", _broken))
    records = _Records()
    loggers = [logging.getLogger(name) for name in ("prismgate", "uvicorn.error", "uvicorn")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(records)
        logger.setLevel(logging.DEBUG)
    running.start()
    try:
        answer = httpx.get(f"{running.base_url}/v1/broken", headers=AUTH, timeout=10)
    finally:
        running.stop()
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(records)
            logger.setLevel(level)
    assert answer.status_code == 500
    assert_body = answer.json()
    request_id = answer.headers["x-request-id"]
    assert assert_body == {
        "error": {
            "message": f"internal error; quote request id {request_id} when reporting it",
            "type": "api_error",
            "param": None,
            "code": None,
        }
    }
    # The access log's line for the request names its id too; the error is said once.
    loud = [
        r for r in records.records if r.levelno >= logging.INFO and r.name != "prismgate.access"
    ]
    assert [r.getMessage() for r in loud if request_id in r.getMessage()] == [
        f"request {request_id} failed: unexpected RuntimeError (traceback at debug level)"
    ]
    assert not [r for r in loud if r.exc_info], [r.getMessage() for r in loud if r.exc_info]
    assert any(r.levelno == logging.DEBUG and r.exc_info for r in records.records)


# ---------------------------------------------------------------- a caller that leaves


class _WatchedEmulator(OpenAIEmulator):
    """The OpenAI emulator, noting when the gateway closes its connection mid-request."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()
        self.closed = threading.Event()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        import asyncio

        async def watch() -> None:
            while request.transport is not None and not request.transport.is_closing():
                await asyncio.sleep(0.01)
            self.closed.set()

        watcher = asyncio.create_task(watch())
        self.arrived.set()
        try:
            return await super()._handle(request)
        finally:
            watcher.cancel()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/images/generations", {"model": "dalle", "prompt": "an otter"}),
        ("/v1/chat/completions", {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}),
    ],
)
def test_a_caller_that_leaves_cancels_the_upstream_call(
    serve: Any, path: str, body: dict[str, Any]
) -> None:
    with _WatchedEmulator() as emulator:
        params = {"api_base": emulator.base_url + "/v1", "api_key": emulator.api_key}
        running = serve(
            {
                "model_list": [
                    model("dalle", "openai/dall-e-3", **params),
                    model("gpt", "openai/gpt-4o", **params),
                ],
                "general_settings": {"master_key": MASTER_KEY},
            }
        )
        emulator.fail_next("delay", delay=30)
        raw = json.dumps(body).encode()
        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as caller:
            caller.sendall(
                f"POST {path} HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer {MASTER_KEY}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n".encode()
                + raw
            )
            assert emulator.arrived.wait(5)
            time.sleep(0.3)
        left = time.monotonic()
        assert emulator.closed.wait(5), "the upstream request was still open after 5 s"
        assert time.monotonic() - left < 1.0
