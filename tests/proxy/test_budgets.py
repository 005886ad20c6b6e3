"""Budgets on keys, teams and users: a call holds its price before it goes upstream, so a
budget is never overspent, by one gateway or by several processes on one database; the
refusal is LiteLLM's 429 `budget_exceeded`, and the spend shows in /key/info."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.emulators import OpenAIEmulator
from tests.processes import GatewayProcess, fresh_database
from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
EXAMPLE = Path(__file__).parents[2] / "examples" / "team.yaml"
PRICE = 0.04  # dall-e-3, standard quality, 1024x1024: the catalog's price


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


def _config(emulator: OpenAIEmulator, database_url: str) -> dict[str, Any]:
    base = emulator.base_url + "/v1"
    return {
        "model_list": [
            model("painter", "openai/dall-e-3", api_base=base, api_key=emulator.api_key)
        ],
        "general_settings": {"master_key": MASTER_KEY, "database_url": database_url},
    }


def _make(base_url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    made = httpx.post(base_url + path, json=body, headers=ADMIN)
    assert made.status_code == 200, made.text
    answer: dict[str, Any] = made.json()
    return answer


def _generate(base_url: str, key: str) -> httpx.Response:
    return httpx.post(
        base_url + "/v1/images/generations",
        json={"model": "painter", "prompt": "an otter", "size": "1024x1024"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _spend(base_url: str, key: str, expected: float) -> float:
    """The key's spend in /key/info, once it reaches `expected` (holds settle within ~1 s)."""
    deadline = time.monotonic() + 5
    while True:
        info = httpx.get(base_url + "/key/info", params={"key": key}, headers=ADMIN).json()
        spend = float(info["info"]["spend"])
        if abs(spend - expected) < 1e-9 or time.monotonic() > deadline:
            return spend
        time.sleep(0.1)


def test_a_key_is_refused_at_its_budget_before_any_upstream_call(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator, database_url: str
) -> None:
    proxy = serve(_config(openai_emulator, database_url))
    key = _make(proxy.base_url, "/key/generate", {"key_alias": "ci-bot", "max_budget": 3 * PRICE})
    client = openai.OpenAI(api_key=key["key"], base_url=proxy.base_url + "/v1", max_retries=0)
    for _ in range(3):
        client.images.generate(model="painter", prompt="an otter", size="1024x1024")
    with pytest.raises(openai.RateLimitError) as refused:
        client.images.generate(model="painter", prompt="an otter", size="1024x1024")
    error = refused.value
    assert error.status_code == 429 and error.code == "budget_exceeded"
    assert error.type == "budget_exceeded"  # type: ignore[attr-defined]
    assert "ci-bot" in error.message and "$0.1200" in error.message
    assert error.response.headers["x-should-retry"] == "false"
    assert len(openai_emulator.requests) == 3  # the refused call never went upstream
    assert _spend(proxy.base_url, key["key"], 3 * PRICE) == pytest.approx(3 * PRICE)


def test_a_team_budget_is_shared_by_its_keys_and_resets_with_its_period(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator, tmp_path: Path
) -> None:
    with fresh_database("sqlite", tmp_path) as url:
        proxy = serve(_config(openai_emulator, url))
        budget = {"team_alias": "studio", "max_budget": 2 * PRICE, "budget_duration": "3s"}
        team = _make(proxy.base_url, "/team/new", budget)
        one = _make(proxy.base_url, "/key/generate", {"team_id": team["team_id"]})["key"]
        two = _make(proxy.base_url, "/key/generate", {"team_id": team["team_id"]})["key"]
        assert _generate(proxy.base_url, one).status_code == 200
        assert _generate(proxy.base_url, two).status_code == 200
        refused = _generate(proxy.base_url, one)
        assert refused.status_code == 429, refused.text
        assert "the team studio" in refused.json()["error"]["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 3  # when the period ends
        time.sleep(int(refused.headers["retry-after"]) + 0.5)
        assert _generate(proxy.base_url, two).status_code == 200  # a new period


def test_a_key_without_a_budget_has_its_spend_counted(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator, tmp_path: Path
) -> None:
    with fresh_database("sqlite", tmp_path) as url:
        proxy = serve(_config(openai_emulator, url))
        key = _make(proxy.base_url, "/key/generate", {"user_id": "ada"})["key"]
        for _ in range(4):
            assert _generate(proxy.base_url, key).status_code == 200
        assert _spend(proxy.base_url, key, 4 * PRICE) == pytest.approx(4 * PRICE)
        user = httpx.get(proxy.base_url + "/user/info", params={"user_id": "ada"}, headers=ADMIN)
        assert float(user.json()["user_info"]["spend"]) == pytest.approx(4 * PRICE)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_two_gateway_processes_never_overspend_one_budget(
    openai_emulator: OpenAIEmulator, tmp_path: Path, kind: str
) -> None:
    """60 concurrent calls over two processes sharing one database (and one Redis),
    against a key whose budget covers 10: exactly 10 are served and reach the provider."""
    openai_emulator.fail_next("delay", times=60, delay=0.2)  # calls overlap
    with fresh_database(kind, tmp_path) as url:
        config = _config(openai_emulator, url)
        config["router_settings"] = {"redis_host": "127.0.0.1", "redis_port": 6379}
        config["general_settings"]["redis_prefix"] = f"prismgate-test-{tmp_path.name}:"
        gateways = [GatewayProcess(config, tmp_path, name=f"gw{i}") for i in range(2)]
        try:
            for gateway in gateways:
                gateway.wait_ready()
            first, second = (gateway.base_url for gateway in gateways)
            key = _make(first, "/key/generate", {"max_budget": 10 * PRICE})["key"]
            with ThreadPoolExecutor(60) as pool:
                answers = list(
                    pool.map(lambda i: _generate((first, second)[i % 2], key), range(60))
                )
            statuses = sorted(answer.status_code for answer in answers)
            assert statuses == [200] * 10 + [429] * 50, [
                a.text for a in answers if a.status_code >= 500
            ]
            assert all(
                answer.json()["error"]["code"] == "budget_exceeded"
                for answer in answers
                if answer.status_code == 429
            )
            assert len(openai_emulator.requests) == 10
            assert _spend(second, key, 10 * PRICE) == pytest.approx(10 * PRICE)
        finally:
            for gateway in gateways:
                gateway.stop()


def test_the_readme_walkthrough_on_examples_team_yaml(
    serve: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    """The README's "Keys, budgets and spend" walkthrough: a team and a key with a budget
    and an images-per-minute limit, calls through the openai client, the spend in
    /key/info and /spend/logs, and the refusal at the budget."""
    raw = yaml.safe_load(EXAMPLE.read_text())
    proxy = serve(raw, environ={"PRISMGATE_MASTER_KEY": MASTER_KEY})
    team = _make(proxy.base_url, "/team/new", {"team_alias": "artists", "max_budget": 20})
    key = _make(proxy.base_url, "/key/generate",
                {"key_alias": "ci-bot", "team_id": team["team_id"], "max_budget": 0.1,
                 "ipm_limit": 10})["key"]  # fmt: skip
    client = openai.OpenAI(api_key=key, base_url=proxy.base_url + "/v1", max_retries=0)
    for _ in range(2):
        image = client.images.generate(model="dall-e-3", prompt="an otter", size="1024x1024")
        assert image.data[0].b64_json
    with pytest.raises(openai.RateLimitError, match="ci-bot is over its budget"):
        client.images.generate(model="dall-e-3", prompt="an otter", size="1024x1024")
    assert _spend(proxy.base_url, key, 0.08) == pytest.approx(0.08)
    deadline = time.monotonic() + 5
    while True:
        logs = httpx.get(proxy.base_url + "/spend/logs", headers=ADMIN).json()
        if len(logs) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sorted(row["status_code"] for row in logs) == [200, 200, 429]
    assert sum(row["spend"] for row in logs) == pytest.approx(0.08)


def test_a_stream_pays_the_usage_it_reports_or_else_its_bound(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator, tmp_path: Path
) -> None:
    base = openai_emulator.base_url + "/v1"
    with fresh_database("sqlite", tmp_path) as url:
        config = _config(openai_emulator, url)
        config["model_list"] = [
            model("chat", "openai/gpt-4o", api_base=base, api_key=openai_emulator.api_key)
        ]
        proxy = serve(config)
        key = _make(proxy.base_url, "/key/generate", {"max_budget": 10.0})["key"]
        client = openai.OpenAI(api_key=key, base_url=proxy.base_url + "/v1", max_retries=0)
        messages: list[Any] = [{"role": "user", "content": "describe an otter"}]
        stream = client.chat.completions.create(
            model="chat", messages=messages, max_tokens=100, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        usage = [chunk.usage for chunk in stream if chunk.usage is not None][-1]
        cost = usage.prompt_tokens * 2.5e-6 + usage.completion_tokens * 1e-5
        assert _spend(proxy.base_url, key, cost) == pytest.approx(cost)
        deadline = time.monotonic() + 5
        while not (rows := httpx.get(proxy.base_url + "/spend/logs", headers=ADMIN).json()):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert rows[0]["spend"] == pytest.approx(cost)  # the log and the budget agree

        # Without a usage chunk, the stream pays its bound: 17 characters in, 100 tokens out.
        for _ in client.chat.completions.create(
            model="chat", messages=messages, max_tokens=100, stream=True
        ):
            pass
        bound = 17 * 2.5e-6 + 100 * 1e-5
        assert _spend(proxy.base_url, key, cost + bound) == pytest.approx(cost + bound)


def test_each_size_and_quality_holds_its_own_price(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator, tmp_path: Path
) -> None:
    # A call's price bound is kept by model name, size, quality and n: a dearer call
    # after cheaper ones of the same model is held at its own price.
    with fresh_database("sqlite", tmp_path) as url:
        proxy = serve(_config(openai_emulator, url))
        key = _make(proxy.base_url, "/key/generate", {"max_budget": 0.15})["key"]
        client = openai.OpenAI(api_key=key, base_url=proxy.base_url + "/v1", max_retries=0)
        for _ in range(2):  # $0.04 each: $0.07 left
            client.images.generate(model="painter", prompt="an otter", size="1024x1024")
        with pytest.raises(openai.RateLimitError) as refused:  # hd, tall: $0.12
            client.images.generate(
                model="painter", prompt="an otter", size="1024x1792", quality="hd"
            )
        assert "may cost up to $0.1200" in refused.value.message
        with pytest.raises(openai.RateLimitError) as refused:  # two at $0.04: $0.08
            client.images.generate(model="painter", prompt="an otter", size="1024x1024", n=2)
        assert "may cost up to $0.0800" in refused.value.message
        client.images.generate(model="painter", prompt="an otter", size="1024x1024")
        assert len(openai_emulator.requests) == 3
        assert _spend(proxy.base_url, key, 3 * PRICE) == pytest.approx(3 * PRICE)


def test_a_fallback_to_a_dearer_model_holds_its_own_price_first(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator, tmp_path: Path
) -> None:
    base = openai_emulator.base_url + "/v1"
    key_of = openai_emulator.api_key
    with fresh_database("sqlite", tmp_path) as url:
        config = _config(openai_emulator, url)
        config["model_list"] = [
            model("cheap", "openai/dall-e-2", api_base=base, api_key=key_of),  # $0.02
            model("dear", "openai/dall-e-3", api_base=base, api_key=key_of),  # $0.04
        ]
        config["router_settings"] = {"fallbacks": [{"cheap": ["dear"]}], "num_retries": 0}
        proxy = serve(config)
        key = _make(proxy.base_url, "/key/generate", {"max_budget": 0.03})["key"]
        openai_emulator.fail_next("status", status=500)
        refused = httpx.post(
            proxy.base_url + "/v1/images/generations",
            json={"model": "cheap", "prompt": "an otter", "size": "1024x1024"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "budget_exceeded"
        assert len(openai_emulator.requests) == 1  # the fallback was never called
        # Within the budget, the fallback serves (and only its cost is spent).
        httpx.post(proxy.base_url + "/key/update", json={"key": key, "max_budget": 0.05},
                   headers=ADMIN)  # fmt: skip
        time.sleep(0.6)  # the key's record is re-read within half a second
        openai_emulator.fail_next("status", status=500)
        served = httpx.post(
            proxy.base_url + "/v1/images/generations",
            json={"model": "cheap", "prompt": "an otter", "size": "1024x1024"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert served.status_code == 200, served.text
        assert _spend(proxy.base_url, key, PRICE) == pytest.approx(PRICE)


def test_disable_spend_logs_keeps_no_rows_but_counts_spend(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator, tmp_path: Path
) -> None:
    with fresh_database("sqlite", tmp_path) as url:
        config = _config(openai_emulator, url)
        config["general_settings"]["disable_spend_logs"] = True
        proxy = serve(config)
        key = _make(proxy.base_url, "/key/generate", {})["key"]
        assert _generate(proxy.base_url, key).status_code == 200
        assert _spend(proxy.base_url, key, PRICE) == pytest.approx(PRICE)
        assert httpx.get(proxy.base_url + "/spend/logs", headers=ADMIN).json() == []
