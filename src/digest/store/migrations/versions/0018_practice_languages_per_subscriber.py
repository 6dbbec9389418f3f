"""subscribers: the languages of the practices each wants (space-separated BCP 47 tags; NULL: every language)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In place (no copy-and-move on SQLite: see 0015).
    op.add_column("subscribers", sa.Column("practice_languages", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.drop_column("subscribers", "practice_languages")
