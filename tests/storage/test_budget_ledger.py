"""`Budgets` over the real key store (SQLite and PostgreSQL): leases that cover many calls
with one hold, exact holds when little room is left, and spend that is never lost."""

from __future__ import annotations

import asyncio
import gc

import pytest
import sqlalchemy as sa

from prismgate.config import load_config
from prismgate.errors import BudgetExceededError
from prismgate.gateway import CallOptions, Gateway
from prismgate.identity.budgets import HOLD_TTL, LEASE_CALLS, LEASE_SHARE, Budgets, Hold
from prismgate.identity.principal import Principal
from prismgate.observers import CallReport
from prismgate.storage.records import Budget, KeyRecord, TeamRecord, nanos
from prismgate.storage.sql.schema import budget_holds
from prismgate.types.chat import ChatCompletionRequest
from prismgate.types.validation import convert_request
from tests.emulators import OpenAIEmulator
from tests.storage.conftest import SqlBackend as Backend

PRICE = 0.04


async def _key(
    sql: Backend, name: str, budget: float | None, team: TeamRecord | None = None
) -> Principal:
    cap = nanos(budget) if budget is not None else None
    record = KeyRecord(
        token=name.ljust(64, "0"),
        key_name=f"sk-...{name[-4:]}",
        key_alias=name,
        team_id=team.team_id if team else None,
        budget=Budget(max_budget=cap),
    )
    await sql.keys.create_key(record)
    return Principal(role="key", scope=record.token, key=record, team=team)


async def _holds(sql: Backend) -> int:
    async with sql.engine.connect() as connection:
        return int(
            (
                await connection.execute(sa.select(sa.func.count()).select_from(budget_holds))
            ).scalar_one()
        )


async def _spend(sql: Backend, principal: Principal) -> float:
    assert principal.key is not None
    key = await sql.keys.key(principal.key.token)
    assert key is not None
    return key.budget.spend / 1e9


async def test_calls_draw_from_one_lease_and_pay_what_they_cost(sql: Backend) -> None:
    principal = await _key(sql, "wide", budget=100.0)
    budgets = Budgets(sql.keys)
    holds = [await budgets.hold(principal, lambda: PRICE) for _ in range(50)]
    assert await _holds(sql) == 1  # fifty calls, one hold in the store
    for hold in holds:
        assert hold is not None
        hold.pay(nanos(0.03))  # cheaper than the bound: the rest goes back to the lease
    await budgets.aclose()
    assert await _holds(sql) == 0
    assert await _spend(sql, principal) == pytest.approx(50 * 0.03)


async def test_a_small_budget_lets_exactly_its_calls_through(sql: Backend) -> None:
    principal = await _key(sql, "narrow", budget=10 * PRICE)
    budgets = Budgets(sql.keys)

    async def call() -> bool:
        try:
            hold = await budgets.hold(principal, lambda: PRICE)
        except BudgetExceededError:
            return False
        await asyncio.sleep(0.05)
        assert hold is not None
        hold.pay(nanos(PRICE))
        return True

    served = await asyncio.gather(*(call() for _ in range(60)))
    await budgets.aclose()
    assert served.count(True) == 10
    assert await _spend(sql, principal) == pytest.approx(10 * PRICE)


async def test_a_team_cap_holds_for_a_key_without_one(sql: Backend) -> None:
    team = TeamRecord(team_id="studio", team_alias="studio", budget=Budget(max_budget=nanos(0.1)))
    await sql.keys.create_team(team)
    principal = await _key(sql, "member", budget=None, team=team)
    budgets = Budgets(sql.keys)
    first = await budgets.hold(principal, lambda: 0.06)
    with pytest.raises(BudgetExceededError, match="the team studio"):
        await budgets.hold(principal, lambda: 0.06)
    assert first is not None
    first.pay(0)  # a failed call costs nothing and frees its hold
    second = await budgets.hold(principal, lambda: 0.06)
    assert second is not None
    second.pay(nanos(0.06))
    await budgets.aclose()
    stored = await sql.keys.team("studio")
    assert stored is not None and stored.budget.spend == nanos(0.06)


async def test_uncapped_spend_is_charged_in_one_write(sql: Backend) -> None:
    principal = await _key(sql, "free", budget=None)
    budgets = Budgets(sql.keys)
    holds = [
        await budgets.hold(principal, lambda: pytest.fail("no price needed")) for _ in range(20)
    ]
    assert await _holds(sql) == 0
    for hold in holds:
        assert hold is not None
        hold.pay(nanos(0.01))
    await budgets.aclose()
    assert await _spend(sql, principal) == pytest.approx(0.2)


async def test_a_call_that_outlives_its_hold_is_still_charged(sql: Backend) -> None:
    now = [1_000_000.0]
    principal = await _key(sql, "slow", budget=1.0)
    budgets = Budgets(sql.keys, clock=lambda: now[0])
    hold: Hold | None = await budgets.hold(principal, lambda: 0.5)
    now[0] += HOLD_TTL + 1
    assert await sql.keys.release_lapsed(now=now[0]) == 1  # another instance swept it
    assert hold is not None
    hold.pay(nanos(0.25))
    await budgets.aclose()
    assert await _spend(sql, principal) == pytest.approx(0.25)


class _Reports:
    def __init__(self) -> None:
        self.seen: list[CallReport] = []

    def observe(self, report: CallReport) -> None:
        self.seen.append(report)


async def test_a_stream_dropped_unread_is_still_paid_and_reported(
    sql: Backend, openai_emulator: OpenAIEmulator
) -> None:
    """A streamed answer nobody reads nor closes (a client gone before the first byte, an
    SDK caller that dropped it) still pays its hold and is reported, once collected."""
    principal = await _key(sql, "dropper", budget=5.0)
    base = openai_emulator.base_url + "/v1"
    config = load_config(
        {"model_list": [{"model_name": "chat", "litellm_params": {
            "model": "openai/gpt-4o", "api_base": base, "api_key": openai_emulator.api_key}}]},
        environ={},
    )  # fmt: skip
    reports = _Reports()
    request = convert_request(
        {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10,
         "stream": True},
        ChatCompletionRequest,
    )  # fmt: skip
    async with Gateway(config, observers=[reports]) as gateway:
        gateway.use_key_store(sql.keys)
        served = await gateway.chat_completion_stream(request, CallOptions(principal=principal))
        assert reports.seen == []  # a stream is reported when it ends
        del served
        gc.collect()
        for _ in range(50):
            if reports.seen:
                break
            await asyncio.sleep(0.01)
        assert len(reports.seen) == 1
        await gateway.release_key_store()
    assert await _spend(sql, principal) == pytest.approx(2 * 2.5e-6 + 10 * 1e-5)  # its bound


async def test_a_shutdown_charges_running_calls_their_bound_once(sql: Backend) -> None:
    principal = await _key(sql, "closing", budget=100.0)
    budgets = Budgets(sql.keys)
    finished = await budgets.hold(principal, lambda: PRICE)
    running = await budgets.hold(principal, lambda: PRICE)
    assert finished is not None and running is not None
    finished.pay(nanos(0.01))
    await budgets.aclose()  # `running` has not ended: it is charged what it holds
    assert await _holds(sql) == 0
    assert await _spend(sql, principal) == pytest.approx(0.01 + PRICE)
    running.pay(nanos(0.02))  # too late to count, and never counted twice
    await asyncio.sleep(0.05)
    assert await _spend(sql, principal) == pytest.approx(0.01 + PRICE)


async def test_the_next_lease_is_taken_before_the_current_one_runs_out(sql: Backend) -> None:
    principal = await _key(sql, "busy", budget=1000.0)
    budgets = Budgets(sql.keys)
    lease = min(LEASE_CALLS, int(1000.0 / PRICE) // LEASE_SHARE)  # calls the first lease covers
    first = int(lease * 0.8)
    holds = [await budgets.hold(principal, lambda: PRICE) for _ in range(first)]
    await asyncio.sleep(0.1)
    assert await _holds(sql) == 2  # the following lease is there already
    holds += [await budgets.hold(principal, lambda: PRICE) for _ in range(lease - first + 10)]
    for hold in holds:
        assert hold is not None
        hold.pay(nanos(PRICE))
    await budgets.aclose()
    assert await _holds(sql) == 0
    assert await _spend(sql, principal) == pytest.approx(len(holds) * PRICE)
