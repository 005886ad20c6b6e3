"""The tables behind the SQL key store and spend log (SQLAlchemy Core).

Money columns are BIGINT nano-dollars; times are Unix seconds (DOUBLE); lists and dicts
are JSON. Each budget holder (key, team, user) keeps `spend` (settled) and `reserved`
(held by calls in flight); `budget_holds` says who holds what, so a hold is settled or
released exactly once.

The migrations under `prismgate/storage/migrations` create these tables; a test checks the
two agree.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "BUDGET_COLUMNS",
    "LIMIT_COLUMNS",
    "budget_holds",
    "keys",
    "metadata",
    "provider_keys",
    "spend_logs",
    "teams",
    "users",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Budget fields of a record ⇄ columns: `max_budget`, `duration`, `reset_at`, `spend`.
BUDGET_COLUMNS = {
    "max_budget": "max_budget",
    "duration": "budget_duration",
    "reset_at": "budget_reset_at",
    "spend": "spend",
}
LIMIT_COLUMNS = ("rpm_limit", "tpm_limit", "ipm_limit", "max_parallel_requests")


def _budget() -> list[sa.Column[object]]:
    return [
        sa.Column("max_budget", sa.BigInteger, nullable=True),
        sa.Column("budget_duration", sa.Text, nullable=True),
        sa.Column("budget_reset_at", sa.Double, nullable=True),
        sa.Column("spend", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("reserved", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    ]


def _limits() -> list[sa.Column[object]]:
    return [sa.Column(name, sa.BigInteger, nullable=True) for name in LIMIT_COLUMNS]


def _json(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.JSON, nullable=False)


def _times() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    ]


keys = sa.Table(
    "keys",
    metadata,
    sa.Column("token", sa.String(64), primary_key=True),  # SHA-256 of the key, hex
    sa.Column("key_name", sa.Text, nullable=False),
    sa.Column("key_alias", sa.Text, nullable=True),
    sa.Column("team_id", sa.Text, nullable=True),
    sa.Column("user_id", sa.Text, nullable=True),
    _json("models"),
    *_budget(),
    *_limits(),
    _json("metadata"),
    _json("tags"),
    sa.Column("expires", sa.Double, nullable=True),
    sa.Column("blocked", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("deleted_at", sa.Double, nullable=True),
    *_times(),
    sa.Column("created_by", sa.Text, nullable=True),
    # An alias names one live key; deleted keys keep theirs for the record.
    sa.Index(
        "uq_keys_live_alias",
        "key_alias",
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    ),
    sa.Index("ix_keys_team_id", "team_id"),
    sa.Index("ix_keys_user_id", "user_id"),
    sa.Index("ix_keys_created_at", "created_at"),
)

teams = sa.Table(
    "teams",
    metadata,
    sa.Column("team_id", sa.Text, primary_key=True),
    sa.Column("team_alias", sa.Text, nullable=True),
    _json("models"),
    *_budget(),
    *_limits(),
    _json("metadata"),
    _json("tags"),
    sa.Column("blocked", sa.Boolean, nullable=False, server_default=sa.false()),
    *_times(),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("user_email", sa.Text, nullable=True),
    sa.Column("user_role", sa.Text, nullable=False),
    _json("teams"),
    _json("models"),
    *_budget(),
    *_limits(),
    _json("metadata"),
    *_times(),
)

provider_keys = sa.Table(
    "provider_keys",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("sealed", sa.LargeBinary, nullable=False),
    *_times(),
)

budget_holds = sa.Table(
    "budget_holds",
    metadata,
    sa.Column("hold_id", sa.Text, primary_key=True),
    sa.Column("holder_kind", sa.String(8), primary_key=True),  # key | team | user
    sa.Column("holder_id", sa.Text, primary_key=True),
    sa.Column("amount", sa.BigInteger, nullable=False),  # what was added to `reserved`
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Index("ix_budget_holds_expires_at", "expires_at"),
)

# The spend log's owner columns, indexed only where they name someone: a row without a
# key, team or user (the master key's, a key of no team) adds nothing to their index, and
# a search for one (`token = ?`) still uses it. Most rows lack a team or a user, and
# each index a row stays out of saves the SQLite writer ≈ 1,500 CPU instructions.
_OWNERS = ("token", "team_id", "user_id")


def _named_only(column: str) -> sa.Index:
    where = sa.text(f"{column} IS NOT NULL")
    return sa.Index(f"ix_spend_logs_{column}", column, sqlite_where=where, postgresql_where=where)


spend_logs = sa.Table(
    "spend_logs",
    metadata,
    sa.Column("request_id", sa.Text, primary_key=True),
    sa.Column("started_at", sa.Double, nullable=False),
    sa.Column("ended_at", sa.Double, nullable=False),
    sa.Column("day", sa.String(10), nullable=False),  # YYYY-MM-DD of started_at, UTC
    sa.Column("call_type", sa.Text, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("token", sa.String(64), nullable=True),
    sa.Column("key_alias", sa.Text, nullable=True),
    sa.Column("team_id", sa.Text, nullable=True),
    sa.Column("user_id", sa.Text, nullable=True),
    sa.Column("end_user", sa.Text, nullable=True),
    sa.Column("model", sa.Text, nullable=True),
    sa.Column("model_group", sa.Text, nullable=True),
    sa.Column("deployment", sa.Text, nullable=True),
    sa.Column("provider", sa.Text, nullable=True),
    sa.Column("api_base", sa.Text, nullable=True),
    sa.Column("images", sa.Integer, nullable=False),
    sa.Column("image_size", sa.Text, nullable=True),
    sa.Column("image_quality", sa.Text, nullable=True),
    sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
    sa.Column("completion_tokens", sa.BigInteger, nullable=False),
    sa.Column("total_tokens", sa.BigInteger, nullable=False),
    sa.Column("spend", sa.BigInteger, nullable=False),
    sa.Column("cache_status", sa.Text, nullable=True),
    sa.Column("latency_ms", sa.Double, nullable=False),
    sa.Column("upstream_ms", sa.Double, nullable=False),
    _json("attempts"),
    _json("adjustments"),
    sa.Column("trace_id", sa.Text, nullable=True),
    _json("metadata"),
    sa.Column("prompt", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    # The console's record (general_settings.console): kept images and the call's details.
    sa.Column("kept_images", sa.JSON, nullable=False, server_default=sa.text("'[]'")),
    sa.Column("details", sa.JSON, nullable=True),
    sa.Index("ix_spend_logs_started_at", "started_at"),
    sa.Index("ix_spend_logs_ended_at", "ended_at"),
    *(_named_only(column) for column in _OWNERS),
    sa.Index("ix_spend_logs_model_group", "model_group"),
)
