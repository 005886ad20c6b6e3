"""The Black Forest Labs emulator, through a real HTTP client: submit, poll, download."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from .black_forest_labs import BflEmulator


@pytest.fixture(scope="module")
def server() -> Iterator[BflEmulator]:
    with BflEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(server: BflEmulator) -> BflEmulator:
    server.reset()
    return server


def submit(
    emu: BflEmulator, body: dict[str, Any], model: str = "flux-2-pro", key: str | None = None
) -> httpx.Response:
    return httpx.post(
        f"{emu.base_url}/v1/{model}", json=body, headers={"x-key": key or emu.api_key}
    )


def poll(emu: BflEmulator, url: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(url, headers={"x-key": emu.api_key}).json()
    return answer


def test_the_whole_life_cycle(emu: BflEmulator) -> None:
    emu.queued_seconds, emu.running_seconds = 0.3, 1.0
    task = submit(emu, {"prompt": "x", "width": 640, "height": 320, "output_format": "png"})
    assert task.status_code == 200 and set(task.json()) == {
        "id",
        "polling_url",
        "cost",
        "input_mp",
        "output_mp",
    }
    url = task.json()["polling_url"]
    first = poll(emu, url)
    assert first["status"] == "Pending" and first["progress"] is None
    time.sleep(0.4)
    assert poll(emu, url)["progress"] > 0
    time.sleep(1.0)
    ready = poll(emu, url)
    assert ready["status"] == "Ready"
    image = Image.open(io.BytesIO(httpx.get(ready["result"]["sample"]).content))
    assert image.size == (640, 320) and image.format == "PNG"


def test_samples_expire(emu: BflEmulator) -> None:
    emu.sample_ttl = 0.1
    url = submit(emu, {"prompt": "x"}).json()["polling_url"]
    sample = poll(emu, url)["result"]["sample"]
    time.sleep(0.15)
    assert httpx.get(sample).status_code == 403


OUTCOMES = [
    ("explode", "Error"),
    ("moderate-output", "Content Moderated"),
    ("moderate-request", "Request Moderated"),
]


@pytest.mark.parametrize(("prompt", "status"), OUTCOMES)
def test_failed_and_moderated_tasks(emu: BflEmulator, prompt: str, status: str) -> None:
    url = submit(emu, {"prompt": prompt}).json()["polling_url"]
    answer = poll(emu, url)
    assert answer["status"] == status and answer["result"] is None and answer["details"]


def test_unknown_task(emu: BflEmulator) -> None:
    assert poll(emu, emu.base_url + "/v1/get_result?id=nope")["status"] == "Task not found"


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        ("flux-2-pro", {"width": 1000}, "width"),
        ("flux-2-pro", {"width": 4096, "height": 2048}, "width"),
        ("flux-2-pro", {"safety_tolerance": 6}, "safety_tolerance"),
        ("flux-kontext-pro", {"aspect_ratio": "3:1"}, "aspect_ratio"),
        ("flux-pro-1.1", {"width": 1536}, "width"),
        ("flux-2-pro", {"output_format": "webp"}, "output_format"),
        ("flux-2-pro", {"prompt": None}, "prompt"),
    ],
)
def test_validation(emu: BflEmulator, model: str, body: dict[str, Any], field: str) -> None:
    answer = submit(emu, {"prompt": "x", **body}, model)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", field]


def test_auth_unknown_model_and_faults(emu: BflEmulator) -> None:
    assert submit(emu, {"prompt": "x"}, key="bad").status_code == 403
    assert submit(emu, {"prompt": "x"}, model="flux-9").status_code == 404
    emu.fail_next("status", status=429, retry_after=2)
    limited = submit(emu, {"prompt": "x"})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    url = submit(emu, {"prompt": "x"}).json()["polling_url"]
    emu.fail_next_poll("status", status=502)
    assert httpx.get(url, headers={"x-key": emu.api_key}).status_code == 502
    assert poll(emu, url)["status"] == "Ready"
