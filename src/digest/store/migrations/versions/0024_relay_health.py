"""relay_health: each SMTP relay's state as the senders last found it (up, or down since when and why)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "relay_health",
        sa.Column("relay", sa.String(300), nullable=False),
        sa.Column("up", sa.Boolean(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("relay", name="pk_relay_health"),
    )


def downgrade() -> None:
    op.drop_table("relay_health")
