"""state check constraints

Every status column keeps to its vocabulary (digest.store.states); the values are written out here because a
migration must not change when the code does.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 19:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CHECKS = {
    ("subscribers", "status"): ("pending", "confirmed", "unsubscribed", "suppressed"),
    ("digests", "status"): ("planned", "sending", "sent", "deferred", "failed", "cancelled"),
    ("sources", "status"): ("new", "ok", "partial", "not-modified", "failed", "gone"),
    ("job_runs", "outcome"): ("running", "ok", "failed"),
}


def upgrade() -> None:
    for (table, column), values in CHECKS.items():
        # Batch mode: SQLite cannot add a constraint to a table in place, so the table is copied.
        with op.batch_alter_table(table) as batch:
            batch.create_check_constraint(f"ck_{table}_{column}", f"{column} IN ({', '.join(repr(v) for v in values)})")


def downgrade() -> None:
    for table, column in CHECKS:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"ck_{table}_{column}", type_="check")
