"""Keys, teams, users, provider keys, budget holds and the spend log.

Revision ID: 0001
Revises:
Create Date: 2025-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A revision is a snapshot: it spells its columns out rather than import today's schema.
_LIMITS = ("rpm_limit", "tpm_limit", "ipm_limit", "max_parallel_requests")


def _budget() -> list[sa.Column[object]]:
    return [
        sa.Column("max_budget", sa.BigInteger, nullable=True),
        sa.Column("budget_duration", sa.Text, nullable=True),
        sa.Column("budget_reset_at", sa.Double, nullable=True),
        sa.Column("spend", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("reserved", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    ]


def _limits() -> list[sa.Column[object]]:
    return [sa.Column(name, sa.BigInteger, nullable=True) for name in _LIMITS]


def _times() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    ]


def upgrade() -> None:
    """Create every table of the key store and the spend log."""
    op.create_table(
        "keys",
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("key_name", sa.Text, nullable=False),
        sa.Column("key_alias", sa.Text, nullable=True),
        sa.Column("team_id", sa.Text, nullable=True),
        sa.Column("user_id", sa.Text, nullable=True),
        sa.Column("models", sa.JSON, nullable=False),
        *_budget(),
        *_limits(),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("expires", sa.Double, nullable=True),
        sa.Column("blocked", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("deleted_at", sa.Double, nullable=True),
        *_times(),
        sa.Column("created_by", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("token", name="pk_keys"),
    )
    op.create_index(
        "uq_keys_live_alias",
        "keys",
        ["key_alias"],
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index("ix_keys_team_id", "keys", ["team_id"])
    op.create_index("ix_keys_user_id", "keys", ["user_id"])
    op.create_index("ix_keys_created_at", "keys", ["created_at"])

    op.create_table(
        "teams",
        sa.Column("team_id", sa.Text, nullable=False),
        sa.Column("team_alias", sa.Text, nullable=True),
        sa.Column("models", sa.JSON, nullable=False),
        *_budget(),
        *_limits(),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("blocked", sa.Boolean, nullable=False, server_default=sa.false()),
        *_times(),
        sa.PrimaryKeyConstraint("team_id", name="pk_teams"),
    )

    op.create_table(
        "users",
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("user_email", sa.Text, nullable=True),
        sa.Column("user_role", sa.Text, nullable=False),
        sa.Column("teams", sa.JSON, nullable=False),
        sa.Column("models", sa.JSON, nullable=False),
        *_budget(),
        *_limits(),
        sa.Column("metadata", sa.JSON, nullable=False),
        *_times(),
        sa.PrimaryKeyConstraint("user_id", name="pk_users"),
    )

    op.create_table(
        "provider_keys",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        *_times(),
        sa.PrimaryKeyConstraint("name", name="pk_provider_keys"),
    )

    op.create_table(
        "budget_holds",
        sa.Column("hold_id", sa.Text, nullable=False),
        sa.Column("holder_kind", sa.String(8), nullable=False),
        sa.Column("holder_id", sa.Text, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("hold_id", "holder_kind", "holder_id", name="pk_budget_holds"),
    )
    op.create_index("ix_budget_holds_expires_at", "budget_holds", ["expires_at"])

    op.create_table(
        "spend_logs",
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("ended_at", sa.Double, nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
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
        sa.Column("attempts", sa.JSON, nullable=False),
        sa.Column("adjustments", sa.JSON, nullable=False),
        sa.Column("trace_id", sa.Text, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("prompt", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("request_id", name="pk_spend_logs"),
    )
    for column in ("started_at", "token", "team_id", "user_id", "model_group"):
        op.create_index(f"ix_spend_logs_{column}", "spend_logs", [column])


def downgrade() -> None:
    """Drop every table this revision made."""
    for table in ("spend_logs", "budget_holds", "provider_keys", "users", "teams", "keys"):
        op.drop_table(table)
