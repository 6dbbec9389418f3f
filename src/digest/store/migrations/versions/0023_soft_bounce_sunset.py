"""bounces.reason (the reply's reason: user-unknown, mailbox-full ...); subscribers.reconfirm_asked_at (when the
"do you still want these?" mail went after repeated soft bounces) and left_reason (why they left, when not by
their own hand: "stopped receiving"), reconfirmed_at (when they answered "yes": soft bounces before it are forgiven)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 04:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In place (no copy-and-move on SQLite: see 0015). Earlier bounces keep no reason (NULL: undetermined).
    op.add_column("bounces", sa.Column("reason", sa.String(20), nullable=True))
    op.add_column("subscribers", sa.Column("reconfirm_asked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("subscribers", sa.Column("left_reason", sa.String(40), nullable=True))
    op.add_column("subscribers", sa.Column("reconfirmed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("subscribers", "reconfirmed_at")
    op.drop_column("subscribers", "left_reason")
    op.drop_column("subscribers", "reconfirm_asked_at")
    op.drop_column("bounces", "reason")
