"""web: subscriber keys, erasures, rate windows

Every subscriber gets a random key, which signed links name instead of their id (existing rows get one each
here; links already mailed, which named the id, stop working and are answered with a page that says so). An
erased subscriber leaves a row of anonymous counts; rate windows count web requests across processes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 10:00:00
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("key", sa.String(length=43), nullable=True))
    bind = op.get_bind()
    subscribers = sa.table("subscribers", sa.column("id", sa.Integer), sa.column("key", sa.String))
    ids = [row[0] for row in bind.execute(sa.select(subscribers.c.id))]
    for start in range(0, len(ids), 1000):
        bind.execute(
            subscribers.update().where(subscribers.c.id == sa.bindparam("row_id")).values(key=sa.bindparam("new_key")),
            [{"row_id": i, "new_key": secrets.token_urlsafe(16)} for i in ids[start : start + 1000]],
        )
    with op.batch_alter_table("subscribers") as batch:
        batch.alter_column("key", existing_type=sa.String(length=43), nullable=False)
        batch.create_unique_constraint("uq_subscribers_key", ["key"])
    op.create_table(
        "erasures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("erased_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("digests_sent", sa.Integer(), nullable=False),
        sa.Column("themes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_erasures"),
    )
    op.create_table(
        "rate_windows",
        sa.Column("bucket", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "window_start", name="pk_rate_windows"),
    )


def downgrade() -> None:
    op.drop_table("rate_windows")
    op.drop_table("erasures")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_constraint("uq_subscribers_key", type_="unique")
        batch.drop_column("key")
