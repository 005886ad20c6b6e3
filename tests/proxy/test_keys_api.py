"""LiteLLM's key API on a real database (SQLite and the real PostgreSQL): teams and keys
made with the master key, keys that call models, and keys refused once blocked, deleted
or expired, or for a model they may not call."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", sql],
        check=True,
        capture_output=True,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'prismgate.db'}"
        return
    name = f"prismgate_test_{uuid.uuid4().hex[:16]}"
    _psql(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def proxy(serve: Callable[..., RunningProxy], database_url: str) -> RunningProxy:
    return serve(
        {
            "model_list": [model("otters", "mock/otters"), model("ducks", "mock/ducks")],
            "general_settings": {"master_key": MASTER_KEY, "database_url": database_url},
        }
    )


def post(proxy: RunningProxy, path: str, body: dict[str, object], **headers: str) -> httpx.Response:
    return httpx.post(proxy.base_url + path, json=body, headers=headers or ADMIN)


def client(proxy: RunningProxy, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=proxy.base_url + "/v1", max_retries=0)


def test_a_team_key_calls_its_models_and_is_refused_when_blocked_or_deleted(
    proxy: RunningProxy,
) -> None:
    team = post(proxy, "/team/new", {"team_alias": "artists", "max_budget": 5})
    assert team.status_code == 200, team.text
    team_id = team.json()["team_id"]
    renamed = post(proxy, "/team/update", {"team_id": team_id, "team_alias": "painters",
                                           "max_budget": 7, "ipm_limit": 20})  # fmt: skip
    assert renamed.json()["team_id"] == team_id
    data = renamed.json()["data"]
    assert (data["team_alias"], data["max_budget"], data["ipm_limit"]) == ("painters", 7.0, 20)
    assert data["models"] == [] and data["blocked"] is False  # not sent: left as they were
    made = post(
        proxy,
        "/key/generate",
        {"key_alias": "ci-bot", "team_id": team_id, "models": ["otters"], "max_budget": 1.5,
         "budget_duration": "1d", "ipm_limit": 10},
    )  # fmt: skip
    assert made.status_code == 200, made.text
    key = made.json()["key"]
    assert key.startswith("sk-") and made.json()["key_name"] == f"sk-...{key[-4:]}"
    assert made.json()["max_budget"] == 1.5 and made.json()["team_id"] == team_id

    image = client(proxy, key).images.generate(model="otters", prompt="an otter")
    assert len(image.data) == 1
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client(proxy, key).images.generate(model="ducks", prompt="a duck")
    assert "ci-bot" in refused.value.message and "'ducks'" in refused.value.message

    # A key reads its own info; the key itself is never shown again.
    own = httpx.get(proxy.base_url + "/key/info", headers={"Authorization": f"Bearer {key}"})
    assert own.status_code == 200 and own.json()["info"]["key_alias"] == "ci-bot"
    assert key not in own.text
    # Only the master key manages keys.
    assert post(proxy, "/key/generate", {}, Authorization=f"Bearer {key}").status_code == 403

    assert post(proxy, "/key/block", {"key": key}).json()["blocked"] is True
    with pytest.raises(openai.AuthenticationError, match="is blocked"):
        client(proxy, key).images.generate(model="otters", prompt="an otter")
    post(proxy, "/key/unblock", {"key": key})
    client(proxy, key).images.generate(model="otters", prompt="an otter")

    assert post(proxy, "/key/delete", {"key_aliases": ["ci-bot"]}).json() == {
        "deleted_keys": ["ci-bot"]
    }
    with pytest.raises(openai.AuthenticationError, match="was deleted"):
        client(proxy, key).images.generate(model="otters", prompt="an otter")


def test_keys_are_listed_updated_and_regenerated(proxy: RunningProxy) -> None:
    first = post(proxy, "/key/generate", {"key_alias": "one"}).json()
    post(proxy, "/key/generate", {"key_alias": "two", "user_id": "ada"})
    listed = httpx.get(proxy.base_url + "/key/list", headers=ADMIN).json()
    assert listed["total_count"] == 2 and first["token"] in listed["keys"]
    by_user = httpx.get(proxy.base_url + "/key/list?user_id=ada", headers=ADMIN).json()
    assert by_user["total_count"] == 1
    user = httpx.get(proxy.base_url + "/user/info?user_id=ada", headers=ADMIN).json()
    assert [key["key_alias"] for key in user["keys"]] == ["two"]

    updated = post(proxy, "/key/update", {"key": first["key"], "rpm_limit": 5, "max_budget": None})
    assert updated.json()["rpm_limit"] == 5 and updated.json()["key_alias"] == "one"

    fresh = post(proxy, "/key/regenerate", {"key": first["key"]}).json()
    assert fresh["key"] != first["key"] and fresh["key_alias"] == "one"
    assert fresh["rpm_limit"] == 5
    client(proxy, fresh["key"]).images.generate(model="otters", prompt="an otter")
    with pytest.raises(openai.AuthenticationError):
        client(proxy, first["key"]).images.generate(model="otters", prompt="an otter")


def test_bad_management_requests_get_clear_errors(proxy: RunningProxy) -> None:
    post(proxy, "/key/generate", {"key_alias": "taken"})
    taken = post(proxy, "/key/generate", {"key_alias": "taken"})
    assert taken.status_code == 409 and "taken" in taken.json()["error"]["message"]
    unknown = post(proxy, "/key/generate", {"soft_budget": 3})
    assert unknown.status_code == 400 and "soft_budget" in unknown.json()["error"]["message"]
    duration = post(proxy, "/key/generate", {"budget_duration": "30"})
    assert duration.status_code == 400 and duration.json()["error"]["param"] == "budget_duration"
    # A limit past any column's range is the caller's error, not the database's.
    huge = post(proxy, "/team/new", {"max_parallel_requests": 31544220867023968179060736})
    assert huge.status_code == 400 and "max_parallel_requests" in huge.json()["error"]["message"]
    no_team = post(proxy, "/key/generate", {"team_id": "nobody"})
    assert no_team.status_code == 400 and "/team/new" in no_team.json()["error"]["message"]
    missing = httpx.get(proxy.base_url + "/key/info?key=sk-nothing-here-0000", headers=ADMIN)
    assert missing.status_code == 404 and "sk-nothing" not in missing.text
    expired = post(proxy, "/key/generate", {"duration": "1s"}).json()["key"]
    time.sleep(1.2)
    with pytest.raises(openai.AuthenticationError, match="expired"):
        client(proxy, expired).images.generate(model="otters", prompt="an otter")


def test_a_key_store_outage_keeps_known_keys_working_and_refuses_unknown_ones_with_503(
    serve: Callable[..., RunningProxy],
) -> None:
    name = f"prismgate_test_{uuid.uuid4().hex[:16]}"
    _psql(f'CREATE DATABASE "{name}"')
    try:
        proxy = serve(
            {
                "model_list": [model("otters", "mock/otters")],
                "general_settings": {
                    "master_key": MASTER_KEY,
                    "database_url": f"postgresql://postgres@127.0.0.1:5432/{name}",
                },
            }
        )
        known = post(proxy, "/key/generate", {"key_alias": "known"}).json()["key"]
        unread = post(proxy, "/key/generate", {"key_alias": "unread"}).json()["key"]
        client(proxy, known).images.generate(model="otters", prompt="an otter")
        _psql(f'DROP DATABASE "{name}" WITH (FORCE)')  # the store is gone mid-service
        time.sleep(0.6)  # past the staleness: the next call asks the store again
        client(proxy, known).images.generate(model="otters", prompt="an otter")
        with pytest.raises(openai.InternalServerError) as refused:
            client(proxy, unread).images.generate(model="otters", prompt="an otter")
        assert refused.value.status_code == 503
        assert "key store is not answering" in refused.value.message
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_every_call_of_a_key_has_one_spend_log_row(proxy: RunningProxy) -> None:
    made = post(proxy, "/key/generate", {"key_alias": "painter", "models": ["otters"]}).json()
    key = made["key"]
    for _ in range(3):
        client(proxy, key).images.generate(model="otters", prompt="an otter " * 100, n=2)
    with pytest.raises(openai.PermissionDeniedError):
        client(proxy, key).images.generate(model="ducks", prompt="a duck")
    deadline = time.monotonic() + 5
    while True:
        rows = httpx.get(proxy.base_url + f"/spend/logs?api_key={key}", headers=ADMIN).json()
        if len(rows) == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(rows) == 4 and len({row["request_id"] for row in rows}) == 4
    refused, *served = rows  # newest first
    assert refused["status_code"] == 403 and refused["status"] == "failure"
    assert refused["error"] == "key_model_access_denied" and refused["images"] == 0
    for row in served:
        assert row["api_key"] == made["token"] and row["key_alias"] == "painter"
        assert row["images"] == 2 and row["model_group"] == "otters"
        assert row["status_code"] == 200 and row["custom_llm_provider"] == "mock"
        assert len(row["prompt"]) == 200  # kept truncated
    by_id = httpx.get(
        proxy.base_url + f"/spend/logs?request_id={served[0]['request_id']}", headers=ADMIN
    ).json()
    assert [row["request_id"] for row in by_id] == [served[0]["request_id"]]
    assert key not in httpx.get(proxy.base_url + "/spend/logs", headers=ADMIN).text
