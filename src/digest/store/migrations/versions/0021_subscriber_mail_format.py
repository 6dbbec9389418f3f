"""subscribers: how they read their digests (html, text; NULL: html with its text alternative)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 02:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In place (no copy-and-move on SQLite: see 0015); every subscriber stored before keeps HTML (NULL).
    op.add_column("subscribers", sa.Column("format", sa.String(length=8), nullable=True))


def downgrade() -> None:
    op.drop_column("subscribers", "format")
