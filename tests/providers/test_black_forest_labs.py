"""Black Forest Labs: a task submitted, polled to its image through the job engine, the
image read from a link that expires; the mapping, the life cycle and the host check."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

import prismgate
from prismgate.providers import get_provider
from prismgate.providers.black_forest_labs.fields import FLUX2_FIELDS, KONTEXT_FIELDS
from prismgate.providers.black_forest_labs.job import trusted_url
from prismgate.providers.jobs import JobProgress, JobState
from tests.emulators.black_forest_labs import BflEmulator
from tests.emulators.images import make_image
from tests.golden import assert_golden
from tests.images import image_bytes, opened
from tests.providers.probes import probe_status
from tests.serving import RunningProxy, model

ENV = ("BFL_API_KEY", "BFL_API_BASE")


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _server() -> Iterator[BflEmulator]:
    with BflEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(_server: BflEmulator) -> BflEmulator:
    _server.reset()
    return _server


def generate(emu: BflEmulator, name: str = "flux-2-pro", **kwargs: Any) -> prismgate.ImageResponse:
    return prismgate.image_generation(
        model=f"black_forest_labs/{name}",
        prompt=kwargs.pop("prompt", "an otter"),
        api_base=emu.base_url + "/v1",
        api_key=emu.api_key,
        **kwargs,
    )


def submitted(emu: BflEmulator) -> list[dict[str, Any]]:
    return [r.json for r in emu.requests if r.method == "POST" and r.json is not None]


# (model, request parameter, value, body fields BFL must receive)
ROWS = [
    ("flux-2-pro", "size", "1536x1024", {"width": 1536, "height": 1024}),
    ("flux-2-pro", "output_format", "png", {"output_format": "png"}),
    ("flux-2-pro", "seed", 42, {"seed": 42}),
    ("flux-2-pro", "safety_tolerance", 4, {"safety_tolerance": 4}),
    ("flux-kontext-pro", "size", "1024x1024", {"aspect_ratio": "1:1"}),
    ("flux-kontext-pro", "size", "1920x1080", {"aspect_ratio": "16:9"}),
    ("flux-kontext-pro", "prompt_upsampling", True, {"prompt_upsampling": True}),
    ("flux-pro-1.1", "size", "1024x768", {"width": 1024, "height": 768}),
    ("flux-pro-1.1-ultra", "size", "2560x1080", {"aspect_ratio": "21:9"}),
    ("flux-pro-1.1-ultra", "raw", True, {"raw": True}),
]


def test_rows_cover_the_tables() -> None:
    covered = {(m, p) for m, p, _, _ in ROWS}
    assert {("flux-2-pro", p) for p in FLUX2_FIELDS if p != "prompt"} <= covered
    shared = ("prompt", "output_format", "seed", "safety_tolerance")
    assert {("flux-kontext-pro", p) for p in KONTEXT_FIELDS if p not in shared} <= covered


@pytest.mark.parametrize(("name", "param", "value", "expected"), ROWS)
def test_each_row_reaches_the_body(
    emu: BflEmulator, name: str, param: str, value: Any, expected: dict[str, Any]
) -> None:
    generate(emu, name, **{param: value})
    assert submitted(emu) == [{"prompt": "an otter", **expected}]


def test_a_task_is_submitted_polled_and_its_image_read(emu: BflEmulator) -> None:
    emu.queued_seconds, emu.running_seconds = 0.2, 0.2
    response = generate(emu, size="768x512", response_format="b64_json", seed=7)
    post, *polls, delivery = emu.requests
    assert (post.method, post.path) == ("POST", "/v1/flux-2-pro")
    assert post.headers["x-key"] == emu.api_key
    assert polls and all(p.path == "/v1/get_result" for p in polls)
    assert all(p.headers["x-key"] == emu.api_key for p in polls)
    assert delivery.path.startswith("/delivery/") and "x-key" not in delivery.headers
    assert len(response.data) == 1 and response.data[0].url is None
    assert opened(image_bytes(response.data[0])).size == (768, 512)


def test_n_fans_out_one_task_each_and_prices_each_image(emu: BflEmulator) -> None:
    response = generate(emu, n=3, size="1024x1024", response_format="b64_json")
    assert len(response.data) == 3 and len(emu.tasks) == 3
    assert all("n" not in body for body in submitted(emu))
    assert response._hidden_params is not None
    assert response._hidden_params.response_cost == pytest.approx(3 * 0.03)


@pytest.mark.parametrize(
    ("name", "size", "cost"),
    [
        ("flux-2-pro", "1536x1024", 0.045),
        ("flux-2-pro", "2048x2048", 0.075),
        ("flux-kontext-pro", "1024x1024", 0.04),
        ("flux-kontext-max", None, 0.08),
        ("flux-pro-1.1", None, 0.04),
        ("flux-pro-1.1-ultra", "1024x1024", 0.06),
    ],
)
def test_cost_per_image(emu: BflEmulator, name: str, size: str | None, cost: float) -> None:
    response = generate(emu, name, **({"size": size} if size else {}))
    assert response._hidden_params is not None
    assert response._hidden_params.response_cost == pytest.approx(cost)


def test_a_near_ratio_is_adjusted_and_reported(emu: BflEmulator) -> None:
    response = generate(emu, "flux-kontext-pro", size="1366x768")
    assert submitted(emu)[-1]["aspect_ratio"] == "16:9"
    assert response._hidden_params is not None
    assert response._hidden_params.adjusted == ("size=1366x768->aspect_ratio=16:9",)


@pytest.mark.parametrize(
    ("name", "kwargs", "param", "says"),
    [
        ("flux-2-pro", {"quality": "hd"}, "quality", "does not support 'quality'"),
        ("flux-2-pro", {"negative_prompt": "blur"}, "negative_prompt", "negative_prompt"),
        ("flux-2-pro", {"size": "1000x1000"}, "size", "multiples of 16"),
        ("flux-2-pro", {"size": "4096x2048"}, "size", "4,194,304 pixels"),
        ("flux-pro-1.1", {"size": "2048x1024"}, "size", "at most 1440 px"),
        ("flux-kontext-pro", {"size": "1280x800"}, "size", "aspect ratios 21:9"),
        ("flux-2-pro", {"output_format": "webp"}, "output_format", "jpeg, png"),
    ],
)
def test_what_bfl_cannot_do_is_a_clear_400_before_any_call(
    emu: BflEmulator, name: str, kwargs: dict[str, Any], param: str, says: str
) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        generate(emu, name, **kwargs)
    assert caught.value.param == param and says in caught.value.message
    assert emu.requests == []


def test_drop_params_drops_what_bfl_has_no_meaning_for(emu: BflEmulator) -> None:
    response = generate(emu, quality="hd", negative_prompt="blur", drop_params=True)
    assert submitted(emu) == [{"prompt": "an otter"}]
    assert response._hidden_params is not None
    assert set(response._hidden_params.dropped_params) == {"quality", "negative_prompt"}


def test_bfls_422_names_the_field(emu: BflEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        generate(emu, safety_tolerance=9)
    assert caught.value.upstream_status == 422 and caught.value.param == "safety_tolerance"
    assert "safety_tolerance: Input should be between 0 and 5" in caught.value.message


def test_progress_is_reported_as_the_task_moves(emu: BflEmulator) -> None:
    emu.queued_seconds, emu.running_seconds = 1.5, 1.5  # wide: a busy machine polls late
    seen: list[JobProgress] = []
    generate(emu, on_progress=seen.append)
    states = [event.state for event in seen]
    assert states[0] is JobState.QUEUED and JobState.RUNNING in states
    running = [e.progress for e in seen if e.state is JobState.RUNNING]
    assert all(p is not None and 0 < p <= 1 for p in running)
    assert {e.provider for e in seen} == {"black_forest_labs"}
    assert {e.job_id for e in seen} == set(emu.tasks)


def test_the_deadline_is_a_timeout_and_nothing_is_submitted_again(emu: BflEmulator) -> None:
    emu.queued_seconds = 30
    started = time.monotonic()
    with pytest.raises(prismgate.Timeout) as caught:
        generate(emu, timeout=0.6, num_retries=3)
    assert time.monotonic() - started < 5
    assert "could not be cancelled" in caught.value.message  # BFL has no cancel
    assert caught.value.code == "job_timeout" and len(emu.tasks) == 1
    assert not any("cancel" in r.path for r in emu.requests)


def test_a_caller_who_leaves_stops_the_polling(emu: BflEmulator) -> None:
    emu.queued_seconds = 30

    async def leave() -> None:
        call = prismgate.aimage_generation(
            model="black_forest_labs/flux-2-pro",
            prompt="an otter",
            api_base=emu.base_url + "/v1",
            api_key=emu.api_key,
        )
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(call, 0.5)
        polls = len(emu.requests)
        await asyncio.sleep(0.6)
        assert len(emu.requests) == polls  # nobody polls a task whose caller left

    asyncio.run(leave())
    assert len(emu.tasks) == 1


@pytest.mark.parametrize(
    ("prompt", "error", "code"),
    [
        ("please explode", prismgate.APIError, "job_failed"),
        ("moderate-output", prismgate.ContentPolicyViolationError, "content_policy_violation"),
        ("moderate-request", prismgate.ContentPolicyViolationError, "content_policy_violation"),
    ],
)
def test_a_failed_or_moderated_task_is_final(
    emu: BflEmulator, prompt: str, error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as caught:
        generate(emu, prompt=prompt, num_retries=3)
    assert getattr(caught.value, "code", None) == code
    assert len(emu.tasks) == 1  # never submitted again
    if error is prismgate.ContentPolicyViolationError:
        assert "moderation refused" in str(caught.value)


def test_a_task_bfl_does_not_know_is_final(emu: BflEmulator) -> None:
    emu.lose_tasks = True
    with pytest.raises(prismgate.APIError) as caught:
        generate(emu, num_retries=2)
    assert caught.value.code == "job_not_found" and len(emu.tasks) == 1


def test_an_expired_result_link_is_a_clear_error(emu: BflEmulator) -> None:
    emu.sample_ttl = 0
    with pytest.raises(prismgate.APIError) as caught:
        generate(emu, num_retries=2)
    assert caught.value.code == "result_expired" and "expired (403)" in caught.value.message
    assert len(emu.tasks) == 1


def test_a_5xx_on_a_poll_or_a_download_is_polled_again(emu: BflEmulator) -> None:
    emu.fail_next_poll("status", status=503, times=2)
    emu.fail_next_delivery("status", status=500)
    response = generate(emu, response_format="b64_json")
    assert len(response.data) == 1 and len(emu.tasks) == 1


def test_a_429_on_submit_is_retried_after_its_retry_after(emu: BflEmulator) -> None:
    emu.fail_next("status", status=429, retry_after=0.1, message="too many active tasks")
    response = generate(emu, num_retries=1)
    assert len(response.data) == 1
    assert len([r for r in emu.requests if r.method == "POST"]) == 2 and len(emu.tasks) == 1


def test_a_polling_url_on_a_foreign_host_is_never_followed(emu: BflEmulator) -> None:
    emu.polling_base = "https://bfl.ai.attacker.example"
    with pytest.raises(prismgate.APIError) as caught:
        generate(emu, num_retries=3)
    assert caught.value.code == "untrusted_upstream_url"
    assert "bfl.ai.attacker.example" in caught.value.message
    assert len(emu.requests) == 1 and len(emu.tasks) == 1  # one submission, nothing followed


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("https://api.eu2.bfl.ai/v1/get_result?id=1", True),
        ("https://delivery-eu1.bfl.ai/results/x.jpeg?sig=1", True),
        ("https://bfl.ai/v1/get_result", True),
        ("http://api.bfl.ai/v1/get_result", False),  # https only
        ("https://evilbfl.ai/v1/get_result", False),
        ("https://bfl.ai.evil.example/v1", False),
        ("http://127.0.0.1:9/v1/get_result", False),  # not the api_base's port
        ("http://127.0.0.1:8/v1/get_result", True),
        ("/v1/get_result", False),
    ],
)
def test_which_hosts_are_followed(url: str, trusted: bool) -> None:
    assert trusted_url(url, "http://127.0.0.1:8/v1") is trusted


def test_an_edit_sends_the_input_images(emu: BflEmulator) -> None:
    picture = io.BytesIO(make_image(640, 480, "png", 3))
    picture.name = "in.png"
    response = prismgate.image_edit(
        model="black_forest_labs/flux-kontext-pro",
        prompt="make it blue",
        image=[picture],
        api_base=emu.base_url + "/v1",
        api_key=emu.api_key,
        response_format="b64_json",
    )
    body = submitted(emu)[-1]
    assert set(body) == {"prompt", "input_image"} and body["prompt"] == "make it blue"
    assert opened(image_bytes(response.data[0])).format == "JPEG"


def test_an_edit_with_a_mask_is_refused(emu: BflEmulator) -> None:
    picture = make_image(64, 64, "png", 1)
    with pytest.raises(prismgate.BadRequestError) as caught:
        prismgate.image_edit(
            model="black_forest_labs/flux-2-pro",
            prompt="x",
            image=[picture],
            mask=picture,
            api_base=emu.base_url + "/v1",
            api_key=emu.api_key,
        )
    assert caught.value.param == "mask" and emu.requests == []


def test_the_provider_declaration() -> None:
    provider = get_provider("black_forest_labs")
    assert provider.credentials.default_api_base == "https://api.bfl.ai/v1"
    assert provider.image_edit is not None and provider.settings == ()


def test_through_the_proxy_for_url_and_b64_json(
    emu: BflEmulator, serve: Callable[..., RunningProxy]
) -> None:
    proxy = serve(
        {
            "model_list": [
                model(
                    "flux",
                    "black_forest_labs/flux-2-pro",
                    api_base=emu.base_url + "/v1",
                    api_key=emu.api_key,
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
    assert raw.headers["x-prismgate-response-cost"] == "0.060000"
    linked = client.images.with_raw_response.generate(
        model="flux", prompt="an otter", response_format="url"
    )
    url = linked.parse().data[0].url  # type: ignore[index]
    assert url and url.startswith(proxy.base_url)  # the gateway's own signed link
    fetched = httpx.get(url)
    assert fetched.status_code == 200 and opened(fetched.content).size == (1024, 1024)
    assert linked.headers["x-prismgate-response-cost"] == "0.030000"


def test_golden_requests(emu: BflEmulator) -> None:
    generate(emu, size="1920x1088", seed=42, output_format="png", safety_tolerance=2)
    assert_golden("black_forest_labs_flux_2_pro_all_params", emu.requests[0])
    emu.reset()
    generate(emu, "flux-kontext-pro", size="1024x768", seed=1, prompt_upsampling=False)
    assert_golden("black_forest_labs_flux_kontext_pro_ratio", emu.requests[0])


def test_health_probe_reads_the_credits_for_free(emu: BflEmulator) -> None:
    assert probe_status("black_forest_labs", emu.base_url + "/v1", emu.api_key) == 200
    assert emu.requests[-1].path == "/v1/credits"
    assert probe_status("black_forest_labs", emu.base_url + "/v1", "wrong-key") == 403
