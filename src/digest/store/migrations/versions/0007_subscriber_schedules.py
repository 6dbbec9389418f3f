"""subscriber schedules

Each subscriber's own schedule (frequency, day, hour, timezone; NULL = the operator's defaults), the indexed
instant their next digest is due, a pause, and the ledger's mark for practices summarised past a digest's cap.
next_due_at starts NULL: the next planning run places it from the subscriber's schedule and last_period.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("frequency", sa.String(length=10), nullable=True))
        batch.add_column(sa.Column("day", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("hour", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True))
        batch.create_check_constraint("ck_subscribers_frequency", "frequency IN ('daily', 'weekly', 'monthly')")
        batch.create_check_constraint("ck_subscribers_hour", "hour BETWEEN 0 AND 23")
        batch.create_check_constraint("ck_subscribers_day", "day BETWEEN 0 AND 31")
        batch.create_index("ix_subscribers_next_due_at", ["next_due_at"])
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("summarised", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("summarised")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_index("ix_subscribers_next_due_at")
        for name in ("frequency", "hour", "day"):
            batch.drop_constraint(f"ck_subscribers_{name}", type_="check")
        for column in ("paused_until", "next_due_at", "timezone", "hour", "day", "frequency"):
            batch.drop_column(column)
