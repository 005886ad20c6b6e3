"""`/spend/summary` names keys and teams as people do (the console's Spend page): a key
row carries the key's `key_alias`, a team row its `team_alias`, as the key store has them
now (a renamed key shows its new alias, a deleted key still shows its alias); the other
groupings and the fields before them are unchanged."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import openai

from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def post(proxy: RunningProxy, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(proxy.base_url + path, json=body, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def summary(proxy: RunningProxy, group_by: str) -> list[dict[str, Any]]:
    answer = httpx.get(proxy.base_url + "/spend/summary", params={"group_by": group_by},
                       headers=ADMIN)  # fmt: skip
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()
    return rows


def test_key_and_team_rows_carry_their_aliases(serve: Callable[..., RunningProxy]) -> None:
    proxy = serve(
        {
            "model_list": [model("otters", "mock/otters")],
            "general_settings": {"master_key": MASTER_KEY},
        }
    )
    team = post(proxy, "/team/new", {"team_alias": "artists"})
    painter = post(proxy, "/key/generate", {"key_alias": "painter", "team_id": team["team_id"]})
    sketcher = post(proxy, "/key/generate", {"key_alias": "sketcher"})
    for key, calls in ((painter["key"], 2), (sketcher["key"], 1)):
        client = openai.OpenAI(api_key=key, base_url=proxy.base_url + "/v1", max_retries=0)
        for _ in range(calls):
            client.images.generate(model="otters", prompt="an otter", size="256x256")
    deadline = time.monotonic() + 5
    while sum(row["requests"] for row in summary(proxy, "key")) < 3:
        assert time.monotonic() < deadline, "the calls never reached the spend log"
        time.sleep(0.05)
    post(proxy, "/key/update", {"key": sketcher["token"], "key_alias": "renamed"})
    post(proxy, "/key/delete", {"keys": [painter["token"]]})
    by_key = {row["api_key"]: row for row in summary(proxy, "key")}
    assert by_key[painter["token"]]["key_alias"] == "painter"  # deleted: still named
    assert by_key[painter["token"]]["requests"] == 2
    assert by_key[sketcher["token"]]["key_alias"] == "renamed"
    assert by_key[sketcher["token"]]["group"] == sketcher["token"]
    by_team = {row["team_id"]: row for row in summary(proxy, "team")}
    assert by_team[team["team_id"]]["team_alias"] == "artists"
    assert by_team[None]["team_alias"] is None  # the key without a team
    # Model and day rows are as they were: no alias field.
    assert all("key_alias" not in row and "team_alias" not in row
               for row in summary(proxy, "model") + summary(proxy, "day"))  # fmt: skip
    # Never the key itself.
    text = httpx.get(proxy.base_url + "/spend/summary?group_by=key", headers=ADMIN).text
    assert painter["key"] not in text and sketcher["key"] not in text
