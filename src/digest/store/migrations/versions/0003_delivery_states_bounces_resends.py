"""delivery states, bounces, resends

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resends",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["digest_id"], ["digests.id"], name=op.f("fk_resends_digest_id_digests"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resends")),
        sa.UniqueConstraint("message_id", name=op.f("uq_resends_message_id")),
    )
    with op.batch_alter_table("resends", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resends_digest_id"), ["digest_id"], unique=False)
    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bounces", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("last_bounce", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("suppressed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("suppressed_at")
        batch_op.drop_column("last_bounce")
        batch_op.drop_column("bounces")
    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("claimed_by")
        batch_op.drop_column("next_attempt_at")
    with op.batch_alter_table("resends", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resends_digest_id"))
    op.drop_table("resends")
