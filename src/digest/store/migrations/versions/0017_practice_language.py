"""practices: the language each is written in, as its source says (a BCP 47 tag; NULL: unknown)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In place (no copy-and-move on SQLite: see 0015).
    op.add_column("practices", sa.Column("language", sa.String(length=35), nullable=True))


def downgrade() -> None:
    op.drop_column("practices", "language")
