"""The fal.ai emulator, through a real HTTP client: the queue's life cycle, the
synchronous host, validation, expiring result links and faults."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from .fal import FalEmulator
from .images import make_image

MODEL = "fal-ai/flux/dev"


@pytest.fixture(scope="module")
def server() -> Iterator[FalEmulator]:
    with FalEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(server: FalEmulator) -> Iterator[FalEmulator]:
    server.reset()
    yield server
    server.queue_seconds, server.run_seconds, server.url_ttl = 0.05, 0.1, 600.0


def auth(emu: FalEmulator, key: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Key {key or emu.api_key}"}


def submit(emu: FalEmulator, body: dict[str, Any], model: str = MODEL) -> httpx.Response:
    return httpx.post(f"{emu.base_url}/{model}", json=body, headers=auth(emu))


def wait_done(emu: FalEmulator, status_url: str) -> list[dict[str, Any]]:
    seen = []
    for _ in range(200):
        answer = httpx.get(status_url, headers=auth(emu)).json()
        seen.append(answer)
        if answer["status"] == "COMPLETED":
            return seen
        time.sleep(0.02)
    raise AssertionError("the job never completed")


def test_the_queue_life_cycle(emu: FalEmulator) -> None:
    emu.queue_seconds, emu.run_seconds = 0.8, 0.8  # wide: a busy machine polls late
    answer = submit(emu, {"prompt": "x", "image_size": "square", "num_images": 2})
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert set(job) >= {"request_id", "status_url", "response_url", "cancel_url"}
    # The app, without the model's subpath, names the queue's paths.
    assert job["status_url"] == f"{emu.base_url}/fal-ai/flux/requests/{job['request_id']}/status"
    states = [s["status"] for s in wait_done(emu, job["status_url"])]
    assert states[0] == "IN_QUEUE" and "IN_PROGRESS" in states and states[-1] == "COMPLETED"
    result = httpx.get(job["response_url"], headers=auth(emu)).json()
    assert [(i["width"], i["height"]) for i in result["images"]] == [(512, 512)] * 2
    assert result["has_nsfw_concepts"] == [False, False] and isinstance(result["seed"], int)
    picture = Image.open(io.BytesIO(httpx.get(result["images"][0]["url"]).content))
    assert picture.size == (512, 512) and picture.format == "JPEG"


def test_queue_position_counts_down(emu: FalEmulator) -> None:
    emu.queue_seconds = 3.0
    job = submit(emu, {"prompt": "x"}).json()
    first = httpx.get(job["status_url"], headers=auth(emu)).json()
    assert first["status"] == "IN_QUEUE" and first["queue_position"] >= 1


def test_cancel_before_completion_and_after(emu: FalEmulator) -> None:
    emu.run_seconds = 5
    job = submit(emu, {"prompt": "x"}).json()
    cancelled = httpx.put(job["cancel_url"], headers=auth(emu))
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "CANCELLATION_REQUESTED"
    status = httpx.get(job["status_url"], headers=auth(emu)).json()
    assert status["status"] == "COMPLETED" and status["error_type"] == "client_cancelled"
    again = httpx.put(job["cancel_url"], headers=auth(emu))
    assert again.status_code == 400 and again.json()["status"] == "ALREADY_COMPLETED"
    unknown = httpx.put(f"{emu.base_url}/fal-ai/flux/requests/nope/cancel", headers=auth(emu))
    assert unknown.status_code == 404


def test_failed_jobs(emu: FalEmulator) -> None:
    job = submit(emu, {"prompt": "explode"}).json()
    final = wait_done(emu, job["status_url"])[-1]
    assert final["error_type"] == "runner_server_error"
    result = httpx.get(job["response_url"], headers=auth(emu))
    assert result.status_code == 500 and result.headers["x-fal-error-type"] == "runner_server_error"
    refused = submit(emu, {"prompt": "something forbidden"}).json()
    wait_done(emu, refused["status_url"])
    detail = httpx.get(refused["response_url"], headers=auth(emu)).json()["detail"]
    assert detail[0]["type"] == "content_policy_violation" and detail[0]["loc"] == [
        "body",
        "prompt",
    ]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"num_images": 5}, "num_images"),
        ({"image_size": "huge"}, "image_size"),
        ({"image_size": {"width": 10, "height": 512}}, "image_size"),
        ({"output_format": "webp"}, "output_format"),
        ({"seed": "7"}, "seed"),
        ({"prompt": None}, "prompt"),
    ],
)
def test_validation_is_fals_422(emu: FalEmulator, extra: dict[str, Any], field: str) -> None:
    answer = submit(emu, {"prompt": "x", **extra})
    assert answer.status_code == 422
    entry = answer.json()["detail"][0]
    assert entry["loc"] == ["body", field] and {"msg", "type", "url"} <= set(entry)


def test_key_auth(emu: FalEmulator) -> None:
    answer = httpx.post(
        f"{emu.base_url}/{MODEL}",
        json={"prompt": "x"},
        headers={"Authorization": f"Bearer {emu.api_key}"},
    )
    assert answer.status_code == 401 and "detail" in answer.json()


def test_sync_host_and_sync_mode(emu: FalEmulator) -> None:
    answer = httpx.post(
        f"{emu.sync_url}/fal-ai/flux/schnell",
        headers=auth(emu),
        json={"prompt": "x", "sync_mode": True, "output_format": "png"},
    )
    assert answer.status_code == 200
    url = answer.json()["images"][0]["url"]
    assert url.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2]))).size == (1024, 768)
    assert emu.jobs == {}  # nothing queued


def test_kontext_edits_keep_the_input_size(emu: FalEmulator) -> None:
    source = base64.b64encode(make_image(640, 320, "png")).decode()
    answer = httpx.post(
        f"{emu.sync_url}/fal-ai/flux-pro/kontext",
        headers=auth(emu),
        json={"prompt": "x", "image_url": f"data:image/png;base64,{source}"},
    )
    assert answer.json()["images"][0]["width"] == 640
    missing = httpx.post(
        f"{emu.sync_url}/fal-ai/flux-pro/kontext", headers=auth(emu), json={"prompt": "x"}
    )
    assert missing.status_code == 422


def test_result_links_expire(emu: FalEmulator) -> None:
    emu.url_ttl = 1.0
    answer = httpx.post(f"{emu.sync_url}/{MODEL}", headers=auth(emu), json={"prompt": "x"})
    url = answer.json()["images"][0]["url"]
    assert httpx.get(url).status_code == 200
    time.sleep(1.05)
    assert httpx.get(url).status_code == 404


def test_faults(emu: FalEmulator) -> None:
    emu.fail_next("status", status=429, retry_after=2)
    limited = submit(emu, {"prompt": "x"})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    job = submit(emu, {"prompt": "x"}).json()
    emu.fail_next_poll("status", status=503)
    assert httpx.get(job["status_url"], headers=auth(emu)).status_code == 503
    assert httpx.get(job["status_url"], headers=auth(emu)).status_code == 200
    assert emu.submissions == 2
