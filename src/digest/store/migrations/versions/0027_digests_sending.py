"""digests: ix_digests_sending, the claims in flight by holder

Who holds claims (senders look each second for dead holders on their host) and how many are in flight (the hourly
limit, at each claim) were read from every waiting digest: 50k rows early in a big run, 20 ms a look. This partial
index holds only the digests claimed and not finished.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

SENDING = "status IN ('sending')"


def upgrade() -> None:
    op.create_index(
        "ix_digests_sending",
        "digests",
        ["claimed_by"],
        sqlite_where=sa.text(SENDING),
        postgresql_where=sa.text(SENDING),
    )


def downgrade() -> None:
    op.drop_index("ix_digests_sending", table_name="digests")
