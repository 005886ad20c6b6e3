"""Every call's key checks, on a real SQLite key store: a live key is served from the cache
without a read while it is fresh (and read again after), each way a key stops working
gets its own 401 that names the key (or its team) and says why, and a key may call the
model groups it and its team list."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from prismgate.errors import AuthenticationError
from prismgate.identity import Authenticator, Principal
from prismgate.identity.keys import token_of
from prismgate.storage.records import KeyRecord, TeamRecord
from prismgate.storage.sql import SqlKeyStore, database_url, open_engine, upgrade
from tests.storage.conftest import FakeClock

MASTER = "sk-master-test-0001"


class CountedReads(SqlKeyStore):
    """The real store, counting its key reads."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.reads = 0

    async def key(self, token: str) -> KeyRecord | None:
        self.reads += 1
        return await super().key(token)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountedReads]:
    url = database_url(f"sqlite:///{tmp_path / 'keys.db'}", tmp_path)
    await upgrade(url)
    made = CountedReads(open_engine(url))
    yield made
    await made.aclose()


async def _key(store: SqlKeyStore, key: str, **fields: object) -> None:
    record = KeyRecord(token=token_of(key), key_name=f"sk-...{key[-4:]}", **fields)  # type: ignore[arg-type]
    await store.create_key(record)


async def test_a_fresh_key_is_served_without_a_read(store: CountedReads) -> None:
    clock = FakeClock()
    authenticator = Authenticator(MASTER, store, staleness=0.5, clock=clock)
    await _key(store, "sk-live-0001", key_alias="live")
    for _ in range(3):
        assert (await authenticator.authenticate("sk-live-0001")).key_alias == "live"
    assert store.reads == 1
    clock.advance(0.6)  # stale: read again, once
    assert (await authenticator.authenticate("sk-live-0001")).key_alias == "live"
    assert (await authenticator.authenticate("sk-live-0001")).key_alias == "live"
    assert store.reads == 2
    with pytest.raises(AuthenticationError, match="not valid"):
        await authenticator.authenticate("sk-unknown-0002")


@pytest.mark.parametrize(
    ("fields", "message", "code"),
    [
        ({"deleted_at": 1.0}, "the API key gone was deleted", "key_deleted"),
        ({"blocked": True}, "the API key gone is blocked; an admin can unblock", "key_blocked"),
        ({"expires": 1.0}, "the API key gone expired at 1970-01-01T00:00:01", "key_expired"),
        ({"team_id": "t1"}, "the team painters of API key gone is blocked", "team_blocked"),
    ],
)
async def test_each_way_a_key_stops_working_has_its_own_401(
    store: CountedReads, fields: dict[str, object], message: str, code: str
) -> None:
    await store.create_team(TeamRecord(team_id="t1", team_alias="painters", blocked=True))
    await _key(store, "sk-gone-0003", key_alias="gone", **fields)
    authenticator = Authenticator(MASTER, store)
    with pytest.raises(AuthenticationError) as caught:
        await authenticator.authenticate("sk-gone-0003")
    assert caught.value.message.startswith(message)
    assert caught.value.code == code and caught.value.status_code == 401


def test_a_key_may_call_what_it_and_its_team_list() -> None:
    def principal(key_models: tuple[str, ...], team_models: tuple[str, ...] | None) -> Principal:
        team = None if team_models is None else TeamRecord(team_id="t", models=team_models)
        key = KeyRecord(token="k", key_name="sk-...k", models=key_models)
        return Principal(role="key", scope="k", key=key, team=team)

    assert principal((), None).may_call("anything")
    assert principal(("all-proxy-models",), ("*",)).may_call("anything")
    assert principal(("dall-e-*",), None).may_call("dall-e-3")
    assert not principal(("dall-e-*",), None).may_call("gpt-image-1")
    # The team's list narrows a key that lists nothing.
    assert principal((), ("chat",)).may_call("chat")
    assert not principal((), ("chat",)).may_call("dall-e-3")
    assert not principal(("dall-e-3",), ("chat",)).may_call("dall-e-3")
