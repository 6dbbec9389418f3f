"""subscribers: when their welcome mail went (NULL: not yet), so it goes once at most

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 02:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In place (no copy-and-move on SQLite: see 0015). Everyone confirmed before this was welcomed in their own way
    # (or never will be): marked as of their confirmation, so an upgrade mails nobody.
    op.add_column("subscribers", sa.Column("welcomed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE subscribers SET welcomed_at = confirmed_at WHERE confirmed_at IS NOT NULL")


def downgrade() -> None:
    op.drop_column("subscribers", "welcomed_at")
