"""The Replicate emulator, through a real HTTP client: create, wait, poll, cancel, files."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from .replicate import ReplicateEmulator

SCHNELL = "black-forest-labs/flux-schnell"


@pytest.fixture(scope="module")
def server() -> Iterator[ReplicateEmulator]:
    with ReplicateEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu(server: ReplicateEmulator) -> ReplicateEmulator:
    server.reset()
    return server


def create(emu: ReplicateEmulator, input_: dict[str, Any], wait: bool = False) -> httpx.Response:
    headers = {"Authorization": f"Bearer {emu.api_key}", **({"Prefer": "wait=5"} if wait else {})}
    url = f"{emu.base_url}/v1/models/{SCHNELL}/predictions"
    return httpx.post(url, json={"input": input_}, headers=headers)


def get(emu: ReplicateEmulator, url: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(
        url, headers={"Authorization": f"Bearer {emu.api_key}"}
    ).json()
    return answer


def test_prefer_wait_answers_the_finished_prediction(emu: ReplicateEmulator) -> None:
    emu.processing_seconds = 0.2
    answer = create(emu, {"prompt": "x", "num_outputs": 2, "aspect_ratio": "16:9"}, wait=True)
    body = answer.json()
    assert answer.status_code == 201 and body["status"] == "succeeded" and len(body["output"]) == 2
    image = Image.open(io.BytesIO(httpx.get(body["output"][0]).content))
    assert image.format == "WEBP" and image.width > image.height


def test_the_life_cycle_by_polling(emu: ReplicateEmulator) -> None:
    emu.starting_seconds, emu.processing_seconds = 0.2, 1.0
    body = create(emu, {"prompt": "x"}).json()
    assert body["status"] == "starting" and set(body["urls"]) == {"get", "cancel"}
    time.sleep(0.4)
    running = get(emu, body["urls"]["get"])
    assert running["status"] == "processing" and "%|" in running["logs"]
    time.sleep(1.0)
    assert get(emu, body["urls"]["get"])["status"] == "succeeded"


def test_cancel_and_expiry(emu: ReplicateEmulator) -> None:
    emu.starting_seconds = 10
    body = create(emu, {"prompt": "x"}).json()
    cancelled = httpx.post(
        body["urls"]["cancel"], headers={"Authorization": f"Bearer {emu.api_key}"}
    )
    assert cancelled.json()["status"] == "canceled"
    emu.reset()
    emu.file_ttl = 0.05
    output = create(emu, {"prompt": "x"}, wait=True).json()["output"][0]
    time.sleep(0.1)
    assert httpx.get(output).status_code == 404


@pytest.mark.parametrize(
    ("input_", "field"),
    [
        ({"prompt": "x", "num_outputs": 5}, "num_outputs"),
        ({"prompt": "x", "aspect_ratio": "7:3"}, "aspect_ratio"),
        ({"prompt": "x", "steps": 3}, "steps"),
        ({}, "prompt"),
    ],
)
def test_validation_is_problem_details(
    emu: ReplicateEmulator, input_: dict[str, Any], field: str
) -> None:
    answer = create(emu, input_)
    body = answer.json()
    assert answer.status_code == 422 and answer.headers["content-type"].startswith(
        "application/problem+json"
    )
    assert {"title", "detail", "status"} <= set(body) and field in body["detail"]


def test_auth_failures_and_faults(emu: ReplicateEmulator) -> None:
    denied = httpx.post(f"{emu.base_url}/v1/models/{SCHNELL}/predictions", json={"input": {}})
    assert denied.status_code == 401 and denied.json()["title"] == "Unauthenticated"
    emu.fail_next("status", status=429, retry_after=1)
    assert create(emu, {"prompt": "x"}).status_code == 429
    assert create(emu, {"prompt": "explode"}, wait=True).json()["status"] == "failed"
