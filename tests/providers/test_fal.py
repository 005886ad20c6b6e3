"""fal.ai: OpenAI's parameters as fal's inputs, the queue's whole life cycle through the
shared job engine (progress, deadline, cancel, failures, transient polls, never a second
submission), result links as `url` or fetched for `b64_json`, the synchronous host,
Kontext edits, and the SDK and the proxy end to end."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

import prismgate
from prismgate.errors import APIError
from prismgate.providers import canonical_provider, get_provider
from prismgate.providers.fal.images import IMAGE_FIELDS
from prismgate.providers.jobs import JobProgress, JobState
from prismgate.types.images import ImageCompletedEvent
from tests.emulators.fal import FalEmulator
from tests.emulators.images import make_image
from tests.golden import assert_golden
from tests.images import image_bytes, opened
from tests.serving import RunningProxy, model

ENV = ("FAL_AI_API_KEY", "FAL_KEY", "FAL_AI_API_BASE")
DEV = "fal_ai/fal-ai/flux/dev"
SDXL = "fal_ai/fal-ai/fast-sdxl"  # not catalogued: every parameter reaches fal


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _server() -> Iterator[FalEmulator]:
    with FalEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(_server: FalEmulator) -> Iterator[FalEmulator]:
    _server.reset()
    yield _server
    _server.queue_seconds, _server.run_seconds, _server.url_ttl = 0.05, 0.1, 600.0


def generate(emu: FalEmulator, model: str = DEV, **kwargs: Any) -> prismgate.ImageResponse:
    return prismgate.image_generation(
        model=model,
        prompt=kwargs.pop("prompt", "an otter"),
        api_base=kwargs.pop("api_base", emu.base_url),
        api_key=emu.api_key,
        **kwargs,
    )


def submitted(emu: FalEmulator) -> list[dict[str, Any]]:
    return [r.json for r in emu.requests if r.method == "POST" and r.json is not None]


# (request parameter, value, fields fal must receive) on a model the catalog does not
# restrict, so each row shows the mapping alone.
ROWS = [
    ("prompt", "a red fox", {"prompt": "a red fox"}),
    ("n", 3, {"num_images": 3}),
    ("size", "1024x576", {"image_size": "landscape_16_9"}),
    ("size", "640x480", {"image_size": {"width": 640, "height": 480}}),
    ("negative_prompt", "blur", {"negative_prompt": "blur"}),
    ("output_format", "png", {"output_format": "png"}),
    ("seed", 42, {"seed": 42}),
    ("num_inference_steps", 4, {"num_inference_steps": 4}),
    ("guidance_scale", 3.5, {"guidance_scale": 3.5}),
    ("enable_safety_checker", False, {"enable_safety_checker": False}),
    ("response_format", "b64_json", {}),  # fulfilled here: fal always answers with links
]


def test_rows_cover_the_table() -> None:
    assert {param for param, _, _ in ROWS} == set(IMAGE_FIELDS)


@pytest.mark.parametrize(("param", "value", "expected"), ROWS)
def test_each_row_reaches_the_body(
    emu: FalEmulator, param: str, value: Any, expected: dict[str, Any]
) -> None:
    generate(emu, SDXL, **{param: value})
    assert submitted(emu) == [{"prompt": "an otter", **expected}]


def test_a_queued_generation_as_links_with_cost(emu: FalEmulator) -> None:
    response = generate(emu, n=2, size="1024x1024", seed=7)
    first = emu.requests[0]
    assert_golden("fal_ai_flux_dev_queued", first)
    assert first.path == "/fal-ai/flux/dev"
    assert first.headers["authorization"] == f"Key {emu.api_key}"
    job_id = next(iter(emu.jobs))
    # Polled under the app's path (no `/dev`), then the result read there.
    assert any(r.path == f"/fal-ai/flux/requests/{job_id}/status" for r in emu.requests)
    assert emu.requests[-1].path == f"/fal-ai/flux/requests/{job_id}"
    assert len(response.data) == 2
    for item in response.data:
        assert item.url is not None and item.url.startswith(emu.base_url + "/files/")
        assert opened(httpx.get(item.url).content).size == (1024, 1024)
    assert response._hidden_params is not None
    assert response._hidden_params.response_cost == pytest.approx(2 * 0.025)


def test_a_result_link_off_fals_hosts_is_never_fetched(emu: FalEmulator) -> None:
    # The answer names an internal address: the gateway must not fetch it for the caller.
    emu.link_base = "http://169.254.169.254/latest/meta-data"
    with pytest.raises(APIError) as refused:
        generate(emu, "fal_ai/fal-ai/flux/schnell", response_format="b64_json")
    assert refused.value.code == "untrusted_upstream_url"
    assert "169.254.169.254" in refused.value.message
    assert not any(r.path.startswith("/files/") for r in emu.requests)
    assert emu.submissions == 1  # the images were made: never asked for again


def test_b64_json_is_fetched_at_once(emu: FalEmulator) -> None:
    response = generate(
        emu,
        "fal_ai/fal-ai/flux/schnell",
        response_format="b64_json",
        size="768x1024",
        output_format="png",
    )
    item = response.data[0]
    assert item.url is None and item.b64_json is not None
    picture = opened(image_bytes(item))
    assert picture.size == (768, 1024) and picture.format == "PNG"
    fetch = emu.requests[-1]
    assert fetch.path.startswith("/files/") and "authorization" not in fetch.headers
    assert response._hidden_params is not None
    assert response._hidden_params.response_cost == pytest.approx(0.003)


def test_sync_mode_data_uris_need_no_fetch(emu: FalEmulator) -> None:
    as_b64 = generate(emu, response_format="b64_json", sync_mode=True)
    assert opened(image_bytes(as_b64.data[0])).size == (1024, 768)
    assert not any(r.path.startswith("/files/") for r in emu.requests)
    as_url = generate(emu, sync_mode=True)
    assert as_url.data[0].url is not None and as_url.data[0].url.startswith("data:image/jpeg")


def test_clear_400s_before_any_call(emu: FalEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError, match="accepts 1024x1024, 512x512"):
        generate(emu, size="1000x1000")
    with pytest.raises(prismgate.UnsupportedParamsError) as caught:
        generate(emu, quality="high")
    assert caught.value.param == "quality"
    with pytest.raises(prismgate.UnsupportedParamsError) as refused:
        generate(emu, negative_prompt="blur")  # FLUX.1 [dev] takes none
    assert refused.value.param == "negative_prompt"
    with pytest.raises(prismgate.UnsupportedParamsError, match="no 'quality'"):
        generate(emu, SDXL, quality="high")  # not catalogued: still never dropped silently
    assert emu.requests == []


def test_dropped_parameters_are_reported(emu: FalEmulator) -> None:
    response = generate(emu, quality="hd", drop_params=True)
    assert response._hidden_params is not None
    assert response._hidden_params.dropped_params == ("quality",)
    assert "quality" not in submitted(emu)[0]


def test_n_above_four_fans_out_into_jobs(emu: FalEmulator) -> None:
    response = generate(emu, n=6)
    assert len(response.data) == 6
    assert sorted(body["num_images"] for body in submitted(emu)) == [2, 4]


def test_progress_is_reported(emu: FalEmulator) -> None:
    emu.queue_seconds, emu.run_seconds = (
        1.5,
        1.0,
    )  # wide: the first poll may come late on a busy machine
    seen: list[JobProgress] = []
    generate(emu, on_progress=seen.append)
    states = [event.state for event in seen]
    assert states[0] is JobState.QUEUED and JobState.RUNNING in states
    assert seen[0].queue_position is not None and seen[0].provider == "fal_ai"
    assert {event.job_id for event in seen} == set(emu.jobs)


def test_the_deadline_cancels_the_job_at_fal(emu: FalEmulator) -> None:
    emu.run_seconds = 30
    with pytest.raises(prismgate.Timeout, match="it was cancelled") as caught:
        generate(emu, timeout=1, num_retries=2)
    assert caught.value.code == "job_timeout"
    (job,) = emu.jobs.values()
    assert emu.cancels == [job.id] and job.cancelled
    assert emu.submissions == 1  # the job existed: never submitted again


def test_a_caller_who_leaves_cancels_the_job(emu: FalEmulator) -> None:
    emu.run_seconds = 30

    async def leave() -> None:
        task = asyncio.ensure_future(
            prismgate.aimage_generation(
                model=DEV, prompt="x", api_base=emu.base_url, api_key=emu.api_key
            )
        )
        while not any(job.polls for job in emu.jobs.values()):
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(leave())
    (job,) = emu.jobs.values()
    assert emu.cancels == [job.id] and job.cancelled


def test_a_failed_job_is_final(emu: FalEmulator) -> None:
    with pytest.raises(prismgate.APIError, match="failed: The runner crashed") as caught:
        generate(emu, prompt="explode", num_retries=3)
    assert caught.value.status_code == 500 and caught.value.code == "runner_server_error"
    assert emu.submissions == 1


def test_a_refused_prompt_is_a_content_policy_error(emu: FalEmulator) -> None:
    with pytest.raises(prismgate.ContentPolicyViolationError) as caught:
        generate(emu, prompt="something forbidden", num_retries=2)
    assert caught.value.upstream_status == 400 and caught.value.param == "prompt"
    assert "flagged by a content checker" in caught.value.message
    assert emu.submissions == 1


def test_flagged_images_are_withheld(emu: FalEmulator) -> None:
    with pytest.raises(prismgate.ContentPolicyViolationError, match="has_nsfw_concepts"):
        generate(emu, prompt="nsfw otter")


def test_an_expired_result_link_is_a_clear_error(emu: FalEmulator) -> None:
    emu.url_ttl = 0
    with pytest.raises(prismgate.APIError, match="could no longer be fetched") as caught:
        generate(emu, response_format="b64_json", num_retries=2)
    assert caught.value.code == "result_expired" and caught.value.request_sent
    assert emu.submissions == 1


def test_a_transient_poll_failure_is_polled_again(emu: FalEmulator) -> None:
    emu.queue_seconds = emu.run_seconds = 0.3
    emu.fail_next_poll("status", status=503, times=2)
    emu.fail_next_result("status", status=502)
    response = generate(emu)
    assert len(response.data) == 1 and emu.submissions == 1
    assert sum(1 for r in emu.requests if r.path.endswith("/status")) >= 3


def test_a_refused_submission_follows_the_retry_rules(emu: FalEmulator) -> None:
    emu.fail_next("status", status=429, retry_after=0.1)
    response = generate(emu, num_retries=1)
    assert len(response.data) == 1 and emu.submissions == 2 and len(emu.jobs) == 1
    emu.reset()
    emu.fail_next("status", status=429, retry_after=0.1)
    with pytest.raises(prismgate.RateLimitError) as caught:
        generate(emu, num_retries=0)
    assert caught.value.retry_after == pytest.approx(0.1)


def test_the_synchronous_host_is_one_call(emu: FalEmulator) -> None:
    response = generate(
        emu,
        "fal_ai/fal-ai/flux/schnell",
        api_base=emu.sync_url,
        fal_sync=True,
        response_format="b64_json",
    )
    assert opened(image_bytes(response.data[0])).size == (1024, 768)
    posts = [r for r in emu.requests if r.method == "POST"]
    assert [r.path for r in posts] == ["/run/fal-ai/flux/schnell"]
    assert_golden("fal_ai_flux_schnell_sync", posts[0])
    assert emu.jobs == {} and not any("/requests/" in r.path for r in emu.requests)


def test_kontext_edits_an_image(emu: FalEmulator) -> None:
    source = make_image(640, 320, "png")
    response = prismgate.image_edit(
        image=source,
        prompt="add a hat",
        model="fal_ai/fal-ai/flux-pro/kontext",
        n=2,
        api_base=emu.base_url,
        api_key=emu.api_key,
        response_format="b64_json",
    )
    body = submitted(emu)[0]
    assert body["image_url"] == "data:image/png;base64," + base64.b64encode(source).decode()
    assert body["num_images"] == 2 and body["prompt"] == "add a hat"
    assert [opened(image_bytes(item)).size for item in response.data] == [(640, 320)] * 2
    assert response._hidden_params is not None
    assert response._hidden_params.response_cost == pytest.approx(0.08)
    with pytest.raises(prismgate.UnsupportedParamsError, match="no mask"):
        prismgate.image_edit(
            image=source,
            mask=source,
            prompt="x",
            model="fal_ai/fal-ai/flux-pro/kontext",
            api_base=emu.base_url,
            api_key=emu.api_key,
        )
    with pytest.raises(prismgate.BadRequestError, match="edits an input image"):
        generate(emu, "fal_ai/fal-ai/flux-pro/kontext")


def test_fals_validation_errors_keep_the_field(emu: FalEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        generate(emu, SDXL, n=5)
    assert caught.value.upstream_status == 422 and caught.value.param == "num_images"


def test_names_keys_and_errors(emu: FalEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    assert canonical_provider("fal-ai") == "fal_ai"
    assert get_provider("fal_ai").credentials.default_api_base == "https://queue.fal.run"
    monkeypatch.setenv("FAL_KEY", emu.api_key)
    assert len(prismgate.image_generation(model=DEV, prompt="x", api_base=emu.base_url).data)
    with pytest.raises(prismgate.AuthenticationError):
        prismgate.image_generation(model=DEV, prompt="x", api_base=emu.base_url, api_key="no")


def test_through_the_proxy(emu: FalEmulator, serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(
        {
            "model_list": [
                model("flux", DEV, api_base=emu.base_url, api_key=emu.api_key),
                model(
                    "schnell",
                    "fal_ai/fal-ai/flux/schnell",
                    api_base=emu.sync_url,
                    api_key=emu.api_key,
                    fal_sync=True,
                ),
            ],
        }
    )
    client = openai.OpenAI(api_key="sk-unused", base_url=proxy.base_url + "/v1")
    raw = client.images.with_raw_response.generate(
        model="flux", prompt="an otter", size="512x512", n=2, response_format="b64_json"
    )
    answer = raw.parse()
    assert answer.data is not None and len(answer.data) == 2
    for item in answer.data:
        decoded = opened(image_bytes(prismgate.ImageObject(b64_json=item.b64_json)))
        assert decoded.size == (512, 512)
    assert float(raw.headers["x-prismgate-response-cost"]) == pytest.approx(0.05)
    as_url = client.images.with_raw_response.generate(
        model="schnell", prompt="an otter", response_format="url"
    )
    link = as_url.parse().data
    assert link is not None and link[0].url
    assert opened(httpx.get(link[0].url).content).size == (1024, 768)
    assert float(as_url.headers["x-prismgate-response-cost"]) == pytest.approx(0.003)
    assert [r.path for r in emu.requests if r.method == "POST"][-1] == "/run/fal-ai/flux/schnell"


def test_a_streamed_generation_ends_with_the_completed_image(
    emu: FalEmulator, serve: Callable[..., RunningProxy]
) -> None:
    events = list(generate(emu, stream=True, size="512x512"))
    assert [type(event).__name__ for event in events] == ["ImageCompletedEvent"]
    completed = events[0]
    assert isinstance(completed, ImageCompletedEvent)
    picture = opened(image_bytes(prismgate.ImageObject(b64_json=completed.b64_json)))
    assert picture.size == (512, 512)
    proxy = serve({"model_list": [model("flux", DEV, api_base=emu.base_url, api_key=emu.api_key)]})
    client = openai.OpenAI(api_key="sk-unused", base_url=proxy.base_url + "/v1")
    streamed = list(client.images.generate(model="flux", prompt="an otter", stream=True))
    assert [event.type for event in streamed] == ["image_generation.completed"]
    last = streamed[-1]
    assert isinstance(last, openai.types.ImageGenCompletedEvent)
    assert opened(base64.b64decode(last.b64_json)).size == (1024, 768)


def test_a_proxy_client_who_hangs_up_cancels_the_job(
    emu: FalEmulator, serve: Callable[..., RunningProxy]
) -> None:
    emu.run_seconds = 30
    proxy = serve({"model_list": [model("flux", DEV, api_base=emu.base_url, api_key=emu.api_key)]})
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            proxy.base_url + "/v1/images/generations",
            timeout=1.0,
            json={"model": "flux", "prompt": "an otter"},
        )
    for _ in range(100):
        if emu.cancels:
            break
        time.sleep(0.05)
    (job,) = emu.jobs.values()
    assert emu.cancels == [job.id] and job.cancelled


def test_a_custom_size_is_priced_by_its_megapixels(emu: FalEmulator) -> None:
    # fal bills per megapixel, counted up: 1536x1024 is 1.5 MP, so two.
    response = generate(emu, image_size={"width": 1536, "height": 1024})
    assert submitted(emu)[0]["image_size"] == {"width": 1536, "height": 1024}
    assert response.size == "1536x1024"
    assert response._hidden_params is not None
    assert response._hidden_params.response_cost == pytest.approx(2 * 0.025)
