"""LiteLLM's callbacks: the webhook (generic_api) sent call records in batches, off the
request path, through an endpoint's outages; any other name a config error."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from aiohttp import web

from prismgate import load_config
from prismgate.errors import ConfigError
from tests.emulators.server import EmulatorServer, Fault
from tests.serving import MASTER_KEY, RunningProxy, model


class WebhookReceiver(EmulatorServer):
    """An operator's log endpoint: keeps each batch it accepts (204); `fail_next` makes
    it fail, hang or reset, as a real one does when it is down."""

    name = "webhook"

    def __init__(self) -> None:
        super().__init__()
        self.accepted: list[tuple[dict[str, str], bytes]] = []
        # Set: each batch hangs, unanswered, until it is cleared.
        self.hanging = threading.Event()

    def records(self) -> list[dict[str, Any]]:
        """Every record of every accepted batch, in the order they arrived."""
        found: list[dict[str, Any]] = []
        for headers, body in list(self.accepted):
            if headers.get("content-type") == "application/x-ndjson":
                found.extend(json.loads(line) for line in body.splitlines())
            else:
                found.extend(json.loads(body))
        return found

    async def _dispatch(
        self, request: web.Request, raw: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        while self.hanging.is_set():
            await asyncio.sleep(0.01)
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.accepted.append((headers, raw))
        return web.Response(status=204)

    def _status_fault(self, request: web.Request, fault: Fault) -> web.Response:
        return web.Response(status=fault.status or 503, text="down for maintenance")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def serve_with(
    serve: Callable[..., RunningProxy],
    litellm_settings: dict[str, Any],
    *,
    callback_settings: dict[str, Any] | None = None,
    general: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> RunningProxy:
    return serve(
        {
            "model_list": [model("images", "mock/images")],
            "general_settings": {"master_key": MASTER_KEY, **(general or {})},
            "litellm_settings": litellm_settings,
            "callback_settings": callback_settings or {},
        },
        environ=environ,
    )


def client(proxy: RunningProxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=MASTER_KEY, max_retries=0)


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the webhook did not get its records in time"
        time.sleep(0.02)


HOOK = {"callback_type": "generic_api", "flush_interval": 0.05}


@pytest.mark.parametrize(
    ("raw", "environ", "message"),
    [
        (
            {"litellm_settings": {"success_callback": ["langfuse"]}},
            {},
            "litellm_settings.success_callback[0]: 'langfuse' is not a callback prismgate has; "
            "it has otel (OpenTelemetry traces), generic_api (call records POSTed as JSON to "
            "GENERIC_LOGGER_ENDPOINT; LiteLLM's older name: generic), prometheus (GET "
            "/metrics, always served)",
        ),
        (
            {"litellm_settings": {"failure_callback": ["custom_callbacks.handler"]}},
            {},
            "'custom_callbacks.handler' is not a callback prismgate has",
        ),
        (
            {"litellm_settings": {"callbacks": ["generic_api"]}},
            {},
            "litellm_settings.callbacks[0]: generic_api sends call records to the URL in "
            "GENERIC_LOGGER_ENDPOINT, which is not set",
        ),
        (
            {"callback_settings": {"lf": {"callback_type": "langfuse"}}},
            {},
            "callback_settings.lf.callback_type: prismgate's callback_settings entries are "
            "webhooks, callback_type: generic_api (got 'langfuse')",
        ),
        (
            {"callback_settings": {"hook": {"callback_type": "generic_api"}}},
            {},
            "callback_settings.hook.endpoint: the webhook's URL is required",
        ),
        (
            {"callback_settings": {"hook": {**HOOK, "endpoint": "https://u:s3cret@logs.example"}}},
            {},
            "callback_settings.hook.endpoint: the URL must not carry credentials",
        ),
        (
            {"litellm_settings": {"callbacks": ["generic"]}},
            {"GENERIC_LOGGER_ENDPOINT": "file:///etc/s3cret"},
            "GENERIC_LOGGER_ENDPOINT: not an http(s) URL",
        ),
        (
            {"litellm_settings": {"callbacks": ["generic_api"]}},
            {"GENERIC_LOGGER_ENDPOINT": "http://h", "GENERIC_LOGGER_HEADERS": "Bearer s3cret"},
            "GENERIC_LOGGER_HEADERS: each header is written Name=value, separated by commas",
        ),
        (
            {"callback_settings": {"hook": {**HOOK, "endpoint": "http://h", "batch_sise": 5}}},
            {},
            "callback_settings.hook.batch_sise: not a setting; did you mean batch_size?",
        ),
    ],
)
def test_a_callback_prismgate_lacks_or_a_webhook_set_up_wrong_is_a_config_error(
    raw: dict[str, Any], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(raw, environ=environ)
    assert message in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_litellms_prometheus_callback_is_accepted_and_starts_no_webhook() -> None:
    from prismgate.observability.callbacks import wants_tracing, webhooks_from_config

    lists = ("callbacks", "success_callback", "failure_callback")
    config = load_config({"litellm_settings": {name: ["prometheus"] for name in lists}}, environ={})
    assert webhooks_from_config(config) == [] and not wants_tracing(config)


def test_the_webhook_gets_each_calls_record_with_the_operators_headers_and_no_prompt_or_image(
    serve: Callable[..., RunningProxy], receiver: WebhookReceiver
) -> None:
    proxy = serve_with(
        serve,
        {"success_callback": ["generic_api"]},  # LiteLLM's setting: successes only
        environ={
            "GENERIC_LOGGER_ENDPOINT": receiver.base_url + "/logs?token=abc",
            "GENERIC_LOGGER_HEADERS": "Authorization=Bearer hook-token,X-Source=prismgate",
        },
    )
    answer = client(proxy).images.with_raw_response.generate(
        model="images", prompt="a private prompt", response_format="b64_json", size="256x256"
    )
    image = answer.parse().data[0].b64_json  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client(proxy).images.generate(model="images", prompt="x", size="1x1")
    proxy.stop()  # the gateway sends what is queued as it shuts down
    [(headers, body)] = receiver.accepted
    assert headers["authorization"] == "Bearer hook-token"
    assert headers["x-source"] == "prismgate"
    assert headers["content-type"] == "application/json"
    assert receiver.requests[0].raw_path == "/logs?token=abc"
    [record] = receiver.records()
    assert record["request_id"] == answer.headers["x-request-id"]
    assert (record["model"], record["status_code"], record["images"]) == ("images", 200, 1)
    assert record["custom_llm_provider"] == "mock"
    assert record["prompt"] is None  # not unless send_prompts_to_callbacks is set
    assert image and image[:200] not in body.decode()
    assert b"a private prompt" not in body
    assert MASTER_KEY.encode() not in body


def test_records_wait_while_the_endpoint_fails_and_arrive_in_order_without_holding_calls(
    serve: Callable[..., RunningProxy],
    receiver: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = serve_with(
        serve,
        {},
        callback_settings={
            "audit": {
                **HOOK,
                "endpoint": receiver.base_url + "/audit",
                "headers": {"Authorization": "Bearer s3cret-hook-token"},
                "batch_size": 2,
            }
        },
    )
    receiver.fail_next("status", status=503, times=2)
    receiver.fail_next("reset")
    receiver.hanging.set()  # then it takes a batch and does not answer

    def call() -> str:
        answer = client(proxy).images.with_raw_response.generate(model="images", prompt="x")
        return answer.headers["x-request-id"]

    ids = [call() for _ in range(4)]  # answered while the endpoint fails
    wait_for(lambda: len(receiver.requests) >= 4)  # two 503s, a reset, one hanging
    ids.append(call())  # answered while a batch hangs
    assert receiver.accepted == []
    receiver.hanging.clear()
    wait_for(lambda: len(receiver.records()) == 5)
    assert [record["request_id"] for record in receiver.records()] == ids
    assert "callback audit: the endpoint did not take a batch (status 503)" in caplog.text
    assert "callback audit: the endpoint takes records again; 0 were dropped" in caplog.text
    assert receiver.base_url not in caplog.text and "s3cret" not in caplog.text


def test_records_past_the_queue_are_dropped_counted_and_logged_while_the_endpoint_is_down(
    serve: Callable[..., RunningProxy],
    receiver: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = serve_with(
        serve,
        {"callbacks": ["audit"]},
        callback_settings={
            "audit": {**HOOK, "endpoint": receiver.base_url, "max_queued": 2, "max_backoff": 0.2}
        },
    )
    receiver.fail_next("status", status=500, times=1000)  # down for long
    ids = [
        client(proxy)
        .images.with_raw_response.generate(model="images", prompt="x")
        .headers["x-request-id"]
        for _ in range(5)
    ]
    assert "callback audit: 1 records dropped (the queue is full); 1 dropped in all" in caplog.text
    receiver.reset()  # it answers again: at the next try, after a backoff of at most 0.2 s
    wait_for(lambda: len(receiver.records()) == 2, seconds=5)
    assert [record["request_id"] for record in receiver.records()] == ids[:2]
    wait_for(lambda: "takes records again; 3 were dropped meanwhile" in caplog.text)


def test_prompts_go_only_where_the_operator_says_so_and_ndjson_is_one_record_a_line(
    serve: Callable[..., RunningProxy], receiver: WebhookReceiver
) -> None:
    proxy = serve_with(
        serve,
        {},
        callback_settings={
            "lines": {**HOOK, "endpoint": receiver.base_url, "log_format": "ndjson"},
            "failures": {
                **HOOK,
                "endpoint": receiver.base_url + "/failures",
                "event_types": ["llm_api_failure"],
            },
        },
        general={"send_prompts_to_callbacks": True},
    )
    client(proxy).images.generate(model="images", prompt="an otter in a river")
    proxy.stop()
    [(headers, body)] = receiver.accepted  # the failures-only webhook got nothing
    assert headers["content-type"] == "application/x-ndjson"
    assert body.endswith(b"\n") and len(body.splitlines()) == 1
    [record] = receiver.records()
    assert record["prompt"] == "an otter in a river"


def test_a_caller_can_never_point_a_callback_anywhere(
    serve: Callable[..., RunningProxy], receiver: WebhookReceiver
) -> None:
    with WebhookReceiver() as elsewhere:
        proxy = serve_with(
            serve,
            {"callbacks": ["hook"]},
            callback_settings={"hook": {**HOOK, "endpoint": receiver.base_url}},
        )
        hostile = {
            "callbacks": ["generic_api"],
            "success_callback": ["generic_api"],
            "callback_settings": {
                "x": {"callback_type": "generic_api", "endpoint": elsewhere.base_url}
            },
            "metadata": {"endpoint": elsewhere.base_url},
        }
        with pytest.raises(openai.BadRequestError) as refused:
            client(proxy).images.generate(
                model="images",
                prompt="x",
                extra_body=hostile,
                extra_headers={
                    "GENERIC_LOGGER_ENDPOINT": elsewhere.base_url,
                    "x-portkey-metadata": json.dumps({"callback": elsewhere.base_url}),
                },
            )
        client(proxy).images.generate(
            model="images",
            prompt="x",
            extra_headers={"generic-logger-endpoint": elsewhere.base_url},
        )
        proxy.stop()
        assert elsewhere.requests == []
    assert refused.value.status_code == 400
    assert len(receiver.records()) == 2  # the operator's webhook has both calls
