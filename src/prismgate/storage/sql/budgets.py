"""Budgets on SQL: a call holds its price before it goes upstream and settles its cost after.

Each holder row (a key, team or user) keeps `spend` (settled) and `reserved` (held by calls
in flight, whether or not it has a cap); `budget_holds` records what each hold added to each
holder's `reserved`, so a hold is settled or released exactly once. Every function here
runs inside the caller's transaction, and writes through conditional UPDATEs:

- a reservation adds to `reserved` only `WHERE max_budget IS NULL OR spend + reserved +
  amount <= max_budget`; PostgreSQL re-checks that condition on the newest row after any
  concurrent writer commits, so instances cannot overspend between them. On SQLite the
  transaction's `BEGIN IMMEDIATE` already makes writers take turns.
- holder rows are always written in one order (by kind, then id), and holds are locked in
  key order before their holders, so concurrent calls never deadlock.
- a period that ended is reset by an UPDATE that also requires `budget_reset_at <= now`:
  when two instances both see the end, one resets and the other finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from prismgate.storage import BudgetRefusal, Holder, HolderKind
from prismgate.storage.periods import next_reset
from prismgate.storage.records import Nanos
from prismgate.storage.sql.schema import budget_holds, keys, teams, users

__all__ = [
    "Refused",
    "charge",
    "headroom",
    "hold",
    "lock_holds",
    "move_holds",
    "ordered",
    "release_lapsed",
    "settle",
]

_HOLDERS: dict[HolderKind, tuple[sa.Table, sa.Column[Any]]] = {
    "key": (keys, keys.c.token),
    "team": (teams, teams.c.team_id),
    "user": (users, users.c.user_id),
}


class Refused(Exception):
    """A holder's budget cannot take the amount: the transaction is to be rolled back."""

    def __init__(self, refusal: BudgetRefusal) -> None:
        super().__init__(f"{refusal.holder.kind} {refusal.holder.id}: over budget")
        self.refusal = refusal


def ordered(holders: Iterable[Holder]) -> list[Holder]:
    """Each holder once, in the one order every transaction writes them in."""
    return sorted(set(holders), key=lambda holder: (holder.kind, holder.id))


async def hold(
    connection: AsyncConnection,
    hold_id: str,
    holders: Sequence[Holder],
    amount: Nanos,
    *,
    now: float,
    ttl: float,
) -> None:
    """Reserve `amount` from every holder that exists, recorded under `hold_id`. `Refused`
    when one budget cannot take it: the caller rolls its transaction back."""
    held: list[dict[str, Any]] = []
    for holder in ordered(holders):
        table, ident = _HOLDERS[holder.kind]
        fits = sa.or_(
            table.c.max_budget.is_(None),
            table.c.spend + table.c.reserved + amount <= table.c.max_budget,
        )
        take = sa.update(table).values(reserved=table.c.reserved + amount)
        taken = await connection.execute(take.where(ident == holder.id, fits, _current(table, now)))
        if taken.rowcount == 0:
            # No such row, no room, or a period that ended: the slow path tells which.
            if not await _open_period(connection, holder, now):
                continue  # no such row (a user never created): nothing to hold against
            taken = await connection.execute(take.where(ident == holder.id, fits))
            if taken.rowcount == 0:
                refusal = await _refusal(connection, holder)
                if refusal is not None:
                    raise Refused(refusal)
                continue  # removed since: nothing to hold against
        held.append(
            {
                "hold_id": hold_id,
                "holder_kind": holder.kind,
                "holder_id": holder.id,
                "amount": amount,
                "expires_at": now + ttl,
            }
        )
    if held:
        await connection.execute(sa.insert(budget_holds), held)


async def settle(connection: AsyncConnection, hold_id: str, spent: Nanos, *, now: float) -> bool:
    """Release the hold and add `spent` to each of its holders; whether it was there
    (nothing is done when it was settled already, or lapsed)."""
    rows = await _take_holds(connection, budget_holds.c.hold_id == hold_id)
    amounts = {Holder(row.holder_kind, row.holder_id): row.amount for row in rows}
    await _pay(connection, amounts, spent=spent, now=now)
    return bool(rows)


async def headroom(connection: AsyncConnection, holders: Sequence[Holder]) -> Nanos | None:
    """The least room left (cap, less spend and holds) among the holders with a cap; None
    when none has one. A period that ended is not reset here: the room may be understated."""
    least: Nanos | None = None
    for holder in ordered(holders):
        table, ident = _HOLDERS[holder.kind]
        row = (
            await connection.execute(
                sa.select(table.c.max_budget, table.c.spend, table.c.reserved).where(
                    ident == holder.id
                )
            )
        ).first()
        if row is None or row.max_budget is None:
            continue
        room = row.max_budget - row.spend - row.reserved
        least = room if least is None else min(least, room)
    return least


async def charge(
    connection: AsyncConnection, holders: Sequence[Holder], spent: Nanos, *, now: float
) -> None:
    """Add `spent` to each holder's spend, with no hold."""
    await _pay(connection, dict.fromkeys(holders, 0), spent=spent, now=now)


async def release_lapsed(connection: AsyncConnection, *, now: float) -> int:
    """Drop the holds past their time, returning their amounts; how many holds."""
    rows = await _take_holds(connection, budget_holds.c.expires_at <= now)
    returned: dict[Holder, Nanos] = {}
    for row in rows:
        holder = Holder(row.holder_kind, row.holder_id)
        returned[holder] = returned.get(holder, 0) + row.amount
    await _pay(connection, returned, spent=0, now=now)
    return len({row.hold_id for row in rows})


async def lock_holds(connection: AsyncConnection, holder: Holder) -> None:
    """Lock the holder's holds, before its row is locked (the order settles use)."""
    await connection.execute(
        sa.select(budget_holds.c.hold_id)
        .where(_held_by(holder))
        .order_by(*budget_holds.primary_key.columns)
        .with_for_update()
    )


async def move_holds(connection: AsyncConnection, old: Holder, new: Holder) -> None:
    """Give every hold of `old` to `new` (a key given a new token)."""
    await connection.execute(
        sa.update(budget_holds).where(_held_by(old)).values(holder_kind=new.kind, holder_id=new.id)
    )


def _held_by(holder: Holder) -> sa.ColumnElement[bool]:
    return sa.and_(budget_holds.c.holder_kind == holder.kind, budget_holds.c.holder_id == holder.id)


async def _take_holds(connection: AsyncConnection, which: sa.ColumnElement[bool]) -> list[Any]:
    # Locked in key order first, so a settle and a sweep of the same hold queue, not deadlock.
    rows = list(
        await connection.execute(
            sa.select(budget_holds)
            .where(which)
            .order_by(*budget_holds.primary_key.columns)
            .with_for_update()
        )
    )
    if rows:
        hold_ids = sorted({row.hold_id for row in rows})
        await connection.execute(
            sa.delete(budget_holds).where(budget_holds.c.hold_id.in_(hold_ids), which)
        )
    return rows


async def _pay(
    connection: AsyncConnection, returned: dict[Holder, Nanos], *, spent: Nanos, now: float
) -> None:
    """Each holder gets back what it held (`returned`) and is charged `spent`."""
    for holder in ordered(returned):
        table, ident = _HOLDERS[holder.kind]
        pay = sa.update(table).values(
            reserved=table.c.reserved - returned[holder], spend=table.c.spend + spent
        )
        paid = await connection.execute(pay.where(ident == holder.id, _current(table, now)))
        if paid.rowcount == 0 and await _open_period(connection, holder, now):
            await connection.execute(pay.where(ident == holder.id))


def _current(table: sa.Table, now: float) -> sa.ColumnElement[bool]:
    """The holder's budget has no period, or one that has not ended (the usual case, when
    one statement does)."""
    return sa.or_(table.c.budget_duration.is_(None), table.c.budget_reset_at > now)


async def _open_period(connection: AsyncConnection, holder: Holder, now: float) -> bool:
    """Reset the holder's spend when its period ended (or start its first period); whether
    the holder has a row."""
    table, ident = _HOLDERS[holder.kind]
    row = (
        await connection.execute(
            sa.select(table.c.budget_duration, table.c.budget_reset_at).where(ident == holder.id)
        )
    ).first()
    if row is None:
        return False
    duration, reset_at = row.budget_duration, row.budget_reset_at
    if duration and (reset_at is None or reset_at <= now):
        ends = next_reset(duration, now=now, anchor=reset_at)
        if reset_at is None:
            # A budget given a period without a start: its first period starts now.
            change = sa.update(table).where(ident == holder.id, table.c.budget_reset_at.is_(None))
            await connection.execute(change.values(budget_reset_at=ends))
        else:
            ended = sa.update(table).where(ident == holder.id, table.c.budget_reset_at <= now)
            await connection.execute(ended.values(spend=0, budget_reset_at=ends))
    return True


async def _refusal(connection: AsyncConnection, holder: Holder) -> BudgetRefusal | None:
    table, ident = _HOLDERS[holder.kind]
    row = (
        await connection.execute(
            sa.select(
                table.c.max_budget, table.c.spend, table.c.reserved, table.c.budget_reset_at
            ).where(ident == holder.id)
        )
    ).first()
    if row is None or row.max_budget is None:
        return None
    return BudgetRefusal(
        holder=holder,
        max_budget=row.max_budget,
        spend=row.spend + row.reserved,
        reset_at=row.budget_reset_at,
    )
