"""Who is calling: the `Principal` every call carries, from the SDK or the proxy."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Literal

from prismgate.storage import Holder, LimitCheck
from prismgate.storage.records import KeyRecord, Limits, TeamRecord, UserRecord

__all__ = ["ADMIN_ROLE", "SDK_CALLER", "LimitSet", "Principal", "Role"]

# admin: the master key (or code holding the gateway); key: a generated key; open: any
# caller of a gateway that has no master key.
Role = Literal["admin", "key", "open"]

# LiteLLM's name for the user role that administers the gateway.
ADMIN_ROLE = "proxy_admin"

# Image counts whose limit checks a principal keeps (n is small: 1 to 10 for most models).
_CHECKS_KEPT = 16


@dataclass(frozen=True, slots=True)
class LimitSet:
    """The limits a call by one principal, asking for some images, takes from, with what
    every such call asks of them worked out once."""

    checks: tuple[LimitCheck, ...]  # each limit of the key, its team and its user
    parallel: tuple[LimitCheck, ...]  # those holding a slot while the call runs
    counts_tokens: bool  # some check counts tokens (added when the call ends)
    # For the rate-limit headers: each per-minute check's index, when no unit is limited
    # twice (a key and its team both limiting requests); None otherwise.
    per_unit: tuple[int, ...] | None

    @classmethod
    def of(cls, checks: tuple[LimitCheck, ...]) -> LimitSet:
        """The set of these checks."""
        timed = [i for i, check in enumerate(checks) if check.kind != "parallel"]
        units = {checks[i].kind for i in timed}
        return cls(
            checks=checks,
            parallel=tuple(check for check in checks if check.kind == "parallel"),
            counts_tokens="tokens" in units,
            per_unit=tuple(timed) if len(units) == len(timed) else None,
        )


_UNLIMITED = LimitSet.of(())


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller, authenticated once per request. `scope` partitions what must never be
    shared between callers (cached answers, fetched images): a digest, never a key.

    What every call of a keyed caller needs from its records (`holders`, `capped`,
    `limits`) is worked out once per principal: the authenticator serves one
    principal object per key for as long as its records are trusted."""

    role: Role
    scope: str
    key: KeyRecord | None = None
    team: TeamRecord | None = None
    user: UserRecord | None = None
    # Whose budgets and limits a call by this caller counts against: key, team, user.
    holders: tuple[Holder, ...] = field(init=False, repr=False, compare=False)
    # Whether a budget of the key, its team or its user limits its calls.
    capped: bool = field(init=False, repr=False, compare=False)
    # Whether every model group is allowed (no list on the key or its team): no matching.
    _any_model: bool = field(init=False, repr=False, compare=False)
    # Who a spend-log row names: the key's token and alias, its team's and user's ids.
    spend_owner: tuple[str | None, str | None, str | None, str | None] = field(
        init=False, repr=False, compare=False
    )
    _limits: dict[int, LimitSet] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        holders: list[Holder] = []
        if self.key is not None:
            holders.append(Holder("key", self.key.token))
            if self.team is not None:
                holders.append(Holder("team", self.team.team_id))
            if self.user is not None:
                holders.append(Holder("user", self.user.user_id))
        capped = any(record.budget.max_budget is not None for record in self._records())
        any_model = self.key is None or (
            _allows_all(self.key.models) and (self.team is None or _allows_all(self.team.models))
        )
        object.__setattr__(self, "holders", tuple(holders))
        object.__setattr__(self, "capped", capped)
        object.__setattr__(self, "_any_model", any_model)
        key, team = self.key, self.team
        owner: tuple[str | None, str | None, str | None, str | None] = (None, None, None, None)
        if key is not None:
            owner = (key.token, key.key_alias, team.team_id if team else None, key.user_id)
        object.__setattr__(self, "spend_owner", owner)

    def limits(self, images: int) -> LimitSet:
        """The counters a call asking for `images` takes from: each limit of the key, its
        team and its user. No checks for a caller without limits (the usual case)."""
        found = self._limits.get(images)
        if found is None:
            checks = tuple(
                check
                for holder, record in zip(self.holders, self._records(), strict=True)
                for check in _checks_of(holder, record.limits, images)
            )
            found = LimitSet.of(checks) if checks else _UNLIMITED
            if len(self._limits) < _CHECKS_KEPT:
                self._limits[images] = found
        return found

    def _records(self) -> list[KeyRecord | TeamRecord | UserRecord]:
        """The key's records, in `holders` order (none without a key)."""
        if self.key is None:
            return []
        return [record for record in (self.key, self.team, self.user) if record is not None]

    @property
    def is_admin(self) -> bool:
        """May manage keys, teams and users, and sign in to the console: the master key,
        or a key whose user has LiteLLM's `proxy_admin` role."""
        return self.role == "admin" or (self.user is not None and self.user.user_role == ADMIN_ROLE)

    @property
    def key_alias(self) -> str | None:
        """The key's alias, or its shown name (`sk-...wxyz`), for messages and logs."""
        if self.key is None:
            return None
        return self.key.key_alias or self.key.key_name

    def may_call(self, model_group: str) -> bool:
        """Whether the key (and its team) lists `model_group`; an empty list allows all.
        `*` patterns match (`openai/*`, `dall-e-*`); `all-proxy-models` is LiteLLM's "all"."""
        if self._any_model or self.key is None:
            return True
        return _allows(self.key.models, model_group) and (
            self.team is None or _allows(self.team.models, model_group)
        )


def _checks_of(holder: Holder, limits: Limits, images: int) -> list[LimitCheck]:
    checks = []
    if limits.rpm_limit is not None:
        checks.append(LimitCheck(holder, "requests", limits.rpm_limit, 1))
    if limits.tpm_limit is not None:
        checks.append(LimitCheck(holder, "tokens", limits.tpm_limit, 0))
    if limits.ipm_limit is not None and images:
        checks.append(LimitCheck(holder, "images", limits.ipm_limit, images))
    if limits.max_parallel_requests is not None:
        checks.append(LimitCheck(holder, "parallel", limits.max_parallel_requests, 1))
    return checks


def _allows_all(models: tuple[str, ...]) -> bool:
    return not models or "all-proxy-models" in models or "*" in models


def _allows(models: tuple[str, ...], model_group: str) -> bool:
    if _allows_all(models):
        return True
    return any(
        fnmatch.fnmatchcase(model_group, pattern) if "*" in pattern else pattern == model_group
        for pattern in models
    )


SDK_CALLER = Principal(role="admin", scope="sdk")
