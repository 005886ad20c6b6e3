"""Keys' and teams' rate limits through the real proxy: keys made over `POST /key/generate`
on a SQLite database, called with httpx and the openai client; limits in one process and,
through the real Redis at 127.0.0.1:6379, across two gateways."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

from tests.emulators import OpenAIEmulator
from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
REDIS_URL = "redis://127.0.0.1:6379/0"
IMAGE = {"model": "otters", "prompt": "an otter", "size": "64x64"}
# Go's duration format, as OpenAI writes its reset headers: 1s, 59.99s, 6m0s, 12ms.
DURATION = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d+)?s|\d+ms)$")


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted at the end."""
    prefix = f"prismgate-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def config(
    database: Path, redis_prefix: str | None, models: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    general: dict[str, Any] = {"master_key": MASTER_KEY, "database_url": f"sqlite:///{database}"}
    raw: dict[str, Any] = {
        "model_list": models or [model("otters", "mock/otters")],
        "general_settings": general,
    }
    if redis_prefix is not None:
        # A deadline a loaded machine cannot miss: the in-process fallback is not under test.
        general.update(redis_prefix=redis_prefix, redis_timeout=5.0)
        raw["router_settings"] = {"redis_url": REDIS_URL}
    return raw


def new_key(proxy: RunningProxy, **fields: object) -> str:
    made = httpx.post(proxy.base_url + "/key/generate", json=fields, headers=ADMIN)
    assert made.status_code == 200, made.text
    key: str = made.json()["key"]
    return key


def generate(proxy: RunningProxy, key: str, **body: object) -> httpx.Response:
    return httpx.post(
        proxy.base_url + "/v1/images/generations",
        json={**IMAGE, **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "redis"])
def test_an_images_per_minute_limit_refuses_with_retry_after_and_headers(
    serve: Callable[..., RunningProxy], tmp_path: Path, redis_prefix: str, shared: bool
) -> None:
    proxy = serve(config(tmp_path / "keys.db", redis_prefix if shared else None))
    key = new_key(proxy, key_alias="painter", ipm_limit=4, rpm_limit=100)
    for remaining in ("2", "0"):
        answer = generate(proxy, key, n=2)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["data"]) == 2
        headers = answer.headers
        assert headers["x-ratelimit-limit-images"] == "4"
        assert headers["x-ratelimit-remaining-images"] == remaining
        assert DURATION.match(headers["x-ratelimit-reset-images"])
        assert headers["x-ratelimit-limit-requests"] == "100"
        assert "x-ratelimit-limit-tokens" not in headers  # the key has no tpm_limit
    refused = generate(proxy, key, n=2)
    assert refused.status_code == 429
    # Two images come back in 30 s (one every 15 s), less the moment since the last call.
    assert refused.headers["retry-after"] == "30"
    assert refused.headers["x-ratelimit-remaining-images"] == "0"
    assert refused.headers["x-ratelimit-limit-images"] == "4"
    error = refused.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("images", "rate_limit_exceeded", None)
    assert "'painter'" in error["message"] and "ipm_limit" in error["message"]
    assert re.search(r"Please try again in (29(\.\d+)?|30)s\.$", error["message"])

    client = openai.OpenAI(api_key=key, base_url=proxy.base_url + "/v1", max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(model="otters", prompt="an otter", size="256x256", n=2)
    assert caught.value.response.headers["retry-after"] in ("29", "30")
    assert "ipm_limit" in caught.value.message
    # Even one image waits: the first comes back 15 s after the bucket emptied.
    one = generate(proxy, key, n=1)
    assert one.status_code == 429 and one.headers["retry-after"] == "15"


def test_a_team_limit_is_shared_by_its_keys(
    serve: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    proxy = serve(config(tmp_path / "keys.db", None))
    team = httpx.post(
        proxy.base_url + "/team/new", json={"team_alias": "painters", "rpm_limit": 3}, headers=ADMIN
    )
    team_id = team.json()["team_id"]
    keys = [new_key(proxy, team_id=team_id, key_alias=f"brush-{i}") for i in range(2)]
    answers = [generate(proxy, keys[i % 2]) for i in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert [answer.headers["x-ratelimit-remaining-requests"] for answer in answers] == [
        "2", "1", "0", "0",
    ]  # fmt: skip
    refused = answers[-1].json()["error"]
    assert "team 'painters'" in refused["message"] and refused["type"] == "requests"
    assert answers[-1].headers["retry-after"] == "20"  # one request back every 20 s


def test_max_parallel_requests_counts_calls_in_flight(
    serve: Callable[..., RunningProxy], tmp_path: Path, openai_emulator: OpenAIEmulator
) -> None:
    settings = {"api_base": openai_emulator.base_url + "/v1", "api_key": openai_emulator.api_key}
    models = [model("dall-e-3", "openai/dall-e-3", **settings)]
    proxy = serve(config(tmp_path / "keys.db", None, models))
    key = new_key(proxy, key_alias="slowpoke", max_parallel_requests=2)
    openai_emulator.fail_next("delay", delay=1.0, times=2)
    body = {"model": "dall-e-3", "prompt": "an otter", "size": "1024x1024"}
    with ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(generate, proxy, key, **body) for _ in range(2)]
        deadline = time.monotonic() + 10
        while len(openai_emulator.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = generate(proxy, key, **body)
        assert [future.result().status_code for future in slow] == [200, 200]
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "parallel_requests" and "max_parallel_requests" in error["message"]
    assert refused.headers["retry-after"] == "1"
    assert generate(proxy, key, **body).status_code == 200  # both slots came back
    # A failed call gives its slot back too (a 400: never retried, nothing cools down).
    openai_emulator.fail_next("status", status=400, times=3)
    for _ in range(3):
        assert generate(proxy, key, **body).status_code == 400
    assert generate(proxy, key, **body).status_code == 200


def test_two_gateways_on_one_redis_let_exactly_the_limit_through(
    serve: Callable[..., RunningProxy], tmp_path: Path, redis_prefix: str
) -> None:
    shared = config(tmp_path / "keys.db", redis_prefix)
    one, two = serve(shared), serve(shared)
    key = new_key(one, key_alias="burst", rpm_limit=10)
    with ThreadPoolExecutor(30) as pool:
        calls = [pool.submit(generate, (one, two)[i % 2], key) for i in range(30)]
        answers = [call.result() for call in calls]
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(200) == 10 and statuses.count(429) == 20
    # Each gateway answered half: with a counter each, 20 would have been served.
    assert sum(answer.url.port == one.port for answer in answers) == 15
    assert {a.headers["retry-after"] for a in answers if a.status_code == 429} <= {"5", "6"}


def test_chat_counts_tokens_and_streams_carry_the_headers(
    serve: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    proxy = serve(config(tmp_path / "keys.db", None, [model("chat", "mock/llava")]))
    key = new_key(proxy, key_alias="talker", tpm_limit=1000, rpm_limit=5)
    client = openai.OpenAI(api_key=key, base_url=proxy.base_url + "/v1", max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "describe an otter"}]
    answer = client.chat.completions.with_raw_response.create(model="chat", messages=messages)
    used = answer.parse().usage
    assert used is not None and used.total_tokens > 0
    assert answer.headers["x-ratelimit-remaining-tokens"] == str(1000 - used.total_tokens)
    assert answer.headers["x-ratelimit-remaining-requests"] == "4"
    with client.chat.completions.with_streaming_response.create(
        model="chat", messages=messages, stream=True
    ) as streamed:
        assert streamed.headers["x-ratelimit-limit-tokens"] == "1000"
        assert streamed.headers["x-ratelimit-remaining-requests"] == "3"
        assert "[DONE]" in "".join(streamed.iter_lines())
