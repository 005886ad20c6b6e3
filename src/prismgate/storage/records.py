"""What the identity and spend stores keep: keys, teams, users, provider keys, spend rows.

Records are plain frozen Structs, the same for every backend. Money is kept as integer
nano-dollars (`Nanos`): a budget of $0.40 spent in ten $0.04 calls is exactly spent, never
$0.4000000000000001 over. Times are Unix seconds (floats); the API shows them as ISO 8601.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "NANOS_PER_DOLLAR",
    "Budget",
    "KeptImage",
    "KeyRecord",
    "Limits",
    "Nanos",
    "ProviderKeyRecord",
    "SpendRow",
    "TeamRecord",
    "UserRecord",
    "dollars",
    "nanos",
]

Nanos = int
NANOS_PER_DOLLAR = 1_000_000_000


def nanos(amount: float) -> Nanos:
    """Dollars as nano-dollars, rounded to the nearest."""
    return round(amount * NANOS_PER_DOLLAR)


def dollars(amount: Nanos) -> float:
    """Nano-dollars as dollars."""
    return amount / NANOS_PER_DOLLAR


class Budget(msgspec.Struct, frozen=True, kw_only=True):
    """A spending cap and its period: `max_budget` None means no cap; `duration` (LiteLLM's
    `budget_duration`: "30s", "1h", "1d", "1mo") resets `spend` to 0 at `reset_at`."""

    max_budget: Nanos | None = None
    duration: str | None = None
    reset_at: float | None = None
    spend: Nanos = 0


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Per-minute and concurrency limits (None: unlimited). `ipm_limit` counts images."""

    rpm_limit: int | None = None
    tpm_limit: int | None = None
    ipm_limit: int | None = None
    max_parallel_requests: int | None = None


class KeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A generated gateway key. `token` is the SHA-256 of the key (hex): the key itself is
    shown once, when made, and never stored."""

    token: str
    key_name: str  # "sk-...wxyz": enough to recognise a key, not to use it
    key_alias: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    models: tuple[str, ...] = ()
    budget: Budget = Budget()
    limits: Limits = Limits()
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    tags: tuple[str, ...] = ()
    expires: float | None = None
    blocked: bool = False
    deleted_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    created_by: str | None = None


class TeamRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A team: its keys share its models, budget and limits (each key may have its own too)."""

    team_id: str
    team_alias: str | None = None
    models: tuple[str, ...] = ()
    budget: Budget = Budget()
    limits: Limits = Limits()
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    tags: tuple[str, ...] = ()
    blocked: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0


class UserRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A user: keys made for them spend from their budget too."""

    user_id: str
    user_email: str | None = None
    user_role: str = "internal_user"
    teams: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    budget: Budget = Budget()
    limits: Limits = Limits()
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


class ProviderKeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A Portkey-style virtual key made over the API: a name for a provider and its
    settings. `sealed` is the settings' JSON, encrypted with the operator's key."""

    name: str
    provider: str
    sealed: bytes
    created_at: float = 0.0
    updated_at: float = 0.0


class KeptImage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An image the console keeps for a call (`general_settings.console.keep_images`):
    its name in the image store, what it was to the call, and what its header says."""

    name: str  # `<sha256>.<ext>` in the image store's kept images
    role: str = "output"  # output (answered), input (an edit's or a chat's), mask
    index: int = 0  # its place among the answer's (or the request's) images
    media_type: str | None = None
    width: int | None = None
    height: int | None = None
    size_bytes: int = 0


class SpendRow(msgspec.Struct, frozen=True):
    """One served request, success or failure, as the spend log keeps it. Fields after
    the first five have defaults; `spend.spend_row` makes every row positionally, in
    this order (a test checks it against the field names)."""

    request_id: str
    started_at: float
    ended_at: float
    call_type: str  # image_generation, image_edit, image_variation, chat_completion
    status_code: int
    token: str | None = None  # the key's digest
    key_alias: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    end_user: str | None = None  # the request's own `user` field
    model: str | None = None  # the model the caller named
    model_group: str | None = None
    deployment: str | None = None
    provider: str | None = None
    api_base: str | None = None
    images: int = 0
    image_size: str | None = None
    image_quality: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    spend: Nanos = 0
    cache_status: str | None = None
    latency_ms: float = 0.0
    upstream_ms: float = 0.0
    trace_id: str | None = None
    prompt: str | None = None  # truncated; None when prompts are not kept
    error: str | None = None  # the error's code or type, for failures
    # The JSON columns, last: the spend log's SQL writer turns the usual empty ones into
    # text in one step (sql/spend.py).
    attempts: tuple[str, ...] = ()
    adjustments: tuple[str, ...] = ()
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    # The console's record of the call (call_records.py), when it keeps one.
    kept_images: tuple[KeptImage, ...] = ()
    details: dict[str, Any] | None = None
