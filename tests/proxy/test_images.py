"""`POST /v1/images/generations` through the real server, with real clients."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from PIL import Image

from tests.emulators import OpenAIEmulator
from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart.yaml"
SEED_BODY = {"model": "dall-e-3", "prompt": "A cute baby sea otter", "n": 1, "size": "1024x1024"}


def quickstart_config() -> dict[str, object]:
    return yaml.safe_load(QUICKSTART.read_text())


def emulated_dall_e_3(emulator: OpenAIEmulator, **params: object) -> dict[str, object]:
    """A config whose `dall-e-3` group is the OpenAI emulator."""
    settings = {"api_base": emulator.base_url + "/v1", "api_key": emulator.api_key, **params}
    return {"model_list": [model("dall-e-3", "openai/dall-e-3", **settings)]}


def decoded_size(b64: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return image.size


def test_seed_curl_example(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(quickstart_config())
    answer = httpx.post(
        proxy.base_url + "/v1/images/generations",
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-1234"},
        json=SEED_BODY,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert decoded_size(body["data"][0]["b64_json"]) == (1024, 1024)
    assert answer.headers["x-portkey-provider"] == "mock"
    assert answer.headers["x-portkey-cache-status"] == "DISABLED"
    assert len(answer.headers["x-request-id"]) == 32


@pytest.mark.parametrize("suffix", ["", "/v1"])
def test_seed_openai_sdk_example(serve: Callable[..., RunningProxy], suffix: str) -> None:
    proxy = serve(quickstart_config())
    client = openai.OpenAI(api_key="sk-1234", base_url=proxy.base_url + suffix)
    image = client.images.generate(prompt="A cute baby sea otter", model="dall-e-3")
    assert image.data is not None and image.data[0].b64_json
    assert decoded_size(image.data[0].b64_json) == (1024, 1024)


def test_url_for_a_base64_model(serve: Callable[..., RunningProxy], tmp_path: Path) -> None:
    proxy = serve(
        {**quickstart_config(), "general_settings": {"image_store": {"path": str(tmp_path)}}}
    )
    client = openai.OpenAI(api_key="sk-1234", base_url=proxy.base_url + "/v1")
    image = client.images.generate(
        prompt="an otter", model="gpt-image-1", response_format="url", size="1024x1024"
    )
    assert image.data is not None and image.data[0].url
    # A signed link to the stored image, served by the proxy itself.
    assert image.data[0].url.startswith(proxy.base_url + "/v1/images/files/")
    assert httpx.get(image.data[0].url).status_code == 200


def test_proxied_to_openai_with_cost(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    config = emulated_dall_e_3(openai_emulator, api_key="os.environ/OPENAI_KEY")
    config["general_settings"] = {"master_key": MASTER_KEY}
    proxy = serve(config, environ={"OPENAI_KEY": openai_emulator.api_key})
    client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url + "/v1")
    raw = client.images.with_raw_response.generate(
        prompt="A cute baby sea otter", model="dall-e-3", quality="hd", size="1792x1024"
    )
    image = raw.parse()
    assert image.data is not None and image.data[0].url
    assert image.data[0].url.startswith(openai_emulator.base_url)
    assert raw.headers["x-prismgate-response-cost"] == "0.120000"
    sent = openai_emulator.requests[-1]
    assert sent.json == {
        "model": "dall-e-3", "prompt": "A cute baby sea otter", "quality": "hd", "size": "1792x1024"
    }  # fmt: skip
    assert sent.headers["authorization"] == f"Bearer {openai_emulator.api_key}"


def test_azure_style_client(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve({**quickstart_config(), "general_settings": {"master_key": MASTER_KEY}})
    client = openai.AzureOpenAI(
        api_key=MASTER_KEY, azure_endpoint=proxy.base_url, api_version="2024-10-21"
    )
    image = client.images.generate(model="dall-e-3", prompt="an otter", size="1792x1024")
    assert image.data is not None and image.data[0].b64_json
    assert decoded_size(image.data[0].b64_json) == (1792, 1024)


def test_extra_body_reaches_the_provider(
    serve: Callable[..., RunningProxy], compatible_emulator: OpenAIEmulator
) -> None:
    proxy = serve(
        {
            "model_list": [
                model("sdxl", "openai/sdxl", api_base=compatible_emulator.base_url + "/v1")
            ]
        }
    )
    client = openai.OpenAI(api_key="unused", base_url=proxy.base_url + "/v1")
    client.images.generate(
        prompt="an otter", model="sdxl", extra_body={"seed": 5, "negative_prompt": "blur"}
    )
    assert compatible_emulator.requests[-1].json == {
        "model": "sdxl", "prompt": "an otter", "seed": 5, "negative_prompt": "blur"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("status", "kind", "retry_after"),
    [(429, openai.RateLimitError, "3"), (500, openai.InternalServerError, None),
     (503, openai.InternalServerError, None)],
)  # fmt: skip
def test_upstream_status_is_kept(
    serve: Callable[..., RunningProxy],
    openai_emulator: OpenAIEmulator,
    status: int,
    kind: type[Exception],
    retry_after: str | None,
) -> None:
    # Without retries: each failure is answered as the provider gave it.
    proxy = serve({**emulated_dall_e_3(openai_emulator), "router_settings": {"num_retries": 0}})
    openai_emulator.fail_next("status", status=status, retry_after=3 if retry_after else None)
    answer = httpx.post(proxy.base_url + "/v1/images/generations", json=SEED_BODY)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"].startswith(f"openai returned {status}: ")
    assert answer.headers.get("retry-after") == retry_after
    client = openai.OpenAI(api_key="x", base_url=proxy.base_url + "/v1", max_retries=0)
    openai_emulator.fail_next("status", status=status)
    with pytest.raises(kind):
        client.images.generate(prompt="x", model="dall-e-3")


@pytest.mark.parametrize(("fault", "status"), [("reset", 502), ("truncate", 502)])
def test_broken_upstream_connection(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator, fault: str, status: int
) -> None:
    proxy = serve(emulated_dall_e_3(openai_emulator))
    openai_emulator.fail_next(fault)  # type: ignore[arg-type]
    answer = httpx.post(proxy.base_url + "/v1/images/generations", json=SEED_BODY)
    assert answer.status_code == status
    assert answer.json()["error"]["type"] == "api_connection_error"


def test_slow_upstream_is_a_504(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    proxy = serve(emulated_dall_e_3(openai_emulator, timeout=0.3))
    openai_emulator.fail_next("delay", delay=2)
    answer = httpx.post(proxy.base_url + "/v1/images/generations", json=SEED_BODY)
    assert answer.status_code == 504
    assert answer.json()["error"]["type"] == "timeout"


@pytest.mark.parametrize(
    ("body", "status", "param", "message"),
    [
        (b"{bad", 400, None, "the request body is not valid JSON"),
        (b"", 400, None, "the request body is empty; send a JSON object"),
        (b"[1, 2]", 400, None, "the request body must be a JSON object"),
        (b'{"model": "dall-e-3"}', 400, None, "Object missing required field `prompt`"),
        (b'{"model": "dall-e-3", "prompt": "x", "n": "2"}', 400, "n",
         "n: Expected `int | null`, got `str`"),
        (b'{"model": "dall-e-9", "prompt": "x"}', 404, "model",
         "model 'dall-e-9' is not served here; available models: dall-e-3, gpt-image-1, llava-hf"),
        (b'{"model": "gpt-image-1", "prompt": "x", "output_format": "gif"}', 400,
         "output_format", "output_format 'gif' is not available for gpt-image-1; it accepts png"),
        (b'{"model": "dall-e-3", "prompt": "x", "aws_region_name": "us-east-1"}', 400,
         "aws_region_name", "'aws_region_name' in the request body configures how"),
    ],
)  # fmt: skip
def test_bad_requests_get_clear_errors(
    serve: Callable[..., RunningProxy],
    body: bytes,
    status: int,
    param: str | None,
    message: str,
) -> None:
    proxy = serve(quickstart_config())
    answer = httpx.post(
        proxy.base_url + "/v1/images/generations",
        content=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-1234"},
    )
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["param"] == param
    assert message in error["message"]
    assert "Traceback" not in answer.text
    assert answer.headers["x-request-id"]


def test_body_limit_counts_received_bytes(serve: Callable[..., RunningProxy]) -> None:
    limited = {**quickstart_config(), "general_settings": {"max_request_size_mb": 0.001}}
    proxy = serve(limited)
    big = b'{"model": "dall-e-3", "prompt": "' + b"x" * 4000 + b'"}'
    declared = httpx.post(proxy.base_url + "/v1/images/generations", content=big)
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: only counting the bytes can catch it
        yield big[:1000]
        yield big[1000:]

    streamed = httpx.post(proxy.base_url + "/v1/images/generations", content=chunks())
    assert streamed.status_code == 413
    small = httpx.post(
        proxy.base_url + "/v1/images/generations", json={"model": "dall-e-3", "prompt": "x",
                                                           "size": "1024x1024"}
    )  # fmt: skip
    assert small.status_code == 200


def test_unknown_path_and_method(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(quickstart_config())
    key = {"Authorization": "Bearer sk-1234"}  # the quickstart's
    missing = httpx.get(proxy.base_url + "/v1/nothing", headers=key)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_url"
    wrong = httpx.get(proxy.base_url + "/v1/images/generations", headers=key)
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_plain_openai_answers_are_relayed_unchanged(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    proxy = serve(emulated_dall_e_3(openai_emulator))
    answer = httpx.post(
        proxy.base_url + "/v1/images/generations",
        json={**SEED_BODY, "response_format": "b64_json"},
    )
    assert answer.status_code == 200
    # The emulator writes JSON with a space after each separator; a re-encoded answer
    # would be compact. These bytes are the provider's own.
    assert answer.content.startswith(b'{"created": ')
    assert decoded_size(answer.json()["data"][0]["b64_json"]) == (1024, 1024)
    assert answer.headers["x-prismgate-response-cost"] == "0.040000"


def test_answers_that_need_a_change_are_not_relayed(
    serve: Callable[..., RunningProxy], azure_emulator: OpenAIEmulator
) -> None:
    proxy = serve(
        {"model_list": [model("dall-e-3", "azure/dall-e-3", api_base=azure_emulator.base_url,
                              api_key=azure_emulator.api_key)]}
    )  # fmt: skip
    answer = httpx.post(
        proxy.base_url + "/v1/images/generations",
        json={**SEED_BODY, "response_format": "b64_json"},
    )
    assert answer.status_code == 200
    assert b"content_filter_results" not in answer.content  # Azure's annotations stripped
    assert answer.content.startswith(b'{"created":1')


def test_an_upstream_echoing_the_key_never_leaks_it(
    serve: Callable[..., RunningProxy],
    openai_emulator: OpenAIEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = openai_emulator.api_key
    proxy = serve({**emulated_dall_e_3(openai_emulator), "router_settings": {"num_retries": 0}})
    openai_emulator.fail_next(
        "status", status=500, message=f"backend saw api key {key} (Authorization: Bearer {key})"
    )
    with caplog.at_level("DEBUG"):
        answer = httpx.post(proxy.base_url + "/v1/images/generations", json=SEED_BODY)
    assert answer.status_code == 500
    assert key not in answer.text
    assert "backend saw api key [REDACTED]" in answer.json()["error"]["message"]
    assert caplog.records, "the failure was logged"
    for record in caplog.records:
        assert key not in record.getMessage()


def test_fanned_out_answers_are_merged_with_their_images(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    proxy = serve(emulated_dall_e_3(openai_emulator))
    answer = httpx.post(
        proxy.base_url + "/v1/images/generations",
        json={**SEED_BODY, "n": 3, "response_format": "b64_json"},
    )
    assert answer.status_code == 200
    images = answer.json()["data"]
    assert len(images) == 3
    assert all(decoded_size(image["b64_json"]) == (1024, 1024) for image in images)
    assert [r.json["n"] for r in openai_emulator.requests] == [1, 1, 1]
    assert answer.headers["x-prismgate-response-cost"] == "0.120000"
