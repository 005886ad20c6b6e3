"""Who is calling: the `Principal` every call carries, from the SDK or the proxy."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Literal

from prismgate.storage import Holder
from prismgate.storage.records import KeyRecord, TeamRecord, UserRecord

__all__ = ["SDK_CALLER", "Principal", "Role"]

# admin: the master key (or code holding the gateway); key: a generated key; open: any
# caller of a gateway that has no master key.
Role = Literal["admin", "key", "open"]


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller, authenticated once per request. `scope` partitions what must never be
    shared between callers (cached answers, fetched images): a digest, never a key."""

    role: Role
    scope: str
    key: KeyRecord | None = None
    team: TeamRecord | None = None
    user: UserRecord | None = None

    @property
    def is_admin(self) -> bool:
        """May manage keys, teams and users."""
        return self.role == "admin"

    @property
    def key_alias(self) -> str | None:
        """The key's alias, or its shown name (`sk-...wxyz`), for messages and logs."""
        if self.key is None:
            return None
        return self.key.key_alias or self.key.key_name

    @property
    def holders(self) -> tuple[Holder, ...]:
        """Whose budgets and limits a call by this caller counts against."""
        if self.key is None:
            return ()
        found = [Holder("key", self.key.token)]
        if self.team is not None:
            found.append(Holder("team", self.team.team_id))
        if self.user is not None:
            found.append(Holder("user", self.user.user_id))
        return tuple(found)

    def may_call(self, model_group: str) -> bool:
        """Whether the key (and its team) lists `model_group`; an empty list allows all.
        `*` patterns match (`openai/*`, `dall-e-*`); `all-proxy-models` is LiteLLM's "all"."""
        if self.key is None:
            return True
        return _allows(self.key.models, model_group) and (
            self.team is None or _allows(self.team.models, model_group)
        )


def _allows(models: tuple[str, ...], model_group: str) -> bool:
    if not models or "all-proxy-models" in models or "*" in models:
        return True
    return any(
        fnmatch.fnmatchcase(model_group, pattern) if "*" in pattern else pattern == model_group
        for pattern in models
    )


SDK_CALLER = Principal(role="admin", scope="sdk")
