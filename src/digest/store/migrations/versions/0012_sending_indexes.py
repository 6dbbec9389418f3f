"""indexes for sending: the digests waiting, and when each was sent

Claims walk the waiting digests in id order (a partial index holds only those), instead of sorting every waiting
digest on each claim; the hourly limit counts the digests sent in the last hour by an index on sent_at, instead
of reading every digest before each claim.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24 02:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

WAITING = "status IN ('deferred', 'planned', 'sending')"


def upgrade() -> None:
    op.create_index(
        "ix_digests_waiting", "digests", ["id"], sqlite_where=sa.text(WAITING), postgresql_where=sa.text(WAITING)
    )
    op.create_index("ix_digests_sent_at", "digests", ["sent_at"])


def downgrade() -> None:
    op.drop_index("ix_digests_sent_at", table_name="digests")
    op.drop_index("ix_digests_waiting", table_name="digests")
