"""practice_translations: the other language versions of a practice as its source links them (by key)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "practice_translations",
        sa.Column("practice_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["practice_id"],
            ["practices.id"],
            name=op.f("fk_practice_translations_practice_id_practices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("practice_id", "key", name=op.f("pk_practice_translations")),
    )
    op.create_index(op.f("ix_practice_translations_key"), "practice_translations", ["key"])


def downgrade() -> None:
    op.drop_index(op.f("ix_practice_translations_key"), "practice_translations")
    op.drop_table("practice_translations")
