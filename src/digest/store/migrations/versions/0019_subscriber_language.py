"""subscribers: the language their mails and pages are written in (en, fr, es; NULL: the default_language)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In place (no copy-and-move on SQLite: see 0015).
    op.add_column("subscribers", sa.Column("language", sa.String(length=8), nullable=True))


def downgrade() -> None:
    op.drop_column("subscribers", "language")
