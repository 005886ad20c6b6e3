"""The console's record of a call on its spend-log row: the images kept for it and its
details (general_settings.console), and an index for the rows that ended since a moment
(the console's live Requests table).

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-12
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add `kept_images` (a JSON list, empty for the rows already there), `details` (JSON,
    none for them) and the index on `ended_at`."""
    op.add_column(
        "spend_logs",
        sa.Column("kept_images", sa.JSON, nullable=False, server_default=sa.text("'[]'")),
    )
    op.add_column("spend_logs", sa.Column("details", sa.JSON, nullable=True))
    op.create_index("ix_spend_logs_ended_at", "spend_logs", ["ended_at"])


def downgrade() -> None:
    """Remove what `upgrade` added."""
    op.drop_index("ix_spend_logs_ended_at", table_name="spend_logs")
    with op.batch_alter_table("spend_logs") as table:
        table.drop_column("details")
        table.drop_column("kept_images")
