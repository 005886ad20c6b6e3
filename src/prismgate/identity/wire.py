"""The management API's requests and answers, in LiteLLM's names (`/key/*`, `/team/*`,
`/user/*`). Update requests tell "not sent" (left as it is) from `null` (cleared) with
`msgspec.UNSET`. Unknown fields are refused with a 400 that names them: a setting this
gateway does not implement must never look as if it were applied."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from prismgate.storage.records import (
    Budget,
    KeyRecord,
    Limits,
    SpendRow,
    TeamRecord,
    UserRecord,
    dollars,
)

__all__ = [
    "BlockKey",
    "DeleteKeys",
    "DeleteTeams",
    "GenerateKey",
    "NewTeam",
    "NewUser",
    "RegenerateKey",
    "UpdateKey",
    "UpdateTeam",
    "iso",
    "key_view",
    "spend_view",
    "team_view",
    "user_view",
]

# Dollars, up to a billion: kept as nano-dollars in a 64-bit integer.
Money = Annotated[float, msgspec.Meta(ge=0, le=1_000_000_000)]
# A limit: kept in a 64-bit column, so bounded well inside it (no limit needs more).
Count = Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000_000)]


class _Request(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class _Allowance(_Request):
    """What a key, team or user may call and spend: their models, budget and limits."""

    models: list[str] = msgspec.field(default_factory=list)
    max_budget: Money | None = None
    budget_duration: str | None = None
    rpm_limit: Count | None = None
    tpm_limit: Count | None = None
    ipm_limit: Count | None = None
    max_parallel_requests: Count | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class _AllowanceChanges(_Request):
    """The same fields in an update: UNSET leaves one as it is, null clears it."""

    models: list[str] | UnsetType = UNSET
    max_budget: Money | UnsetType | None = UNSET
    budget_duration: str | UnsetType | None = UNSET
    rpm_limit: Count | UnsetType | None = UNSET
    tpm_limit: Count | UnsetType | None = UNSET
    ipm_limit: Count | UnsetType | None = UNSET
    max_parallel_requests: Count | UnsetType | None = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET


class GenerateKey(_Allowance):
    """`POST /key/generate`."""

    key_alias: str | None = None
    duration: str | None = None  # how long the key lives: "30d", "1h"; None: for ever
    team_id: str | None = None
    user_id: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    key: str | None = None  # a key of the operator's choosing (must start with sk-)
    blocked: bool = False


class UpdateKey(_AllowanceChanges, kw_only=True):
    """`POST /key/update`: `key` (the key or its token) and the fields to change."""

    key: str
    key_alias: str | UnsetType | None = UNSET
    duration: str | UnsetType | None = UNSET
    team_id: str | UnsetType | None = UNSET
    user_id: str | UnsetType | None = UNSET
    tags: list[str] | UnsetType = UNSET
    blocked: bool | UnsetType = UNSET


class RegenerateKey(UpdateKey):
    """`POST /key/regenerate`: a new key for the same record (the old one stops working
    at once); `new_key` chooses it, and any field of an update may change with it."""

    new_key: str | None = None


class DeleteKeys(_Request):
    """`POST /key/delete`: by key (or token), or by alias."""

    keys: list[str] | None = None
    key_aliases: list[str] | None = None


class BlockKey(_Request):
    """`POST /key/block` and `/key/unblock`."""

    key: str


class NewTeam(_Allowance):
    """`POST /team/new`."""

    team_id: str | None = None
    team_alias: str | None = None
    tags: list[str] = msgspec.field(default_factory=list)
    blocked: bool = False


class UpdateTeam(_AllowanceChanges, kw_only=True):
    """`POST /team/update`: `team_id` and the fields to change."""

    team_id: str
    team_alias: str | UnsetType | None = UNSET
    tags: list[str] | UnsetType = UNSET
    blocked: bool | UnsetType = UNSET


class DeleteTeams(_Request):
    """`POST /team/delete`."""

    team_ids: Annotated[list[str], msgspec.Meta(min_length=1)]


class NewUser(_Allowance):
    """`POST /user/new`: a user, and (unless `auto_create_key` is false) a key for them."""

    user_id: str | None = None
    user_email: str | None = None
    user_role: str = "internal_user"
    teams: list[str] = msgspec.field(default_factory=list)
    auto_create_key: bool = True
    key_alias: str | None = None
    duration: str | None = None


def iso(seconds: float | None) -> str | None:
    """Unix seconds as ISO 8601 in UTC, as LiteLLM's answers write times."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def _allowance_view(budget: Budget, limits: Limits) -> dict[str, Any]:
    return {
        "spend": dollars(budget.spend),
        "max_budget": None if budget.max_budget is None else dollars(budget.max_budget),
        "budget_duration": budget.duration,
        "budget_reset_at": iso(budget.reset_at),
        "rpm_limit": limits.rpm_limit,
        "tpm_limit": limits.tpm_limit,
        "ipm_limit": limits.ipm_limit,
        "max_parallel_requests": limits.max_parallel_requests,
    }


def key_view(key: KeyRecord) -> dict[str, Any]:
    """A key as the API shows it: never the key itself, its token (digest) only."""
    return {
        "token": key.token,
        "key_name": key.key_name,
        "key_alias": key.key_alias,
        "expires": iso(key.expires),
        "models": list(key.models),
        "user_id": key.user_id,
        "team_id": key.team_id,
        **_allowance_view(key.budget, key.limits),
        "metadata": key.metadata,
        "tags": list(key.tags),
        "blocked": key.blocked,
        "created_at": iso(key.created_at),
        "updated_at": iso(key.updated_at),
        "created_by": key.created_by,
    }


def team_view(team: TeamRecord) -> dict[str, Any]:
    """A team as the API shows it."""
    return {
        "team_id": team.team_id,
        "team_alias": team.team_alias,
        "models": list(team.models),
        **_allowance_view(team.budget, team.limits),
        "metadata": team.metadata,
        "tags": list(team.tags),
        "blocked": team.blocked,
        "created_at": iso(team.created_at),
        "updated_at": iso(team.updated_at),
    }


def user_view(user: UserRecord) -> dict[str, Any]:
    """A user as the API shows it."""
    return {
        "user_id": user.user_id,
        "user_email": user.user_email,
        "user_role": user.user_role,
        "teams": list(user.teams),
        "models": list(user.models),
        **_allowance_view(user.budget, user.limits),
        "metadata": user.metadata,
        "created_at": iso(user.created_at),
        "updated_at": iso(user.updated_at),
    }


def spend_view(row: SpendRow) -> dict[str, Any]:
    """A spend log row in LiteLLM's names where it has one (`api_key` is the token)."""
    return {
        "request_id": row.request_id,
        "call_type": row.call_type,
        "api_key": row.token,
        "key_alias": row.key_alias,
        "team_id": row.team_id,
        "user": row.user_id,
        "end_user": row.end_user,
        "spend": dollars(row.spend),
        "startTime": iso(row.started_at),
        "endTime": iso(row.ended_at),
        "request_duration_ms": round(row.latency_ms, 3),
        # The part of it spent waiting on providers (0: nothing was sent upstream).
        "upstream_duration_ms": round(row.upstream_ms, 3),
        "model": row.model,
        "model_group": row.model_group,
        "model_id": row.deployment,
        "custom_llm_provider": row.provider,
        "api_base": row.api_base,
        "status": "success" if row.status_code < 400 else "failure",
        "status_code": row.status_code,
        "error": row.error,
        "images": row.images,
        "image_size": row.image_size,
        "image_quality": row.image_quality,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.total_tokens,
        "cache_hit": str(row.cache_status == "HIT"),
        "attempts": list(row.attempts),
        "adjustments": list(row.adjustments),
        "trace_id": row.trace_id,
        "metadata": row.metadata,
        "prompt": row.prompt,
    }
