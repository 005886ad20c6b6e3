"""The spend routes over HTTP: `/spend/summary` (and LiteLLM's `/global/spend/report`)
grouped by key, team, model and day, with the filters of `/spend/logs`; and the setting
that keeps prompts out of the spend log."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from tests.emulators import OpenAIEmulator
from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def start(
    serve: Callable[..., RunningProxy], emulator: OpenAIEmulator | None = None, **general: Any
) -> RunningProxy:
    """A proxy on SQLite (the default file in its data folder); `otters` is dall-e-3 on
    the emulator when given one ($0.04 an image), else a free `mock/` model."""
    otters = (
        model("otters", "mock/otters")
        if emulator is None
        else model(
            "otters",
            "openai/dall-e-3",
            api_base=emulator.base_url + "/v1",
            api_key=emulator.api_key,
        )
    )
    return serve(
        {
            "model_list": [otters, model("ducks", "mock/ducks")],
            "general_settings": {"master_key": MASTER_KEY, **general},
        }
    )


def get(proxy: RunningProxy, path: str, **headers: str) -> httpx.Response:
    return httpx.get(proxy.base_url + path, headers=headers or ADMIN)


def make(proxy: RunningProxy, path: str, body: dict[str, Any]) -> dict[str, Any]:
    made = httpx.post(proxy.base_url + path, json=body, headers=ADMIN)
    assert made.status_code == 200, made.text
    answer: dict[str, Any] = made.json()
    return answer


def logged(proxy: RunningProxy, count: int) -> list[dict[str, Any]]:
    """The spend log's rows, once `count` are written (they are written off the path)."""
    deadline = time.monotonic() + 5
    while len(rows := get(proxy, "/spend/logs").json()) < count:
        assert time.monotonic() < deadline, f"{len(rows)} rows, not {count}"
        time.sleep(0.05)
    return list(rows)


def generate(proxy: RunningProxy, key: str, group: str, n: int = 1) -> None:
    client = openai.OpenAI(api_key=key, base_url=proxy.base_url + "/v1", max_retries=0)
    client.images.generate(model=group, prompt="an otter in a hat " * 20, n=n)


def test_the_summary_totals_spend_by_key_team_model_and_day(
    serve: Callable[..., RunningProxy], openai_emulator: OpenAIEmulator
) -> None:
    proxy = start(serve, openai_emulator)
    team_id = make(proxy, "/team/new", {"team_alias": "art"})["team_id"]
    painter = make(proxy, "/key/generate", {"key_alias": "painter", "team_id": team_id})
    loner = make(proxy, "/key/generate", {"key_alias": "loner"})
    generate(proxy, painter["key"], "otters", n=2)
    generate(proxy, painter["key"], "otters", n=2)
    generate(proxy, painter["key"], "ducks")
    generate(proxy, loner["key"], "otters")
    rows = logged(proxy, 4)

    # The time each call waited on its provider: a part of its whole time (the mock
    # provider sends nothing upstream).
    for row in rows:
        waited, took = row["upstream_duration_ms"], row["request_duration_ms"]
        assert (0 < waited <= took) if row["model_group"] == "otters" else waited == 0

    def spend_of(**match: Any) -> float:
        return sum(float(r["spend"]) for r in rows if all(r[k] == v for k, v in match.items()))

    by_model = {t["group"]: t for t in get(proxy, "/spend/summary?group_by=model").json()}
    assert set(by_model) == {"otters", "ducks"}
    otters = by_model["otters"]
    assert (otters["requests"], otters["images"], otters["model_group"]) == (3, 5, "otters")
    assert otters["spend"] == pytest.approx(5 * 0.04)  # five dall-e-3 images
    assert spend_of(model_group="otters") == pytest.approx(5 * 0.04)
    assert isinstance(otters["total_tokens"], int)

    by_key = {t["api_key"]: t for t in get(proxy, "/spend/summary?group_by=key").json()}
    assert by_key[painter["token"]]["requests"] == 3 and by_key[loner["token"]]["requests"] == 1
    assert painter["key"] not in get(proxy, "/spend/summary?group_by=key").text
    by_team = {t["team_id"]: t["requests"] for t in get(proxy, "/spend/summary").json()}
    assert by_team == {team_id: 3, None: 1}  # team is the default grouping, as LiteLLM's
    days = Counter(row["startTime"][:10] for row in rows)  # UTC days, as the rows say
    by_day = get(proxy, "/spend/summary?group_by=day").json()
    assert {t["day"]: t["requests"] for t in by_day} == days
    assert sum(t["images"] for t in by_day) == 6
    assert sum(t["spend"] for t in by_day) == pytest.approx(spend_of())
    today = max(days)

    # The filters of /spend/logs: a key (the key itself or its token), a team, the days.
    mine = get(proxy, f"/spend/summary?group_by=model&api_key={painter['key']}").json()
    assert {t["group"]: t["requests"] for t in mine} == {"otters": 2, "ducks": 1}
    teams = get(proxy, f"/spend/summary?group_by=key&team_id={team_id}").json()
    assert [t["group"] for t in teams] == [painter["token"]]
    yesterday = (datetime.fromisoformat(min(days)) - timedelta(days=1)).strftime("%Y-%m-%d")
    assert get(proxy, f"/spend/summary?end_date={yesterday}").json() == []
    in_range = get(proxy, f"/spend/summary?start_date={yesterday}&end_date={today}").json()
    assert sum(t["requests"] for t in in_range) == 4

    # LiteLLM's path and names answer the same.
    report = get(proxy, "/global/spend/report?group_by=api_key").json()
    assert report == get(proxy, "/spend/summary?group_by=key").json()
    assert get(proxy, "/global/spend/report?internal_user_id=nobody").json() == []


def test_bad_summary_requests_get_openai_errors(serve: Callable[..., RunningProxy]) -> None:
    proxy = start(serve)
    key = make(proxy, "/key/generate", {})["key"]
    for path, param in [
        ("/spend/summary?group_by=customer", "group_by"),
        ("/global/spend/report?customer_id=c1", "customer_id"),
        ("/spend/summary?start_date=yesterday", "start_date"),
        ("/spend/summary?start_date=2026-02-02&end_date=2026-02-01", "end_date"),
    ]:
        answer = get(proxy, path)
        assert answer.status_code == 400, path
        error = answer.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param
    refused = get(proxy, "/spend/summary", Authorization=f"Bearer {key}")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "master_key_required"


def test_prompts_are_left_out_when_store_prompts_in_spend_logs_is_false(
    serve: Callable[..., RunningProxy],
) -> None:
    kept = start(serve)
    generate(kept, MASTER_KEY, "otters")
    [row] = logged(kept, 1)
    assert row["prompt"] == ("an otter in a hat " * 20)[:200]

    left_out = start(serve, store_prompts_in_spend_logs=False)
    generate(left_out, MASTER_KEY, "otters")
    [row] = logged(left_out, 1)
    assert row["prompt"] is None and row["images"] == 1
