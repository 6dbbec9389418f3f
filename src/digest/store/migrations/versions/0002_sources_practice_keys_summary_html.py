"""sources, practice keys, summary html

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location", sa.String(length=2000), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("last_fetch_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_ok_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("etag", sa.Text(), nullable=True),
        sa.Column("last_modified", sa.String(length=100), nullable=True),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
        sa.UniqueConstraint("location", name=op.f("uq_sources_location")),
    )
    op.create_table(
        "practice_keys",
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("practice_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["practice_id"],
            ["practices.id"],
            name=op.f("fk_practice_keys_practice_id_practices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_practice_keys")),
    )
    with op.batch_alter_table("practice_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_practice_keys_practice_id"), ["practice_id"], unique=False)
    with op.batch_alter_table("practices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("summary_html", sa.Text(), nullable=True))
    # Every practice stored so far is known by the identity its uid was made from.
    op.execute("INSERT INTO practice_keys (key, practice_id) SELECT uid, id FROM practices")


def downgrade() -> None:
    with op.batch_alter_table("practices", schema=None) as batch_op:
        batch_op.drop_column("summary_html")
    with op.batch_alter_table("practice_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_practice_keys_practice_id"))
    op.drop_table("practice_keys")
    op.drop_table("sources")
