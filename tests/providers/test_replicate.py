"""Replicate: a prediction answered at once when fast (`Prefer: wait`), polled through the
job engine when not, cancelled at the deadline or when the caller leaves; its output
files read at once; the mapping onto the FLUX models' input; FLUX.1 Kontext edits."""

from __future__ import annotations

import asyncio
import base64
import io
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

import prismgate
from prismgate.providers.jobs import JobProgress, JobState
from prismgate.providers.replicate.fields import FLUX_FIELDS
from tests.emulators.images import make_image
from tests.emulators.replicate import ReplicateEmulator
from tests.golden import assert_golden
from tests.images import image_bytes, opened
from tests.serving import RunningProxy, model

ENV = ("REPLICATE_API_KEY", "REPLICATE_API_TOKEN", "REPLICATE_API_BASE")
SCHNELL = "black-forest-labs/flux-schnell"
KONTEXT = "black-forest-labs/flux-kontext-pro"


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _server() -> Iterator[ReplicateEmulator]:
    with ReplicateEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(_server: ReplicateEmulator) -> ReplicateEmulator:
    _server.reset()
    return _server


def generate(emu: ReplicateEmulator, name: str = SCHNELL, **kwargs: Any) -> prismgate.ImageResponse:
    return prismgate.image_generation(
        model=f"replicate/{name}",
        prompt=kwargs.pop("prompt", "an otter"),
        api_base=emu.base_url + "/v1",
        api_key=emu.api_key,
        **kwargs,
    )


def creates(emu: ReplicateEmulator) -> list[dict[str, Any]]:
    return [r.json for r in emu.requests if r.method == "POST" and r.json is not None]


ROWS = [
    ("n", 3, {"num_outputs": 3}),
    ("size", "1024x576", {"aspect_ratio": "16:9"}),
    ("output_format", "jpeg", {"output_format": "jpg"}),
    ("output_format", "png", {"output_format": "png"}),
    ("seed", 42, {"seed": 42}),
    ("num_inference_steps", 2, {"num_inference_steps": 2}),
    ("go_fast", False, {"go_fast": False}),
    ("megapixels", "0.25", {"megapixels": "0.25"}),
    ("disable_safety_checker", True, {"disable_safety_checker": True}),
]


def test_rows_cover_the_table() -> None:
    assert {param for param, _, _ in ROWS} == set(FLUX_FIELDS) - {"prompt"}


@pytest.mark.parametrize(("param", "value", "expected"), ROWS)
def test_each_row_reaches_the_input(
    emu: ReplicateEmulator, param: str, value: Any, expected: dict[str, Any]
) -> None:
    generate(emu, **{param: value})
    assert creates(emu) == [{"input": {"prompt": "an otter", **expected}}]


def test_the_fast_path_answers_in_the_create_call(emu: ReplicateEmulator) -> None:
    response = generate(emu, n=2, size="1024x1024", response_format="b64_json")
    create, *downloads = emu.requests
    assert create.path == f"/v1/models/{SCHNELL}/predictions"
    assert create.headers["prefer"] == "wait=60"
    assert create.headers["authorization"] == f"Bearer {emu.api_key}"
    assert [d.path[:7] for d in downloads] == ["/files/", "/files/"]  # no poll at all
    assert len(response.data) == 2
    assert all(opened(image_bytes(item)).size == (1024, 1024) for item in response.data)
    assert response._hidden_params is not None
    assert response._hidden_params.response_cost == pytest.approx(2 * 0.003)


def test_a_slow_prediction_is_polled_with_progress(emu: ReplicateEmulator) -> None:
    emu.starting_seconds, emu.processing_seconds, emu.max_hold = 0.3, 1.2, 0.1
    seen: list[JobProgress] = []
    response = generate(emu, on_progress=seen.append)
    assert len(response.data) == 1
    polls = [r for r in emu.requests if r.method == "GET" and "/predictions/" in r.path]
    assert polls and creates(emu)[0] == {"input": {"prompt": "an otter"}}
    states = [e.state for e in seen]
    assert JobState.RUNNING in states
    assert any(e.progress is not None and 0 < e.progress < 1 for e in seen)


def test_a_version_is_created_on_the_predictions_endpoint(emu: ReplicateEmulator) -> None:
    version = "5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637"
    generate(emu, f"{SCHNELL}:{version}")
    assert emu.requests[0].path == "/v1/predictions"
    assert creates(emu) == [{"version": version, "input": {"prompt": "an otter"}}]


def test_n_above_four_fans_out_and_pro_makes_one_each(emu: ReplicateEmulator) -> None:
    assert len(generate(emu, n=6).data) == 6
    assert sorted(b["input"]["num_outputs"] for b in creates(emu)) == [2, 4]
    emu.reset()
    response = generate(emu, "black-forest-labs/flux-1.1-pro", n=2)
    assert len(response.data) == 2 and len(emu.runs) == 2
    assert response._hidden_params is not None
    assert response._hidden_params.response_cost == pytest.approx(0.08)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"quality": "hd"}, "quality"),
        ({"negative_prompt": "blur"}, "negative_prompt"),
        ({"size": "1280x800"}, "size"),
        ({"output_format": "gif"}, "output_format"),
    ],
)
def test_what_the_model_cannot_do_is_a_clear_400(
    emu: ReplicateEmulator, kwargs: dict[str, Any], param: str
) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        generate(emu, **kwargs)
    assert caught.value.param == param and emu.requests == []


def test_replicates_problem_details_are_kept(emu: ReplicateEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        generate(emu, sampler="euler")
    assert caught.value.upstream_status == 422
    assert "Input validation failed" in caught.value.message and "sampler" in caught.value.message


def test_the_deadline_cancels_the_prediction(emu: ReplicateEmulator) -> None:
    emu.starting_seconds, emu.max_hold = 30, 0.1
    started = time.monotonic()
    with pytest.raises(prismgate.Timeout) as caught:
        generate(emu, timeout=1.5, num_retries=3)
    assert time.monotonic() - started < 5 and "it was cancelled" in caught.value.message
    (run,) = emu.runs.values()
    assert run.cancelled
    assert [r.path for r in emu.requests if r.path.endswith("/cancel")] == [
        f"/v1/predictions/{run.id}/cancel"
    ]


def test_a_caller_who_leaves_cancels_the_prediction(emu: ReplicateEmulator) -> None:
    emu.starting_seconds, emu.max_hold = 30, 0.1

    async def leave() -> None:
        call = prismgate.aimage_generation(
            model=f"replicate/{SCHNELL}",
            prompt="an otter",
            api_base=emu.base_url + "/v1",
            api_key=emu.api_key,
        )
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(call, 0.5)
        await asyncio.sleep(0.3)  # the shielded cancel finishes by itself

    asyncio.run(leave())
    (run,) = emu.runs.values()
    assert run.cancelled


@pytest.mark.parametrize(
    ("prompt", "error", "code"),
    [
        ("explode", prismgate.APIError, "job_failed"),
        ("nsfw", prismgate.ContentPolicyViolationError, "content_policy_violation"),
    ],
)
def test_a_failed_prediction_is_final(
    emu: ReplicateEmulator, prompt: str, error: type[Exception], code: str
) -> None:
    for hold in (60, 0.1):  # answered within the wait, and found by polling
        emu.reset()
        emu.processing_seconds, emu.max_hold = 0.3, hold
        with pytest.raises(error) as caught:
            generate(emu, prompt=prompt, num_retries=3)
        assert getattr(caught.value, "code", None) == code and len(emu.runs) == 1


def test_an_expired_output_file_is_a_clear_error(emu: ReplicateEmulator) -> None:
    emu.file_ttl = 0
    with pytest.raises(prismgate.APIError) as caught:
        generate(emu, num_retries=2)
    assert caught.value.code == "result_expired" and len(emu.runs) == 1


def test_a_5xx_on_a_poll_is_polled_again(emu: ReplicateEmulator) -> None:
    emu.processing_seconds, emu.max_hold = 0.3, 0.1
    emu.fail_next_poll("status", status=502, times=2)
    assert len(generate(emu).data) == 1 and len(emu.runs) == 1


def test_outputs_on_a_foreign_host_are_not_followed(emu: ReplicateEmulator) -> None:
    emu.output_base = "https://replicate.delivery.attacker.example"
    with pytest.raises(prismgate.APIError) as caught:
        generate(emu, num_retries=2)
    assert caught.value.code == "untrusted_upstream_url" and len(emu.runs) == 1


def test_a_429_on_create_is_retried(emu: ReplicateEmulator) -> None:
    emu.fail_next("status", status=429, retry_after=0.1)
    assert len(generate(emu, num_retries=1).data) == 1 and len(emu.runs) == 1


def test_through_the_proxy_for_url_and_b64_json(
    emu: ReplicateEmulator, serve: Callable[..., RunningProxy]
) -> None:
    proxy = serve(
        {
            "model_list": [
                model(
                    "schnell",
                    f"replicate/{SCHNELL}",
                    api_base=emu.base_url + "/v1",
                    api_key=emu.api_key,
                )
            ],
        }
    )
    client = openai.OpenAI(api_key="sk-unused", base_url=proxy.base_url + "/v1")
    raw = client.images.with_raw_response.generate(
        model="schnell", prompt="an otter", size="1024x1024", n=2, response_format="b64_json"
    )
    answer = raw.parse()
    assert answer.data is not None and len(answer.data) == 2
    assert raw.headers["x-prismgate-response-cost"] == "0.006000"
    linked = client.images.generate(model="schnell", prompt="an otter", response_format="url")
    url = linked.data[0].url  # type: ignore[index]
    assert url and url.startswith(proxy.base_url)
    assert opened(httpx.get(url).content).size == (1024, 1024)


IDEOGRAM = "ideogram-ai/ideogram-v3-turbo"


@pytest.mark.parametrize(
    ("param", "value", "expected"),
    [
        ("size", "1280x800", {"resolution": "1280x800"}),
        ("seed", 7, {"seed": 7}),
        ("style_type", "Design", {"style_type": "Design"}),
        ("magic_prompt_option", "Off", {"magic_prompt_option": "Off"}),
    ],
)
def test_ideogram_takes_an_exact_resolution(
    emu: ReplicateEmulator, param: str, value: Any, expected: dict[str, Any]
) -> None:
    response = generate(emu, IDEOGRAM, response_format="b64_json", **{param: value})
    assert creates(emu) == [{"input": {"prompt": "an otter", **expected}}]
    if param == "size":
        assert opened(image_bytes(response.data[0])).size == (1280, 800)


def test_ideogram_refuses_a_size_off_its_list_and_prices_its_tier(emu: ReplicateEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        generate(emu, IDEOGRAM, size="1000x1000")
    assert caught.value.param == "size" and "1024x1024" in caught.value.message
    with pytest.raises(prismgate.BadRequestError) as refused:
        generate(emu, IDEOGRAM, output_format="png")
    assert refused.value.param == "output_format" and emu.requests == []
    response = generate(emu, "ideogram-ai/ideogram-v3-quality", n=2)
    assert response._hidden_params is not None
    assert response._hidden_params.response_cost == pytest.approx(2 * 0.09)


def test_data_uri_outputs_are_decoded_without_a_download(emu: ReplicateEmulator) -> None:
    emu.data_uris = True
    response = generate(emu, n=2, output_format="png", response_format="b64_json")
    assert len(emu.requests) == 1 and len(response.data) == 2
    assert opened(image_bytes(response.data[0])).format == "PNG"


def test_golden_requests(emu: ReplicateEmulator) -> None:
    generate(emu, n=2, size="1344x768", output_format="jpeg", seed=5, go_fast=False)
    assert_golden("replicate_flux_schnell_all_params", emu.requests[0])
    emu.reset()
    generate(emu, IDEOGRAM, size="1024x1024", style_type="Design")
    assert_golden("replicate_ideogram_v3_turbo_resolution", emu.requests[0])


# --- edits: FLUX.1 Kontext ------------------------------------------------------------


def edit(emu: ReplicateEmulator, image: bytes, **kwargs: Any) -> prismgate.ImageResponse:
    return prismgate.image_edit(
        model=f"replicate/{kwargs.pop('name', KONTEXT)}",
        image=image,
        prompt=kwargs.pop("prompt", "make it a watercolour"),
        api_base=emu.base_url + "/v1",
        api_key=emu.api_key,
        **kwargs,
    )


def test_kontext_edits_a_small_image_sent_inline(emu: ReplicateEmulator) -> None:
    answer = edit(emu, make_image(320, 200, "png", 1))
    made = opened(image_bytes(answer.data[0]))
    assert (made.format, made.size) == ("PNG", (320, 200))  # the input's own ratio
    (sent,) = creates(emu)
    assert sent["input"]["input_image"].startswith("data:image/png;base64,")
    assert "aspect_ratio" not in sent["input"]  # Replicate's default: match_input_image
    assert not emu.uploads and not emu.deleted_uploads
    assert answer._hidden_params is not None
    assert answer._hidden_params.response_cost == pytest.approx(0.04)


def test_a_large_image_goes_through_the_files_api_and_is_deleted_after(
    emu: ReplicateEmulator,
) -> None:
    noise = Image.frombytes("RGB", (700, 500), random.Random(2).randbytes(700 * 500 * 3))
    out = io.BytesIO()
    noise.save(out, format="PNG")
    large = out.getvalue()  # noise does not compress
    assert len(large) > 1_000_000  # above what Replicate takes inline
    answer = edit(emu, large, size="1024x576", name="black-forest-labs/flux-kontext-max")
    assert opened(image_bytes(answer.data[0])).size == (1360, 768)  # 16:9 asked
    (sent,) = creates(emu)
    assert sent["input"]["input_image"].startswith(emu.base_url + "/v1/files/")
    assert sent["input"]["aspect_ratio"] == "16:9"
    uploaded = sent["input"]["input_image"].rpartition("/")[2]
    assert emu.deleted_uploads == [uploaded]
    assert answer._hidden_params is not None
    assert answer._hidden_params.response_cost == pytest.approx(0.08)


def test_kontext_refuses_a_mask_and_a_second_image(emu: ReplicateEmulator) -> None:
    png = make_image(64, 64, "png", 3)
    with pytest.raises(prismgate.BadRequestError) as caught:
        prismgate.image_edit(
            model=f"replicate/{KONTEXT}",
            image=png,
            mask=png,
            prompt="x",
            api_base=emu.base_url + "/v1",
            api_key=emu.api_key,
        )
    assert caught.value.param == "mask"
    with pytest.raises(prismgate.BadRequestError) as caught:
        edit(emu, [png, png])  # type: ignore[arg-type]
    assert caught.value.param == "image" and "at most 1 input image;" in caught.value.message
    assert not emu.requests


def test_a_model_that_does_not_edit_is_refused_before_any_call(emu: ReplicateEmulator) -> None:
    with pytest.raises(prismgate.BadRequestError) as caught:
        edit(emu, make_image(64, 64, "png", 4), name=SCHNELL)
    assert "edit" in caught.value.message
    assert not emu.requests


def test_an_edit_through_the_proxy(
    emu: ReplicateEmulator, serve: Callable[..., RunningProxy], tmp_path: Any
) -> None:
    proxy = serve({
        "model_list": [model("kontext", f"replicate/{KONTEXT}", api_base=emu.base_url + "/v1",
                             api_key=emu.api_key)],
        "general_settings": {"image_store": {"path": str(tmp_path)}},
    })  # fmt: skip
    client = openai.OpenAI(api_key="sk-unused", base_url=proxy.base_url + "/v1")
    answer = client.images.edit(
        model="kontext",
        image=("in.png", make_image(256, 128, "png", 5), "image/png"),
        prompt="add a moon",
        response_format="b64_json",
    )
    assert answer.data is not None and answer.data[0].b64_json
    assert opened(base64.b64decode(answer.data[0].b64_json)).size == (256, 128)
