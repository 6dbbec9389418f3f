"""fewer index entries per digest: sent_at indexed only where set, content_hash not at all

A digest is inserted by planning and updated twice (claimed, sent); on PostgreSQL each update that is not HOT adds
an entry to every index of the table. ix_digests_sent_at held an entry for every digest not yet sent (NULL); it
now holds the sent ones only, which is all the hourly limit counts (`sent_at >= ...` implies `IS NOT NULL`, for
SQLite's planner and PostgreSQL's). ix_digests_content_hash served no query (nothing looks digests up by content,
and contents are never deleted).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

SENT = "sent_at IS NOT NULL"


def upgrade() -> None:
    op.drop_index("ix_digests_content_hash", table_name="digests")
    op.drop_index("ix_digests_sent_at", table_name="digests")
    op.create_index(
        "ix_digests_sent_at", "digests", ["sent_at"], sqlite_where=sa.text(SENT), postgresql_where=sa.text(SENT)
    )


def downgrade() -> None:
    op.drop_index("ix_digests_sent_at", table_name="digests")
    op.create_index("ix_digests_sent_at", "digests", ["sent_at"])
    op.create_index("ix_digests_content_hash", "digests", ["content_hash"])
