"""KeyStore and SpendLog contract, run against both SQL backends: SQLite in a temporary
folder and the real PostgreSQL on 127.0.0.1:5432 (a fresh database per module, dropped at
the end). Then what only the SQL layer has: URLs, budget periods, migrations.
"""

from __future__ import annotations

import asyncio
import sys
from asyncio.subprocess import PIPE
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from prismgate.errors import ConfigError, ConflictError, NotFoundError
from prismgate.storage import BudgetRefusal, Holder, SpendQuery, SpendTotal
from prismgate.storage.periods import Period
from prismgate.storage.records import (
    Budget,
    KeyRecord,
    Limits,
    ProviderKeyRecord,
    SpendRow,
    TeamRecord,
    UserRecord,
    nanos,
)
from prismgate.storage.sql import (
    SqlKeyStore,
    SqlSpendLog,
    current_revision,
    database_url,
    head_revision,
    next_reset,
    open_engine,
    open_sql_stores,
    parse_duration,
    safe_url,
    upgrade,
)
from prismgate.storage.sql.schema import keys, metadata, teams, users
from prismgate.storage.sql.spend import ROWS_PER_STATEMENT
from tests.storage.conftest import Databases
from tests.storage.conftest import SqlBackend as Backend

NOW = 1_750_000_000.0  # 2025-06-15, a fixed "now" for budget tests
CENTS_4 = nanos(0.04)  # 40_000_000 nano-dollars


def make_key(name: str, **fields: object) -> KeyRecord:
    defaults: dict[str, object] = {
        "token": name.ljust(64, "0"),
        "key_name": f"sk-...{name[-4:]}",
        "created_at": NOW,
        "updated_at": NOW,
    }
    return KeyRecord(**(defaults | fields))


async def reserved(backend: Backend, table: sa.Table, ident: str) -> int:
    column = next(iter(table.primary_key.columns))
    async with backend.engine.connect() as connection:
        value = await connection.scalar(sa.select(table.c.reserved).where(column == ident))
    return int(value)


# ---- keys ----


async def test_keys_are_created_read_and_found_by_alias(sql: Backend) -> None:
    store = sql.keys
    key = make_key(
        "a",
        key_alias="ci",
        team_id="t1",
        user_id="u1",
        models=("gpt-image-1", "dall-e-3"),
        budget=Budget(max_budget=nanos(10), duration="1d", reset_at=NOW + 60, spend=5),
        limits=Limits(rpm_limit=10, tpm_limit=5_000_000_000, max_parallel_requests=2),
        metadata={"owner": {"name": "ci"}, "n": [1, 2]},
        tags=("x", "y"),
        expires=NOW + 3600,
        created_by="admin",
    )
    await store.create_key(key)
    assert await store.key(key.token) == key
    assert await store.key_by_alias("ci") == key
    assert await store.key("nope") is None
    assert await store.key_by_alias("nope") is None


async def test_a_taken_token_or_alias_is_a_conflict(sql: Backend) -> None:
    store = sql.keys
    await store.create_key(make_key("a", key_alias="ci"))
    with pytest.raises(ConflictError, match="exists already"):
        await store.create_key(make_key("a"))
    with pytest.raises(ConflictError, match="'ci' is taken") as raised:
        await store.create_key(make_key("b", key_alias="ci"))
    assert raised.value.status == 409
    await store.create_key(make_key("c", key_alias="other"))
    with pytest.raises(ConflictError, match="'ci' is taken"):
        await store.update_key(make_key("c").token, {"key_alias": "ci"})


async def test_a_bad_budget_duration_is_refused(sql: Backend) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        await sql.keys.create_key(make_key("a", budget=Budget(duration="monthly")))
    await sql.keys.create_key(make_key("a"))
    with pytest.raises(ValueError, match="not a duration"):
        await sql.keys.update_key(make_key("a").token, {"budget": Budget(duration="0d")})


async def test_update_key_changes_fields_budget_and_limits(sql: Backend) -> None:
    store = sql.keys
    key = make_key("a", key_alias="old", budget=Budget(max_budget=100, spend=7))
    await store.create_key(key)
    changed = await store.update_key(
        key.token,
        {
            "key_alias": "new",
            "models": ("m1",),
            "budget": Budget(max_budget=200, duration="1h", spend=7),
            "limits": Limits(rpm_limit=5),
            "blocked": True,
            "metadata": {"k": "v"},
            "updated_at": NOW + 1,
        },
    )
    assert changed is not None
    assert changed.key_alias == "new" and changed.models == ("m1",) and changed.blocked
    assert changed.budget == Budget(max_budget=200, duration="1h", spend=7)
    assert changed.limits == Limits(rpm_limit=5)
    assert await store.key(key.token) == changed
    assert await store.key_by_alias("old") is None
    assert await store.update_key("nope", {"blocked": True}) is None
    assert await store.update_key(key.token, {}) == changed


async def test_update_key_refuses_unknown_fields_wrong_types_and_the_token(sql: Backend) -> None:
    store = sql.keys
    await store.create_key(make_key("a"))
    token = make_key("a").token
    with pytest.raises(ValueError, match="no field colour"):
        await store.update_key(token, {"colour": "red"})
    with pytest.raises(ValueError):
        await store.update_key(token, {"blocked": "yes"})
    with pytest.raises(ValueError, match="token cannot change"):
        await store.update_key(token, {"token": "b" * 64})
    assert await store.key(token) == make_key("a")


async def test_deleted_keys_answer_but_are_not_live(sql: Backend) -> None:
    store = sql.keys
    await store.create_key(make_key("a", key_alias="ci"))
    await store.create_key(make_key("b"))
    token_a, token_b = make_key("a").token, make_key("b").token
    assert await store.delete_keys([token_a, "missing", token_a], now=NOW + 5) == [token_a]
    assert await store.delete_keys([token_a], now=NOW + 6) == []
    assert await store.delete_keys([], now=NOW) == []
    deleted = await store.key(token_a)
    assert deleted is not None and deleted.deleted_at == NOW + 5
    assert await store.key_by_alias("ci") is None
    assert await store.update_key(token_a, {"blocked": True}) is None
    found, total = await store.list_keys()
    assert [key.token for key in found] == [token_b] and total == 1
    # Its alias is free again, for a new live key.
    await store.create_key(make_key("c", key_alias="ci"))
    assert (await store.key_by_alias("ci")) == make_key("c", key_alias="ci")


async def test_keys_are_read_by_many_tokens_at_once_deleted_ones_too(sql: Backend) -> None:
    store = sql.keys
    made = [make_key(name, key_alias=f"alias-{name}") for name in ("a", "b", "c")]
    for key in made:
        await store.create_key(key)
    await store.delete_keys([made[0].token], now=NOW + 5)
    # Tokens no key has between them: the three are read in different queries.
    missing = [f"missing-{n}" for n in range(1200)]
    asked = [made[0].token, *missing[:600], made[1].token, *missing[600:], made[2].token]
    found = {key.token: key.key_alias for key in await store.keys_by_tokens(asked * 2)}
    assert found == {key.token: key.key_alias for key in made}
    assert await store.keys_by_tokens([]) == []


async def test_list_keys_newest_first_with_filters_and_paging(sql: Backend) -> None:
    store = sql.keys
    for index in range(7):
        await store.create_key(
            make_key(
                f"k{index}",
                team_id="t1" if index % 2 else "t2",
                user_id="u1" if index < 3 else "u2",
                key_alias=f"alias-{index}",
                created_at=NOW + index,
            )
        )
    found, total = await store.list_keys()
    assert total == 7
    assert [key.key_alias for key in found] == [f"alias-{i}" for i in range(6, -1, -1)]
    page, total = await store.list_keys(offset=2, limit=3)
    assert total == 7 and [key.key_alias for key in page] == ["alias-4", "alias-3", "alias-2"]
    team, total = await store.list_keys(team_id="t1")
    assert total == 3 and [key.key_alias for key in team] == ["alias-5", "alias-3", "alias-1"]
    both, total = await store.list_keys(team_id="t1", user_id="u1")
    assert total == 1 and both[0].key_alias == "alias-1"
    by_alias, total = await store.list_keys(key_alias="alias-4")
    assert total == 1 and by_alias[0].token == make_key("k4").token
    assert await store.list_keys(user_id="nobody") == ([], 0)


async def test_replace_key_moves_spend_and_holds_to_the_new_token(sql: Backend) -> None:
    store = sql.keys
    old = make_key("old", key_alias="ci", budget=Budget(max_budget=10 * CENTS_4))
    await store.create_key(old)
    await store.charge([Holder("key", old.token)], CENTS_4, now=NOW)
    assert await store.reserve("h1", [Holder("key", old.token)], CENTS_4, now=NOW, ttl=60) is None
    fresh = make_key("new", key_alias="ci", budget=old.budget, updated_at=NOW + 1)
    await store.replace_key(old.token, fresh, now=NOW + 1)
    gone = await store.key(old.token)
    assert gone is not None and gone.deleted_at == NOW + 1
    now_live = await store.key_by_alias("ci")
    assert now_live is not None and now_live.token == fresh.token
    assert now_live.budget.spend == CENTS_4
    assert await reserved(sql, keys, fresh.token) == CENTS_4
    assert await reserved(sql, keys, old.token) == 0
    await store.settle("h1", CENTS_4, now=NOW + 2)
    settled = await store.key(fresh.token)
    assert settled is not None and settled.budget.spend == 2 * CENTS_4
    assert await reserved(sql, keys, fresh.token) == 0
    with pytest.raises(NotFoundError):
        await store.replace_key(old.token, make_key("third"), now=NOW + 3)
    with pytest.raises(ConflictError):
        await store.replace_key(fresh.token, make_key("new"), now=NOW + 3)


# ---- teams, users, provider keys ----


async def test_teams_are_created_updated_listed_and_removed(sql: Backend) -> None:
    store = sql.keys
    first = TeamRecord(team_id="t1", team_alias="one", models=("m",), created_at=NOW)
    second = TeamRecord(team_id="t2", budget=Budget(max_budget=5), created_at=NOW + 1)
    await store.create_team(second)
    await store.create_team(first)
    with pytest.raises(ConflictError, match="'t1'"):
        await store.create_team(TeamRecord(team_id="t1"))
    assert await store.team("t1") == first
    assert await store.team("nope") is None
    assert await store.list_teams() == [first, second]
    changed = await store.update_team("t1", {"team_alias": "uno", "tags": ("a",)})
    assert changed == TeamRecord(
        team_id="t1", team_alias="uno", models=("m",), tags=("a",), created_at=NOW
    )
    assert await store.team("t1") == changed
    assert await store.update_team("nope", {"team_alias": "x"}) is None
    with pytest.raises(ValueError, match="team_id cannot change"):
        await store.update_team("t1", {"team_id": "t9"})

    await store.create_key(make_key("a", team_id="t1"))
    assert await store.delete_teams(["t1", "nope"]) == ["t1"]
    assert await store.delete_teams([]) == []
    assert await store.team("t1") is None
    kept = await store.key(make_key("a").token)
    assert kept is not None and kept.team_id is None
    assert await store.list_teams() == [second]


async def test_users_are_created_and_updated(sql: Backend) -> None:
    store = sql.keys
    user = UserRecord(user_id="u1", user_email="a@example.com", teams=("t1",), created_at=NOW)
    await store.create_user(user)
    with pytest.raises(ConflictError, match="'u1'"):
        await store.create_user(UserRecord(user_id="u1"))
    assert await store.user("u1") == user
    assert await store.user("nope") is None
    changed = await store.update_user(
        "u1", {"user_role": "proxy_admin", "budget": Budget(max_budget=nanos(1))}
    )
    assert changed is not None and changed.user_role == "proxy_admin"
    assert changed.budget.max_budget == nanos(1)
    assert await store.user("u1") == changed
    assert await store.update_user("nope", {"user_role": "x"}) is None


async def test_provider_keys_are_put_rotated_listed_and_deleted(sql: Backend) -> None:
    store = sql.keys
    first = ProviderKeyRecord(
        name="openai-prod", provider="openai", sealed=b"\x00sealed\xff", created_at=NOW
    )
    await store.put_provider_key(first)
    await store.put_provider_key(ProviderKeyRecord(name="a-first", provider="x", sealed=b"1"))
    assert await store.provider_key("openai-prod") == first
    assert await store.provider_key("nope") is None
    rotated = ProviderKeyRecord(
        name="openai-prod", provider="openai", sealed=b"new", created_at=NOW + 9, updated_at=NOW + 9
    )
    await store.put_provider_key(rotated)
    kept = await store.provider_key("openai-prod")
    assert kept == ProviderKeyRecord(
        name="openai-prod", provider="openai", sealed=b"new", created_at=NOW, updated_at=NOW + 9
    )
    assert [record.name for record in await store.list_provider_keys()] == [
        "a-first",
        "openai-prod",
    ]
    assert await store.delete_provider_key("openai-prod") is True
    assert await store.delete_provider_key("openai-prod") is False
    assert [record.name for record in await store.list_provider_keys()] == ["a-first"]


# ---- budgets ----


async def test_reserve_then_settle_moves_the_hold_into_spend(sql: Backend) -> None:
    store = sql.keys
    key = make_key("a", budget=Budget(max_budget=3 * CENTS_4))
    await store.create_key(key)
    holder = [Holder("key", key.token)]
    assert await store.reserve("h1", holder, 2 * CENTS_4, now=NOW, ttl=60) is None
    assert await reserved(sql, keys, key.token) == 2 * CENTS_4
    refusal = await store.reserve("h2", holder, 2 * CENTS_4, now=NOW, ttl=60)
    assert refusal == BudgetRefusal(
        holder=Holder("key", key.token), max_budget=3 * CENTS_4, spend=2 * CENTS_4, reset_at=None
    )
    await store.settle("h1", CENTS_4, now=NOW + 1)
    await store.settle("h1", CENTS_4, now=NOW + 2)  # once only
    settled = await store.key(key.token)
    assert settled is not None and settled.budget.spend == CENTS_4
    assert await reserved(sql, keys, key.token) == 0
    await store.settle("never-held", CENTS_4, now=NOW)  # nothing happens
    assert await store.reserve("h3", holder, 2 * CENTS_4, now=NOW, ttl=60) is None


async def test_reserve_is_all_or_none_across_key_team_and_user(sql: Backend) -> None:
    store = sql.keys
    await store.create_team(TeamRecord(team_id="t1", budget=Budget(max_budget=CENTS_4, spend=1)))
    await store.create_user(UserRecord(user_id="u1", budget=Budget(max_budget=nanos(100))))
    key = make_key("a", team_id="t1", user_id="u1", budget=Budget(max_budget=nanos(100)))
    await store.create_key(key)
    holders = [Holder("user", "u1"), Holder("team", "t1"), Holder("key", key.token)]
    refusal = await store.reserve("h1", holders, CENTS_4, now=NOW, ttl=60)
    assert refusal == BudgetRefusal(Holder("team", "t1"), CENTS_4, 1, None)
    assert await reserved(sql, keys, key.token) == 0
    assert await reserved(sql, teams, "t1") == 0
    assert await reserved(sql, users, "u1") == 0
    assert await store.release_lapsed(now=NOW + 1000) == 0  # no hold was written

    assert await store.reserve("h2", holders, CENTS_4 - 1, now=NOW, ttl=60) is None
    for table, ident in ((keys, key.token), (teams, "t1"), (users, "u1")):
        assert await reserved(sql, table, ident) == CENTS_4 - 1
    await store.settle("h2", 10, now=NOW)
    team = await store.team("t1")
    user = await store.user("u1")
    settled_key = await store.key(key.token)
    assert team is not None and team.budget.spend == 11
    assert user is not None and user.budget.spend == 10
    assert settled_key is not None and settled_key.budget.spend == 10


async def test_holders_without_a_row_or_a_cap_always_pass(sql: Backend) -> None:
    store = sql.keys
    await store.create_user(UserRecord(user_id="free"))  # no max_budget
    holders = [Holder("user", "free"), Holder("user", "never-made"), Holder("team", "gone")]
    assert await store.reserve("h1", holders, nanos(1e6), now=NOW, ttl=60) is None
    assert await reserved(sql, users, "free") == nanos(1e6)  # in flight, though uncapped
    await store.settle("h1", CENTS_4, now=NOW)
    assert await reserved(sql, users, "free") == 0
    free = await store.user("free")
    assert free is not None and free.budget.spend == CENTS_4
    await store.charge(holders, CENTS_4, now=NOW)
    free = await store.user("free")
    assert free is not None and free.budget.spend == 2 * CENTS_4


async def test_charge_adds_spend_without_a_hold(sql: Backend) -> None:
    store = sql.keys
    key = make_key("a", budget=Budget(max_budget=CENTS_4))
    await store.create_key(key)
    await store.charge([Holder("key", key.token), Holder("key", key.token)], 7, now=NOW)
    charged = await store.key(key.token)
    assert charged is not None and charged.budget.spend == 7  # each holder once
    assert await reserved(sql, keys, key.token) == 0


async def test_a_budget_change_read_before_a_charge_keeps_the_charge(sql: Backend) -> None:
    store = sql.keys
    key = make_key("a", budget=Budget(max_budget=CENTS_4))
    await store.create_key(key)
    read = await store.key(key.token)  # an update reads the key ...
    await store.charge([Holder("key", key.token)], 7, now=NOW)  # ... calls are charged ...
    assert read is not None
    raised = msgspec.structs.replace(read.budget, max_budget=2 * CENTS_4)
    updated = await store.update_key(key.token, {"budget": raised})  # ... then it writes
    stored = await store.key(key.token)
    assert updated is not None and updated.budget.spend == 7
    assert stored is not None and stored.budget == Budget(max_budget=2 * CENTS_4, spend=7)


async def test_a_budget_resets_when_its_period_ends(sql: Backend) -> None:
    store = sql.keys
    ends = NOW + 30
    key = make_key("a", budget=Budget(max_budget=CENTS_4, duration="30s", reset_at=ends))
    await store.create_key(key)
    holder = [Holder("key", key.token)]
    await store.charge(holder, CENTS_4, now=NOW)
    refusal = await store.reserve("h1", holder, 1, now=NOW + 29, ttl=60)
    assert refusal == BudgetRefusal(holder[0], CENTS_4, CENTS_4, ends)
    # 95 s later: three periods have ended; the next ends on the same 30 s grid.
    assert await store.reserve("h2", holder, 1, now=ends + 95, ttl=60) is None
    renewed = await store.key(key.token)
    assert renewed is not None
    assert renewed.budget.spend == 0 and renewed.budget.reset_at == ends + 120
    # A hold taken before the end still settles into the new period.
    await store.settle("h2", 5, now=ends + 96)
    settled = await store.key(key.token)
    assert settled is not None and settled.budget.spend == 5


async def test_a_period_without_a_start_starts_at_first_use(sql: Backend) -> None:
    store = sql.keys
    key = make_key("a", budget=Budget(max_budget=CENTS_4, duration="1mo", spend=3))
    await store.create_key(key)
    await store.charge([Holder("key", key.token)], 1, now=NOW)
    started = await store.key(key.token)
    assert started is not None and started.budget.spend == 4  # spend kept, period started
    assert started.budget.reset_at == datetime(2025, 7, 15, 15, 6, 40, tzinfo=UTC).timestamp()


async def test_lapsed_holds_are_released(sql: Backend) -> None:
    store = sql.keys
    key = make_key("a", budget=Budget(max_budget=2 * CENTS_4))
    await store.create_key(key)
    await store.create_team(TeamRecord(team_id="t1", budget=Budget(max_budget=nanos(1))))
    holders = [Holder("key", key.token), Holder("team", "t1")]
    assert await store.reserve("h1", holders, CENTS_4, now=NOW, ttl=10) is None
    assert await store.reserve("h2", holders, CENTS_4, now=NOW, ttl=100) is None
    assert await store.reserve("h3", holders, 1, now=NOW, ttl=10) is not None  # full
    assert await store.release_lapsed(now=NOW + 9) == 0
    assert await store.release_lapsed(now=NOW + 10) == 1
    assert await store.release_lapsed(now=NOW + 10) == 0
    assert await reserved(sql, keys, key.token) == CENTS_4
    assert await reserved(sql, teams, "t1") == CENTS_4
    await store.settle("h1", CENTS_4, now=NOW + 11)  # lapsed: nothing to settle
    kept = await store.key(key.token)
    assert kept is not None and kept.budget.spend == 0
    assert await store.reserve("h4", holders, CENTS_4, now=NOW + 11, ttl=10) is None


async def test_a_hold_id_is_used_once(sql: Backend) -> None:
    await sql.keys.create_user(UserRecord(user_id="u1"))
    assert await sql.keys.reserve("h1", [Holder("user", "u1")], 1, now=NOW, ttl=5) is None
    with pytest.raises(ConflictError, match="h1"):
        await sql.keys.reserve("h1", [Holder("user", "u1")], 1, now=NOW, ttl=5)


async def test_two_instances_never_overspend(sql: Backend) -> None:
    """60 calls at once from two engines (two instances) on a budget of exactly 10 calls:
    exactly 10 get through, and settling them spends exactly the budget."""
    budget = 10 * CENTS_4
    key = make_key("hot", team_id="t1", budget=Budget(max_budget=budget))
    await sql.keys.create_key(key)
    await sql.keys.create_team(TeamRecord(team_id="t1", budget=Budget(max_budget=nanos(100))))
    other = SqlKeyStore(open_engine(sql.url))
    holders = [Holder("key", key.token), Holder("team", "t1")]
    try:
        stores = (sql.keys, other)
        outcomes = await asyncio.gather(
            *(
                stores[index % 2].reserve(f"call-{index}", holders, CENTS_4, now=NOW, ttl=60)
                for index in range(60)
            )
        )
        held = [f"call-{index}" for index, refusal in enumerate(outcomes) if refusal is None]
        assert len(held) == 10
        refused = [refusal for refusal in outcomes if refusal is not None]
        assert all(refusal.holder == holders[0] for refusal in refused)
        assert all(refusal.spend + CENTS_4 > budget for refusal in refused)
        await asyncio.gather(
            *(stores[index % 2].settle(hold, CENTS_4, now=NOW) for index, hold in enumerate(held))
        )
    finally:
        await other.aclose()
    spent = await sql.keys.key(key.token)
    team = await sql.keys.team("t1")
    assert spent is not None and spent.budget.spend == budget
    assert team is not None and team.budget.spend == budget
    assert await reserved(sql, keys, key.token) == 0
    assert await reserved(sql, teams, "t1") == 0


_RESERVING_PROCESS = """
import asyncio, sys
from prismgate.storage import Holder
from prismgate.storage.sql import SqlKeyStore, open_engine

async def main(url, name, token):
    store = SqlKeyStore(open_engine(url))
    holds = [f"{name}-{index}" for index in range(30)]
    holder = [Holder("key", token)]
    refusals = await asyncio.gather(
        *(store.reserve(hold, holder, 40_000_000, now=1.0, ttl=60) for hold in holds)
    )
    held = [hold for hold, refusal in zip(holds, refusals) if refusal is None]
    await asyncio.gather(*(store.settle(hold, 40_000_000, now=2.0) for hold in held))
    await store.aclose()
    print(len(held))

asyncio.run(main(*sys.argv[1:]))
"""


async def test_two_processes_never_overspend_on_sqlite(databases: Databases) -> None:
    """SQLite locks differently between processes than between connections of one process:
    two real processes, 30 calls at once each, on a budget of exactly 10 calls."""
    url = await databases.fresh("sqlite")
    await upgrade(url)
    store = SqlKeyStore(open_engine(url))
    key = make_key("hot", budget=Budget(max_budget=10 * CENTS_4))
    await store.create_key(key)
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _RESERVING_PROCESS, url, name, key.token, stdout=PIPE, stderr=PIPE
        )
        for name in ("east", "west")
    ]
    answers = [await process.communicate() for process in processes]
    assert [process.returncode for process in processes] == [0, 0], answers
    assert sum(int(out) for out, _ in answers) == 10
    spent = await store.key(key.token)
    await store.aclose()
    assert spent is not None and spent.budget.spend == 10 * CENTS_4


# ---- spend log ----


def spend_row(request_id: str, started_at: float, **fields: object) -> SpendRow:
    defaults: dict[str, object] = {
        "ended_at": started_at + 1.5,
        "call_type": "image_generation",
        "status_code": 200,
    }
    return SpendRow(request_id=request_id, started_at=started_at, **(defaults | fields))


DAY_1 = datetime(2025, 6, 1, 23, 59, tzinfo=UTC).timestamp()
DAY_2 = datetime(2025, 6, 2, 0, 1, tzinfo=UTC).timestamp()


async def write_sample(log: SqlSpendLog) -> None:
    await log.write(
        [
            spend_row(
                "r1",
                DAY_1,
                token="ka",
                team_id="t1",
                user_id="u1",
                model_group="img",
                spend=CENTS_4,
                images=1,
            ),
            spend_row("r2", DAY_1 + 10, token="kb", team_id="t1", model_group="img", spend=5),
            spend_row(
                "r3",
                DAY_2,
                token="ka",
                team_id="t2",
                model_group="chat",
                spend=3 * CENTS_4,
                images=2,
                total_tokens=30,
            ),
            spend_row("r4", DAY_2 + 60, status_code=500, error="api_error"),
        ]
    )


async def test_spend_rows_are_written_once_and_read_back(sql: Backend) -> None:
    log = sql.spend
    full = spend_row(
        "r0",
        DAY_1 - 100,
        token="ka",
        key_alias="ci",
        end_user="someone",
        model="dall-e-3",
        model_group="img",
        deployment="d1",
        provider="openai",
        api_base="https://api.openai.com/v1",
        images=2,
        image_size="1024x1024",
        image_quality="hd",
        prompt_tokens=1,
        completion_tokens=2,
        total_tokens=3,
        spend=nanos(0.08),
        cache_status="miss",
        latency_ms=12.5,
        upstream_ms=10.25,
        attempts=("d1=200",),
        adjustments=("size",),
        trace_id="tr",
        metadata={"tags": ["a"]},
        prompt="a cat",
    )
    await log.write([full])
    await write_sample(log)
    await log.write([])
    # A replay (and a repeat inside one batch) writes nothing twice, and keeps the first.
    await log.write([spend_row("r1", DAY_1, spend=999), spend_row("r5", DAY_2 + 99)] * 2)
    rows = await log.rows(SpendQuery())
    assert [row.request_id for row in rows] == ["r5", "r4", "r3", "r2", "r1", "r0"]
    assert rows[-1] == full
    assert rows[-2].spend == CENTS_4


async def test_a_large_batch_goes_in_whole_once(sql: Backend) -> None:
    # 519 rows, the odd ones with metadata: the 260 usual rows (no metadata) go as one
    # statement of ROWS_PER_STATEMENT (256) and one of 4, with their empty JSON columns
    # as constants; the 259 others as 256, 2 and 1, every column bound. Each row's values
    # must land in its own row, whatever statement carried it.
    log = sql.spend
    count = 2 * ROWS_PER_STATEMENT + 7
    batch = [
        spend_row(
            f"r{i:04}", DAY_1 + i, token=f"k{i}", images=i, metadata={"i": i} if i % 2 else {}
        )
        for i in range(count)
    ]
    # Text that looks like 0, nothing or NULL is stored as it is.
    batch[0] = spend_row("r0000", DAY_1, key_alias="0", end_user="", prompt="0.0", error="NULL")
    await log.write(batch)
    await log.write(batch[-10:])  # a replay of the tail adds nothing
    rows = await log.rows(SpendQuery(limit=1000))
    assert len(rows) == count
    assert sorted(rows, key=lambda row: row.request_id) == batch


async def test_spend_rows_are_filtered_and_paged(sql: Backend) -> None:
    log = sql.spend
    await write_sample(log)

    async def ids(**query: object) -> list[str]:
        return [row.request_id for row in await log.rows(SpendQuery(**query))]

    assert await ids(token="ka") == ["r3", "r1"]
    assert await ids(team_id="t1") == ["r2", "r1"]
    assert await ids(user_id="u1") == ["r1"]
    assert await ids(request_id="r4") == ["r4"]
    assert await ids(start=DAY_1 + 10) == ["r4", "r3", "r2"]
    assert await ids(end=DAY_2) == ["r2", "r1"]
    assert await ids(start=DAY_1 + 1, end=DAY_2 + 1, token="ka") == ["r3"]
    assert await ids(limit=2) == ["r4", "r3"]
    assert await ids(limit=2, offset=3) == ["r1"]


async def test_spend_totals_by_key_team_model_and_day(sql: Backend) -> None:
    log = sql.spend
    await write_sample(log)
    by_key = await log.totals(SpendQuery(), "key")
    assert by_key == [
        SpendTotal("ka", 4 * CENTS_4, 2, 3, 30),
        SpendTotal("kb", 5, 1, 0, 0),
        SpendTotal(None, 0, 1, 0, 0),
    ]
    assert await log.totals(SpendQuery(), "team") == [
        SpendTotal("t2", 3 * CENTS_4, 1, 2, 30),
        SpendTotal("t1", CENTS_4 + 5, 2, 1, 0),
        SpendTotal(None, 0, 1, 0, 0),
    ]
    assert await log.totals(SpendQuery(start=DAY_1, end=DAY_2), "model") == [
        SpendTotal("img", CENTS_4 + 5, 2, 1, 0)
    ]
    assert await log.totals(SpendQuery(), "day") == [
        SpendTotal("2025-06-02", 3 * CENTS_4, 2, 2, 30),
        SpendTotal("2025-06-01", CENTS_4 + 5, 2, 1, 0),
    ]
    assert await log.totals(SpendQuery(token="kb"), "day") == [SpendTotal("2025-06-01", 5, 1, 0, 0)]
    assert await log.totals(SpendQuery(token="nobody"), "key") == []


# ---- migrations ----


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_migrations_run_once_however_many_start_together(
    kind: str, databases: Databases
) -> None:
    url = await databases.fresh(kind)
    assert await current_revision(url) is None
    await asyncio.gather(*(upgrade(url) for _ in range(4)))
    assert await current_revision(url) == head_revision()
    await upgrade(url)  # current already: nothing to do
    engine = open_engine(url)
    try:
        async with engine.connect() as connection:
            versions = await connection.scalars(sa.text("SELECT version_num FROM alembic_version"))
            assert list(versions) == [head_revision()]
            # The migrations build exactly the schema the stores are written against.
            differences = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
            assert differences == []
    finally:
        await engine.dispose()


async def test_open_sql_stores_migrates_and_shares_one_engine(databases: Databases) -> None:
    url = await databases.fresh("sqlite")
    key_store, spend_log = await open_sql_stores(url)
    await key_store.create_user(UserRecord(user_id="u1"))
    await spend_log.write([spend_row("r1", NOW)])
    await key_store.aclose()
    await key_store.aclose()  # once only: the spend log still has the engine
    assert [row.request_id for row in await spend_log.rows(SpendQuery())] == ["r1"]
    await spend_log.aclose()
    assert await current_revision(url) == head_revision()


# ---- URLs ----


def test_no_database_url_means_sqlite_in_the_data_folder(tmp_path: Path) -> None:
    folder = tmp_path / "not" / "yet"
    url = database_url(None, folder)
    assert url == f"sqlite+aiosqlite:///{folder.resolve()}/prismgate.db"
    assert folder.is_dir()
    assert database_url("", folder) == url


def test_litellm_database_urls_are_accepted(tmp_path: Path) -> None:
    pg = "postgresql+asyncpg://u:p%40ss@db.example:5433/prismgate"
    assert database_url("postgresql://u:p%40ss@db.example:5433/prismgate", tmp_path) == pg
    assert database_url("postgres://u:p%40ss@db.example:5433/prismgate", tmp_path) == pg
    assert database_url(pg, tmp_path) == pg
    assert (
        database_url("postgres://u@h/db?sslmode=require", tmp_path)
        == "postgresql+asyncpg://u@h/db?ssl=require"
    )
    target = tmp_path / "sub" / "x.db"
    assert database_url(f"sqlite:///{target}", tmp_path) == f"sqlite+aiosqlite:///{target}"
    assert target.parent.is_dir()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root:hunter2@db/x", "is not a supported database"),
        ("postgresql://u:hunter2@h/db?schema=public", "unsupported query parameter"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("hunter2 is no url", "could not be read"),
    ],
)
def test_unsupported_database_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        database_url(url, "/tmp")
    assert "hunter2" not in str(raised.value)
    assert "supported" in str(raised.value).lower()


def test_safe_url_hides_the_password() -> None:
    assert safe_url("postgresql+asyncpg://u:hunter2@h/db") == "postgresql+asyncpg://u:***@h/db"
    assert safe_url("postgresql://u@h/db?password=hunter2") == "postgresql://u@h/db"
    assert "hunter2" not in safe_url("hunter2")


def test_open_engine_wants_an_async_url() -> None:
    with pytest.raises(ConfigError, match="database_url"):
        open_engine("postgresql://u:hunter2@h/db")


# ---- budget periods ----


@pytest.mark.parametrize(
    ("text", "period"),
    [
        ("30s", Period(30, "s")),
        ("15m", Period(15, "m")),
        ("1h", Period(1, "h")),
        ("7d", Period(7, "d")),
        ("2w", Period(2, "w")),
        ("1mo", Period(1, "mo")),
        (" 12mo ", Period(12, "mo")),
    ],
)
def test_durations_parse(text: str, period: Period) -> None:
    assert parse_duration(text) == period


@pytest.mark.parametrize("text", ["", "0d", "1", "d", "1y", "1.5h", "-1d", "1 d", "1M"])
def test_bad_durations_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError, match="s, m, h, d, w, mo"):
        parse_duration(text)


def _at(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


def test_next_reset_counts_whole_periods_from_the_anchor() -> None:
    assert next_reset("1h", now=1000.0) == 4600.0  # no anchor: one period from now
    assert next_reset("1h", now=1000.0, anchor=5000.0) == 5000.0  # not over yet
    assert next_reset("30s", now=100.0, anchor=100.0) == 130.0  # ends are not inside
    assert next_reset("30s", now=1_000_000.0, anchor=10.0) == 1_000_030.0  # 1e6 is an end
    assert next_reset("2w", now=_at(2025, 1, 20), anchor=_at(2025, 1, 1)) == _at(2025, 1, 29)
    assert next_reset("1d", now=_at(2025, 3, 1, 12), anchor=_at(2024, 2, 28)) == _at(2025, 3, 2)


def test_monthly_periods_follow_the_calendar() -> None:
    jan_31 = _at(2024, 1, 31, 8)
    assert next_reset("1mo", now=jan_31) == _at(2024, 2, 29, 8)  # leap year, last day
    assert next_reset("1mo", now=_at(2024, 2, 1), anchor=jan_31) == _at(2024, 2, 29, 8)
    assert next_reset("1mo", now=_at(2024, 2, 29, 8), anchor=jan_31) == _at(2024, 3, 31, 8)
    assert next_reset("1mo", now=_at(2024, 4, 30, 9), anchor=jan_31) == _at(2024, 5, 31, 8)
    assert next_reset("3mo", now=_at(2024, 12, 1), anchor=jan_31) == _at(2025, 1, 31, 8)
    assert next_reset("1mo", now=_at(2025, 2, 3), anchor=_at(2023, 12, 31)) == _at(2025, 2, 28)
    assert next_reset("12mo", now=_at(2024, 6, 1)) == _at(2025, 6, 1)
