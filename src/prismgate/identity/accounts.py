"""Keys, teams and users: the logic behind the management API and `prismgate keys`.

One service over the `KeyStore`, used by the proxy's routes and the command line alike.
Keys are shown once, when made; afterwards only their token (digest) and shown name.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from msgspec import UNSET

from prismgate.errors import BadRequestError, NotFoundError
from prismgate.identity.keys import KEY_PREFIX, key_name, new_key, token_of
from prismgate.identity.wire import (
    DeleteKeys,
    GenerateKey,
    NewTeam,
    NewUser,
    RegenerateKey,
    UpdateKey,
    UpdateTeam,
    key_view,
    team_view,
    user_view,
)
from prismgate.storage import KeyStore
from prismgate.storage.periods import next_reset, parse_duration
from prismgate.storage.records import Budget, KeyRecord, Limits, TeamRecord, UserRecord, nanos

__all__ = ["Accounts"]

# A key of the operator's choosing must be as hard to guess as a made one is long.
_MIN_CHOSEN_KEY_CHARS = 16
_LIMIT_FIELDS = ("rpm_limit", "tpm_limit", "ipm_limit", "max_parallel_requests")


class Accounts:
    """Creates, changes and reads keys, teams and users. `on_change(token)` is told of
    every key changed here (the local authenticator forgets it at once; other instances
    see it within their staleness)."""

    def __init__(
        self,
        store: KeyStore,
        *,
        on_change: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._on_change = on_change or (lambda _token: None)
        self._clock = clock

    # ------------------------------------------------------------------------------ keys

    async def generate_key(
        self, request: GenerateKey, *, created_by: str | None = None
    ) -> dict[str, Any]:
        """Make a key; the answer holds the key itself, the only time it is shown."""
        now = self._clock()
        raw = _chosen_key(request.key) if request.key is not None else new_key()
        await self._check_owner(request.team_id, request.user_id, now)
        record = KeyRecord(
            token=token_of(raw),
            key_name=key_name(raw),
            key_alias=request.key_alias,
            team_id=request.team_id,
            user_id=request.user_id,
            models=tuple(request.models),
            budget=_budget(request.max_budget, request.budget_duration, now),
            limits=Limits(**{name: getattr(request, name) for name in _LIMIT_FIELDS}),
            metadata=request.metadata,
            tags=tuple(request.tags),
            expires=_expires(request.duration, now),
            blocked=request.blocked,
            created_at=now,
            updated_at=now,
            created_by=created_by,
        )
        await self.store.create_key(record)
        return _shown_once(raw, record, request.duration)

    async def key(self, key_or_token: str) -> KeyRecord:
        """A live key, by the key itself or its token; a 404 otherwise."""
        token = token_of(key_or_token) if key_or_token.startswith(KEY_PREFIX) else key_or_token
        found = await self.store.key(token)
        if found is None or found.deleted_at is not None:
            raise NotFoundError(
                f"no key {_shown(key_or_token)}"
                + (" (it was deleted)" if found is not None else ""),
                param="key",
                code="key_not_found",
            )
        return found

    async def update_key(self, request: UpdateKey) -> KeyRecord:
        """Change the fields `request` sends (null clears one); the changed key."""
        key = await self.key(request.key)
        now = self._clock()
        changes = _changes(key, request, ("key_alias", "team_id", "user_id"), now)
        if request.duration is not UNSET:
            changes["expires"] = _expires(request.duration, now)
        if request.team_id is not UNSET or request.user_id is not UNSET:
            await self._check_owner(changes.get("team_id"), changes.get("user_id"), now)
        updated = await self.store.update_key(key.token, changes)
        if updated is None:
            raise NotFoundError(f"no key {_shown(request.key)}", param="key", code="key_not_found")
        self._on_change(key.token)
        return updated

    async def block_key(self, key_or_token: str, *, blocked: bool) -> KeyRecord:
        """Block or unblock a key."""
        request = UpdateKey(key=key_or_token, blocked=blocked)
        return await self.update_key(request)

    async def regenerate_key(self, request: RegenerateKey) -> dict[str, Any]:
        """A new key for the same record (budget, spend, limits kept); the old key stops
        working at once. The answer holds the new key, the only time it is shown."""
        old = await self.key(request.key)
        raw = _chosen_key(request.new_key) if request.new_key is not None else new_key()
        now = self._clock()
        fresh = KeyRecord(
            **{
                **{name: getattr(old, name) for name in old.__struct_fields__},
                "token": token_of(raw),
                "key_name": key_name(raw),
                "updated_at": now,
            }
        )
        await self.store.replace_key(old.token, fresh, now=now)
        self._on_change(old.token)
        changes = {
            name: getattr(request, name)
            for name in UpdateKey.__struct_fields__
            if name != "key" and getattr(request, name) is not UNSET
        }
        if changes:
            fresh = await self.update_key(UpdateKey(key=fresh.token, **changes))
        return _shown_once(raw, fresh, None)

    async def delete_keys(self, request: DeleteKeys) -> list[str]:
        """Delete keys by key (or token) or by alias; what was deleted, as it was named.
        A 404 when none of them exists."""
        named: dict[str, str] = {}
        for key in request.keys or ():
            token = token_of(key) if key.startswith(KEY_PREFIX) else key
            named[token] = key
        for alias in request.key_aliases or ():
            found = await self.store.key_by_alias(alias)
            if found is not None:
                named[found.token] = alias
        if not request.keys and not request.key_aliases:
            raise BadRequestError("send `keys` or `key_aliases`: the keys to delete", param="keys")
        deleted = await self.store.delete_keys(list(named), now=self._clock())
        for token in deleted:
            self._on_change(token)
        if not deleted:
            raise NotFoundError("none of these keys exists", param="keys", code="key_not_found")
        return [named[token] for token in deleted]

    async def list_keys(
        self,
        *,
        page: int = 1,
        size: int = 10,
        team_id: str | None = None,
        user_id: str | None = None,
        key_alias: str | None = None,
        full: bool = False,
    ) -> dict[str, Any]:
        """A page of live keys, newest first: tokens, or whole keys with `full`."""
        if page < 1 or not 1 <= size <= 100:
            raise BadRequestError(
                "page must be 1 or more and size between 1 and 100",
                param="page" if page < 1 else "size",
            )
        keys, total = await self.store.list_keys(
            team_id=team_id,
            user_id=user_id,
            key_alias=key_alias,
            offset=(page - 1) * size,
            limit=size,
        )
        return {
            "keys": [key_view(key) if full else key.token for key in keys],
            "total_count": total,
            "current_page": page,
            "total_pages": -(-total // size),
        }

    # ----------------------------------------------------------------------------- teams

    async def new_team(self, request: NewTeam) -> TeamRecord:
        """Make a team (its id made when not given)."""
        now = self._clock()
        team = TeamRecord(
            team_id=request.team_id or str(uuid.uuid4()),
            team_alias=request.team_alias,
            models=tuple(request.models),
            budget=_budget(request.max_budget, request.budget_duration, now),
            limits=Limits(**{name: getattr(request, name) for name in _LIMIT_FIELDS}),
            metadata=request.metadata,
            tags=tuple(request.tags),
            blocked=request.blocked,
            created_at=now,
            updated_at=now,
        )
        await self.store.create_team(team)
        return team

    async def team(self, team_id: str) -> TeamRecord:
        """A team; a 404 when there is none."""
        found = await self.store.team(team_id)
        if found is None:
            raise NotFoundError(f"no team {team_id!r}", param="team_id", code="team_not_found")
        return found

    async def update_team(self, request: UpdateTeam) -> TeamRecord:
        """Change the fields `request` sends."""
        team = await self.team(request.team_id)
        now = self._clock()
        changes = _changes(team, request, ("team_alias",), now)
        updated = await self.store.update_team(team.team_id, changes)
        if updated is None:
            raise NotFoundError(f"no team {team.team_id!r}", param="team_id", code="team_not_found")
        await self._forget_keys_of(team_id=team.team_id)
        return updated

    async def delete_teams(self, team_ids: list[str]) -> list[str]:
        """Delete teams and their keys (a team's keys must not outlive its budget)."""
        for team_id in team_ids:
            await self.team(team_id)
        for team_id in team_ids:
            tokens = await self._tokens_of(team_id=team_id)
            await self.store.delete_keys(tokens, now=self._clock())
            for token in tokens:
                self._on_change(token)
        return await self.store.delete_teams(team_ids)

    async def team_info(self, team_id: str) -> dict[str, Any]:
        """A team and its keys."""
        team = await self.team(team_id)
        keys, _ = await self.store.list_keys(team_id=team_id, limit=1000)
        return {
            "team_id": team.team_id,
            "team_info": team_view(team),
            "keys": [key_view(key) for key in keys],
        }

    async def list_teams(self) -> list[dict[str, Any]]:
        """Every team."""
        return [team_view(team) for team in await self.store.list_teams()]

    # ----------------------------------------------------------------------------- users

    async def new_user(self, request: NewUser) -> dict[str, Any]:
        """Make a user and, unless asked not to, a key for them (shown once, in `key`)."""
        now = self._clock()
        for team_id in request.teams:
            await self.team(team_id)
        user = UserRecord(
            user_id=request.user_id or str(uuid.uuid4()),
            user_email=request.user_email,
            user_role=request.user_role,
            teams=tuple(request.teams),
            models=tuple(request.models),
            budget=_budget(request.max_budget, request.budget_duration, now),
            limits=Limits(**{name: getattr(request, name) for name in _LIMIT_FIELDS}),
            metadata=request.metadata,
            created_at=now,
            updated_at=now,
        )
        await self.store.create_user(user)
        answer: dict[str, Any] = {**user_view(user), "key": ""}
        if request.auto_create_key:
            made = await self.generate_key(
                GenerateKey(key_alias=request.key_alias, duration=request.duration,
                            user_id=user.user_id, models=request.models)
            )  # fmt: skip
            answer |= {"key": made["key"], "key_name": made["key_name"], "token": made["token"]}
            answer["expires"] = made["expires"]
        return answer

    async def user_info(self, user_id: str) -> dict[str, Any]:
        """A user, their keys and their teams."""
        user = await self.store.user(user_id)
        if user is None:
            raise NotFoundError(f"no user {user_id!r}", param="user_id", code="user_not_found")
        keys, _ = await self.store.list_keys(user_id=user_id, limit=1000)
        teams = [team for team_id in user.teams if (team := await self.store.team(team_id))]
        return {
            "user_id": user.user_id,
            "user_info": user_view(user),
            "keys": [key_view(key) for key in keys],
            "teams": [team_view(team) for team in teams],
        }

    # -------------------------------------------------------------------------- internal

    async def _check_owner(self, team_id: str | None, user_id: str | None, now: float) -> None:
        """A key's team must exist; its user is made when new (as LiteLLM does)."""
        if team_id is not None and await self.store.team(team_id) is None:
            raise BadRequestError(
                f"no team {team_id!r}; make it first with POST /team/new", param="team_id"
            )
        if user_id is not None and await self.store.user(user_id) is None:
            await self.store.create_user(
                UserRecord(user_id=user_id, created_at=now, updated_at=now)
            )

    async def _tokens_of(self, *, team_id: str) -> list[str]:
        keys, _ = await self.store.list_keys(team_id=team_id, limit=100_000)
        return [key.token for key in keys]

    async def _forget_keys_of(self, *, team_id: str) -> None:
        for token in await self._tokens_of(team_id=team_id):
            self._on_change(token)


def _chosen_key(key: str) -> str:
    if not key.startswith(KEY_PREFIX) or len(key) < len(KEY_PREFIX) + _MIN_CHOSEN_KEY_CHARS:
        raise BadRequestError(
            f"a chosen key must start with {KEY_PREFIX!r} and have at least "
            f"{_MIN_CHOSEN_KEY_CHARS} characters after it; leave `key` out to have one made",
            param="key",
        )
    return key


def _shown(key_or_token: str) -> str:
    """A key named in a message: its shown name, never the key."""
    return key_name(key_or_token) if key_or_token.startswith(KEY_PREFIX) else key_or_token[:12]


def _after_duration(duration: str, now: float, param: str) -> float:
    try:
        return parse_duration(duration).after(now)
    except ValueError as exc:
        raise BadRequestError(str(exc).replace("budget_duration", param), param=param) from None


def _expires(duration: str | None, now: float) -> float | None:
    if duration is None or duration in ("", "-1"):
        return None
    return _after_duration(duration, now, "duration")


def _budget(max_budget: float | None, duration: str | None, now: float) -> Budget:
    reset_at = None
    if duration:
        _after_duration(duration, now, "budget_duration")  # a 400 when unreadable
        reset_at = next_reset(duration, now=now)
    return Budget(
        max_budget=None if max_budget is None else nanos(max_budget),
        duration=duration or None,
        reset_at=reset_at,
    )


def _changed_budget(budget: Budget, max_budget: Any, duration: Any, now: float) -> Budget | None:
    """The budget with what an update sends; None when it sends nothing of it."""
    if max_budget is UNSET and duration is UNSET:
        return None
    changed = Budget(
        max_budget=budget.max_budget if max_budget is UNSET else None if max_budget is None
        else nanos(max_budget),
        duration=budget.duration,
        reset_at=budget.reset_at,
        spend=budget.spend,
    )  # fmt: skip
    if duration is not UNSET:
        fresh = _budget(None, duration, now)
        changed = Budget(
            max_budget=changed.max_budget,
            duration=fresh.duration,
            reset_at=fresh.reset_at,
            spend=changed.spend,
        )
    return changed


def _changes(
    record: KeyRecord | TeamRecord,
    request: UpdateKey | UpdateTeam,
    own: tuple[str, ...],
    now: float,
) -> dict[str, Any]:
    """The record fields an update sends: its `own` plain fields, and the fields keys and
    teams share (models, tags, metadata, blocked, budget, limits)."""
    changes: dict[str, Any] = {"updated_at": now}
    for name in (*own, "metadata", "blocked"):
        if (value := getattr(request, name)) is not UNSET:
            changes[name] = value
    for name in ("models", "tags"):
        if (value := getattr(request, name)) is not UNSET:
            changes[name] = tuple(value)
    budget = _changed_budget(record.budget, request.max_budget, request.budget_duration, now)
    if budget is not None:
        changes["budget"] = budget
    limits = _changed_limits(record.limits, request)
    if limits is not None:
        changes["limits"] = limits
    return changes


def _changed_limits(limits: Limits, request: Any) -> Limits | None:
    sent = {name: value for name in _LIMIT_FIELDS if (value := getattr(request, name)) is not UNSET}
    if not sent:
        return None
    return Limits(**{name: sent.get(name, getattr(limits, name)) for name in _LIMIT_FIELDS})


def _shown_once(raw: str, record: KeyRecord, duration: str | None) -> dict[str, Any]:
    return {"key": raw, **key_view(record), "token_id": record.token, "duration": duration}
