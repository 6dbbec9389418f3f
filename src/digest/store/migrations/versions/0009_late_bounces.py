"""late bounces

Delivery status notifications read from the bounce mailbox (`digest bounces`, the worker's read-bounces job):
one row per notification, hard or soft, for the subscriber whose digest bounced.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bounces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("digest_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=4), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("diagnostic", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('hard', 'soft')", name="ck_bounces_kind"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"], ["subscribers.id"], name="fk_bounces_subscriber_id_subscribers", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["digest_id"], ["digests.id"], name="fk_bounces_digest_id_digests", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_bounces"),
        sa.UniqueConstraint("source", name="uq_bounces_source"),
    )
    op.create_index("ix_bounces_subscriber_id", "bounces", ["subscriber_id"])


def downgrade() -> None:
    op.drop_index("ix_bounces_subscriber_id", table_name="bounces")
    op.drop_table("bounces")
