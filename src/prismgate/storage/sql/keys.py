"""The key store on SQL (SQLite or PostgreSQL): keys, teams, users, provider keys, budgets.

Every method is one transaction. Writes run on the engine itself (`BEGIN IMMEDIATE` on
SQLite), reads on `reader(engine)`, so reads never queue behind writers. Budget
arithmetic lives in `budgets.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from prismgate.errors import ConflictError, NotFoundError
from prismgate.storage import BudgetRefusal, Holder
from prismgate.storage.periods import parse_duration
from prismgate.storage.records import (
    Budget,
    KeyRecord,
    Nanos,
    ProviderKeyRecord,
    TeamRecord,
    UserRecord,
)
from prismgate.storage.sql import budgets
from prismgate.storage.sql.engine import EngineHold, SharedEngine, dialect_insert, reader
from prismgate.storage.sql.rows import (
    apply_changes,
    changed_columns,
    record_from_row,
    row_from_record,
)
from prismgate.storage.sql.schema import keys, provider_keys, teams, users

__all__ = ["SqlKeyStore"]

R = TypeVar("R", KeyRecord, TeamRecord, UserRecord)
H = TypeVar("H", TeamRecord, UserRecord)

_LIVE = keys.c.deleted_at.is_(None)
_TOKENS_AT_ONCE = 500


class SqlKeyStore:
    """Keys, teams, users, provider keys and budgets in a SQL database (see `KeyStore`).

    Made from an engine it owns (disposed of by `aclose`) or a `SharedEngine`."""

    def __init__(self, engine: AsyncEngine | SharedEngine) -> None:
        self._hold = EngineHold(engine)
        self._engine = self._hold.engine
        self._reader = reader(self._engine)

    async def ping(self) -> None:
        """The database answers `SELECT 1`."""
        async with self._engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))

    # Keys

    async def create_key(self, key: KeyRecord) -> None:
        """Add a key. `ConflictError` when its token or alias is taken."""
        _check_budget(key.budget)
        try:
            async with self._hold.begin() as connection:
                if await _exists(connection, keys.c.token == key.token):
                    raise ConflictError(f"the key {key.key_name} exists already", param="token")
                if key.deleted_at is None:
                    await _check_alias_free(connection, key.key_alias, token=key.token)
                await connection.execute(sa.insert(keys).values(row_from_record(key)))
        except IntegrityError as exc:  # another instance took it meanwhile
            raise ConflictError(
                f"the key {key.key_name} or its alias {key.key_alias!r} is taken",
                param="key_alias",
            ) from exc

    async def key(self, token: str) -> KeyRecord | None:
        """The key with this token, deleted ones included."""
        return await _read_one(self._reader, KeyRecord, keys, keys.c.token == token)

    async def key_by_alias(self, alias: str) -> KeyRecord | None:
        """The live key with this alias."""
        return await _read_one(self._reader, KeyRecord, keys, keys.c.key_alias == alias, _LIVE)

    async def keys_by_tokens(self, tokens: Sequence[str]) -> list[KeyRecord]:
        """The keys with these tokens, deleted ones included, in one transaction (a query
        per 500 tokens: well within every engine's limit on bound values)."""
        unique = list(dict.fromkeys(tokens))
        found: list[KeyRecord] = []
        async with self._reader.connect() as connection:
            for start in range(0, len(unique), _TOKENS_AT_ONCE):
                chosen = unique[start : start + _TOKENS_AT_ONCE]
                rows = await connection.execute(sa.select(keys).where(keys.c.token.in_(chosen)))
                found += [record_from_row(KeyRecord, row) for row in rows.mappings()]
        return found

    async def update_key(self, token: str, changes: Mapping[str, Any]) -> KeyRecord | None:
        """Change a live key's fields (`ValueError` for an unknown field or a wrong type,
        `ConflictError` for an alias another live key has)."""
        try:
            async with self._hold.begin() as connection:
                current = await _locked(connection, KeyRecord, keys, keys.c.token == token, _LIVE)
                if current is None:
                    return None
                changed = apply_changes(current, changes, fixed="token")
                _check_budget(changed.budget)
                if changed.key_alias != current.key_alias and changed.deleted_at is None:
                    await _check_alias_free(connection, changed.key_alias, token=token)
                await _write_changes(connection, keys, keys.c.token == token, changed, changes)
                return changed
        except IntegrityError as exc:
            raise ConflictError(
                f"the key alias {changes.get('key_alias')!r} is taken", param="key_alias"
            ) from exc

    async def replace_key(self, old_token: str, key: KeyRecord, *, now: float) -> None:
        """Give a live key a new token (a regenerated key) in one transaction: the old
        token is deleted as `key` is added, with the old row's spend, reserved amount, period
        and budget holds. `ConflictError` when the new token is taken, `NotFoundError` when
        the old key is not live."""
        _check_budget(key.budget)
        try:
            async with self._hold.begin() as connection:
                if await _exists(connection, keys.c.token == key.token):
                    raise ConflictError(f"the key {key.key_name} exists already", param="token")
                old = Holder("key", old_token)
                await budgets.lock_holds(connection, old)
                which = sa.and_(keys.c.token == old_token, _LIVE)
                found = await connection.execute(
                    sa.select(keys.c.spend, keys.c.reserved, keys.c.budget_reset_at)
                    .where(which)
                    .with_for_update()
                )
                kept = found.first()
                if kept is None:
                    raise NotFoundError(
                        "the key to replace is not live", param="key", code="key_not_found"
                    )
                # Deleted first, so that its alias is free for the new row.
                await connection.execute(
                    sa.update(keys).where(which).values(deleted_at=now, updated_at=now, reserved=0)
                )
                await _check_alias_free(connection, key.key_alias, token=key.token)
                row = row_from_record(key) | {
                    "spend": kept.spend,
                    "reserved": kept.reserved,
                    "budget_reset_at": kept.budget_reset_at,
                }
                await connection.execute(sa.insert(keys).values(row))
                await budgets.move_holds(connection, old, Holder("key", key.token))
        except IntegrityError as exc:
            raise ConflictError(
                f"the key {key.key_name} or its alias {key.key_alias!r} is taken",
                param="key_alias",
            ) from exc

    async def delete_keys(self, tokens: Sequence[str], *, now: float) -> list[str]:
        """Mark live keys deleted; the tokens that were."""
        if not tokens:
            return []
        async with self._hold.begin() as connection:
            which = sa.and_(keys.c.token.in_(set(tokens)), _LIVE)
            found = set(
                await connection.scalars(
                    sa.select(keys.c.token).where(which).order_by(keys.c.token).with_for_update()
                )
            )
            if found:
                await connection.execute(
                    sa.update(keys)
                    .where(keys.c.token.in_(found))
                    .values(deleted_at=now, updated_at=now)
                )
        return [token for token in dict.fromkeys(tokens) if token in found]

    async def list_keys(
        self,
        *,
        team_id: str | None = None,
        user_id: str | None = None,
        key_alias: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[KeyRecord], int]:
        """Live keys, newest first, and how many match in all."""
        which: list[sa.ColumnElement[bool]] = [_LIVE]
        for column, wanted in (
            (keys.c.team_id, team_id),
            (keys.c.user_id, user_id),
            (keys.c.key_alias, key_alias),
        ):
            if wanted is not None:
                which.append(column == wanted)
        async with self._reader.connect() as connection:
            count = sa.select(sa.func.count()).select_from(keys).where(*which)
            total = await connection.scalar(count)
            rows = await connection.execute(
                sa.select(keys)
                .where(*which)
                .order_by(keys.c.created_at.desc(), keys.c.token.desc())
                .offset(offset)
                .limit(limit)
            )
            found = [record_from_row(KeyRecord, row) for row in rows.mappings()]
        return found, total or 0

    # Teams

    async def create_team(self, team: TeamRecord) -> None:
        """Add a team. `ConflictError` when its id is taken."""
        await self._create(teams, team, teams.c.team_id == team.team_id, f"team {team.team_id!r}")

    async def team(self, team_id: str) -> TeamRecord | None:
        """The team with this id."""
        return await _read_one(self._reader, TeamRecord, teams, teams.c.team_id == team_id)

    async def update_team(self, team_id: str, changes: Mapping[str, Any]) -> TeamRecord | None:
        """Change a team's fields (`ValueError` for an unknown field or a wrong type)."""
        return await self._update(TeamRecord, teams, teams.c.team_id == team_id, changes)

    async def delete_teams(self, team_ids: Sequence[str]) -> list[str]:
        """Remove teams; their keys stay, without a team. The ids that were removed."""
        if not team_ids:
            return []
        async with self._hold.begin() as connection:
            which = teams.c.team_id.in_(set(team_ids))
            found = set(
                await connection.scalars(
                    sa.select(teams.c.team_id)
                    .where(which)
                    .order_by(teams.c.team_id)
                    # Locked like any holder row, so a reservation on the team is not lost.
                    .with_for_update()
                )
            )
            if found:
                await connection.execute(sa.delete(teams).where(teams.c.team_id.in_(found)))
                await connection.execute(
                    sa.update(keys).where(keys.c.team_id.in_(found)).values(team_id=None)
                )
        return [team_id for team_id in dict.fromkeys(team_ids) if team_id in found]

    async def list_teams(self) -> list[TeamRecord]:
        """Every team, oldest first."""
        async with self._reader.connect() as connection:
            rows = await connection.execute(
                sa.select(teams).order_by(teams.c.created_at, teams.c.team_id)
            )
            return [record_from_row(TeamRecord, row) for row in rows.mappings()]

    # Users

    async def create_user(self, user: UserRecord) -> None:
        """Add a user. `ConflictError` when its id is taken."""
        await self._create(users, user, users.c.user_id == user.user_id, f"user {user.user_id!r}")

    async def user(self, user_id: str) -> UserRecord | None:
        """The user with this id."""
        return await _read_one(self._reader, UserRecord, users, users.c.user_id == user_id)

    async def update_user(self, user_id: str, changes: Mapping[str, Any]) -> UserRecord | None:
        """Change a user's fields (`ValueError` for an unknown field or a wrong type)."""
        return await self._update(UserRecord, users, users.c.user_id == user_id, changes)

    # Provider keys

    async def put_provider_key(
        self, record: ProviderKeyRecord, *, only: Literal["new", "existing"] | None = None
    ) -> bool:
        """Add or replace a provider key (a rotation keeps its `created_at`); whether it
        was written. `only="new"`: only when the name is free; `only="existing"`: only
        when it is taken. One statement each, so two instances cannot both win."""
        statement: sa.Executable
        if only == "existing":
            statement = (
                sa.update(provider_keys)
                .where(provider_keys.c.name == record.name)
                .values(
                    provider=record.provider, sealed=record.sealed, updated_at=record.updated_at
                )
            )
        else:
            insert = dialect_insert(self._engine, provider_keys).values(
                name=record.name,
                provider=record.provider,
                sealed=record.sealed,
                created_at=record.created_at,
                updated_at=record.updated_at,
            )
            statement = (
                insert.on_conflict_do_nothing(index_elements=[provider_keys.c.name])
                if only == "new"
                else insert.on_conflict_do_update(
                    index_elements=[provider_keys.c.name],
                    set_={
                        "provider": insert.excluded.provider,
                        "sealed": insert.excluded.sealed,
                        "updated_at": insert.excluded.updated_at,
                    },
                )
            )
        async with self._hold.begin() as connection:
            written = await connection.execute(statement)
        return bool(written.rowcount)

    async def provider_key(self, name: str) -> ProviderKeyRecord | None:
        """The provider key called `name`."""
        async with self._reader.connect() as connection:
            found = await connection.execute(
                sa.select(provider_keys).where(provider_keys.c.name == name)
            )
            row = found.mappings().first()
        return None if row is None else _provider_key(row)

    async def list_provider_keys(self) -> list[ProviderKeyRecord]:
        """Every provider key, by name."""
        async with self._reader.connect() as connection:
            rows = await connection.execute(sa.select(provider_keys).order_by(provider_keys.c.name))
            return [_provider_key(row) for row in rows.mappings()]

    async def delete_provider_key(self, name: str) -> bool:
        """Remove a provider key; whether there was one."""
        async with self._hold.begin() as connection:
            removed = await connection.execute(
                sa.delete(provider_keys).where(provider_keys.c.name == name)
            )
        return removed.rowcount > 0

    # Budgets

    async def reserve(
        self, hold_id: str, holders: Sequence[Holder], amount: Nanos, *, now: float, ttl: float
    ) -> BudgetRefusal | None:
        """Hold `amount` against every holder's budget, all or none (see `KeyStore`)."""
        try:
            async with self._hold.begin() as connection:
                await budgets.hold(connection, hold_id, holders, amount, now=now, ttl=ttl)
        except budgets.Refused as refused:
            return refused.refusal
        except IntegrityError as exc:
            raise ConflictError(f"the budget hold {hold_id!r} exists already") from exc
        return None

    async def settle(self, hold_id: str, spent: Nanos, *, now: float) -> bool:
        """Release the hold and add `spent` to each of its holders' spend (once); whether
        the hold was there."""
        async with self._hold.begin() as connection:
            return await budgets.settle(connection, hold_id, spent, now=now)

    async def headroom(self, holders: Sequence[Holder]) -> Nanos | None:
        """The least room left among the holders' budgets; None when none has a cap."""
        async with self._reader.connect() as connection:
            return await budgets.headroom(connection, holders)

    async def charge(self, holders: Sequence[Holder], spent: Nanos, *, now: float) -> None:
        """Add `spent` to each holder's spend with no hold."""
        await self.charge_many([(holders, spent)], now=now)

    async def charge_many(
        self, charges: Sequence[tuple[Sequence[Holder], Nanos]], *, now: float
    ) -> None:
        """`charge` for many sets of holders, in one transaction."""
        async with self._hold.begin() as connection:
            for holders, spent in charges:
                await budgets.charge(connection, holders, spent, now=now)

    async def release_lapsed(self, *, now: float) -> int:
        """Drop holds past their time; how many."""
        async with self._hold.begin() as connection:
            return await budgets.release_lapsed(connection, now=now)

    async def aclose(self) -> None:
        """Release the connections (the engine too, unless it is shared and still used)."""
        await self._hold.release()

    async def _update(
        self,
        kind: type[H],
        table: sa.Table,
        which: sa.ColumnElement[bool],
        changes: Mapping[str, Any],
    ) -> H | None:
        """A team's or user's fields changed under a row lock; None when there is none."""
        async with self._hold.begin() as connection:
            current = await _locked(connection, kind, table, which)
            if current is None:
                return None
            changed = apply_changes(current, changes, fixed=table.primary_key.columns[0].name)
            _check_budget(changed.budget)
            await _write_changes(connection, table, which, changed, changes)
            return changed

    async def _create(
        self,
        table: sa.Table,
        record: TeamRecord | UserRecord,
        which: sa.ColumnElement[bool],
        name: str,
    ) -> None:
        _check_budget(record.budget)
        try:
            async with self._hold.begin() as connection:
                if await _exists(connection, which):
                    raise ConflictError(f"the {name} exists already")
                await connection.execute(sa.insert(table).values(row_from_record(record)))
        except IntegrityError as exc:  # made by another instance meanwhile
            raise ConflictError(f"the {name} exists already") from exc


def _check_budget(budget: Budget) -> None:
    # A period nobody can parse would fail every later reservation: refuse it at the door.
    if budget.duration is not None:
        parse_duration(budget.duration)


async def _exists(connection: AsyncConnection, which: sa.ColumnElement[bool]) -> bool:
    return await connection.scalar(sa.select(sa.literal(1)).where(which).limit(1)) is not None


async def _check_alias_free(connection: AsyncConnection, alias: str | None, *, token: str) -> None:
    if alias is None:
        return
    taken = sa.and_(keys.c.key_alias == alias, _LIVE, keys.c.token != token)
    if await _exists(connection, taken):
        raise ConflictError(f"the key alias {alias!r} is taken", param="key_alias")


async def _read_one(
    engine: AsyncEngine, kind: type[R], table: sa.Table, *which: sa.ColumnElement[bool]
) -> R | None:
    async with engine.connect() as connection:
        row = (await connection.execute(sa.select(table).where(*which))).mappings().first()
    return None if row is None else record_from_row(kind, row)


async def _locked(
    connection: AsyncConnection, kind: type[R], table: sa.Table, *which: sa.ColumnElement[bool]
) -> R | None:
    # FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the write lock.
    found = await connection.execute(sa.select(table).where(*which).with_for_update())
    row = found.mappings().first()
    return None if row is None else record_from_row(kind, row)


async def _write_changes(
    connection: AsyncConnection,
    table: sa.Table,
    which: sa.ColumnElement[bool],
    record: KeyRecord | TeamRecord | UserRecord,
    changes: Mapping[str, Any],
) -> None:
    if changes:
        await connection.execute(
            sa.update(table).where(which).values(changed_columns(record, changes))
        )


def _provider_key(row: RowMapping) -> ProviderKeyRecord:
    return ProviderKeyRecord(
        name=row["name"],
        provider=row["provider"],
        sealed=bytes(row["sealed"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
