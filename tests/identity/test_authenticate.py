"""The authenticator on a real SQLite key store: a key blocked on this instance while its
read was under way is refused at once, not re-cached as it was read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from prismgate.errors import AuthenticationError
from prismgate.identity import Authenticator, authenticate
from prismgate.identity.accounts import Accounts
from prismgate.identity.keys import token_of
from prismgate.identity.wire import DeleteKeys, GenerateKey, NewTeam
from prismgate.storage.records import TeamRecord
from prismgate.storage.sql import SqlKeyStore, database_url, open_engine, upgrade


class HeldTeamReads(SqlKeyStore):
    """The real store, with a gate before each team read: the authenticator reads a key,
    then its team, so a read can be held after the key's row was read."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.go = asyncio.Event()
        self.go.set()
        self.waiting = asyncio.Event()

    async def team(self, team_id: str) -> TeamRecord | None:
        self.waiting.set()
        await self.go.wait()
        return await super().team(team_id)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[HeldTeamReads]:
    url = database_url(f"sqlite:///{tmp_path / 'keys.db'}", tmp_path)
    await upgrade(url)
    made = HeldTeamReads(open_engine(url))
    yield made
    await made.aclose()


async def test_a_key_blocked_while_its_read_is_under_way_is_refused_at_once(
    store: HeldTeamReads,
) -> None:
    authenticator = Authenticator("sk-master-test-0001", store, clock=lambda: 1000.0)
    accounts = Accounts(store, on_change=authenticator.forget)
    team = await accounts.new_team(NewTeam(team_alias="artists"))
    key = (await accounts.generate_key(GenerateKey(key_alias="ci", team_id=team.team_id)))["key"]

    store.go.clear()
    store.waiting.clear()
    under_way = asyncio.create_task(authenticator.authenticate(key))
    await store.waiting.wait()  # the key's row is read, not yet blocked
    await accounts.block_key(key, blocked=True)
    after = asyncio.create_task(authenticator.authenticate(key))
    await asyncio.sleep(0)
    store.go.set()

    assert (await under_way).key_alias == "ci"  # begun before the block: as it was read
    with pytest.raises(AuthenticationError, match="is blocked"):
        await after  # begun after it: its own read, not the one under way
    with pytest.raises(AuthenticationError, match="is blocked"):
        await authenticator.authenticate(key)  # and the read under way was not kept


async def test_a_key_is_digested_once_and_unknown_keys_are_not_kept(
    store: HeldTeamReads, monkeypatch: pytest.MonkeyPatch
) -> None:
    digested: list[str] = []

    def counted(key: str) -> str:
        digested.append(key)
        return token_of(key)

    monkeypatch.setattr(authenticate, "token_of", counted)
    now = [1000.0]
    authenticator = Authenticator("sk-master-test-0001", store, clock=lambda: now[0])
    accounts = Accounts(store, on_change=authenticator.forget)
    key = (await accounts.generate_key(GenerateKey(key_alias="ci")))["key"]

    for _ in range(3):
        now[0] += 1.0  # past the staleness: the key is read again, not digested again
        assert (await authenticator.authenticate(key)).key_alias == "ci"
    assert digested == [key]

    for _ in range(2):  # a key that names nothing: digested each time, never kept
        with pytest.raises(AuthenticationError, match="not valid"):
            await authenticator.authenticate("sk-not-a-key")
    assert digested == [key, "sk-not-a-key", "sk-not-a-key"]


async def test_a_deleted_key_is_refused_and_its_digest_forgotten(store: HeldTeamReads) -> None:
    authenticator = Authenticator("sk-master-test-0001", store, clock=lambda: 1000.0)
    accounts = Accounts(store, on_change=authenticator.forget)
    key = (await accounts.generate_key(GenerateKey(key_alias="ci")))["key"]
    assert (await authenticator.authenticate(key)).key_alias == "ci"
    assert key in authenticator._digests

    await accounts.delete_keys(DeleteKeys(keys=[key]))
    assert key not in authenticator._digests
    with pytest.raises(AuthenticationError):
        await authenticator.authenticate(key)


async def test_the_digests_kept_are_bounded(
    store: HeldTeamReads, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(authenticate, "DIGESTS_KEPT", 2)
    authenticator = Authenticator("sk-master-test-0001", store, clock=lambda: 1000.0)
    accounts = Accounts(store, on_change=authenticator.forget)
    keys = [(await accounts.generate_key(GenerateKey()))["key"] for _ in range(3)]
    for key in keys:
        await authenticator.authenticate(key)
    assert list(authenticator._digests) == keys[1:]  # the oldest went first
