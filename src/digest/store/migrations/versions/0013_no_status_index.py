"""no index on the digests' status

Every claim and every outcome changes a digest's status, and each change moved the row in ix_digests_status (a
delete and an insert in the middle of the index): on SQLite, recording a message sent cost about twice as much
with it. Every query by state asks for the waiting digests (ix_digests_waiting, partial, holds exactly those) or
for one subscriber's digests (by subscriber), so the index is dropped.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28 06:15:00
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_digests_status", table_name="digests")


def downgrade() -> None:
    op.create_index("ix_digests_status", "digests", ["status"])
