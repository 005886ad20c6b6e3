"""The spend log's key, team and user indexes keep only the rows that name one: a row
without a key (the master key's), team or user adds nothing to them, and a search for one
(`token = ?`, `team_id = ?`, `user_id = ?`) still uses them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OWNERS = ("token", "team_id", "user_id")


def upgrade() -> None:
    """Make each owner index again, partial (`WHERE <column> IS NOT NULL`)."""
    for column in _OWNERS:
        name = f"ix_spend_logs_{column}"
        where = sa.text(f"{column} IS NOT NULL")
        op.drop_index(name, table_name="spend_logs")
        op.create_index(name, "spend_logs", [column], sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    """Make them whole again."""
    for column in _OWNERS:
        name = f"ix_spend_logs_{column}"
        op.drop_index(name, table_name="spend_logs")
        op.create_index(name, "spend_logs", [column])
