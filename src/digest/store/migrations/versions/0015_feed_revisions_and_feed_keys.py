"""feeds and figures: a revision per theme, a feed key per subscriber, feed-only subscribers, unsent digests indexed

A theme's revision goes up (and changed_at moves) whenever a practice joins it or one of its practices changes, so
the web app answers a conditional GET of its feed from one indexed row, without rendering the feed. Existing
themes start at revision 1, changed at their newest membership or practice change. A subscriber's feed key is
what their personal feed's link names (its own key: a new feed link revokes the old one and nothing else);
feed_only subscribers are mailed no digest.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 17:30:00
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

UNSENT = "status IN ('cancelled', 'failed')"


def upgrade() -> None:
    # No batch (copy-and-move) on SQLite here: dropping the old themes or subscribers table would delete, through
    # the foreign keys' ON DELETE CASCADE, every membership, subscription and digest. Columns are added in
    # place, nullable where SQLite cannot add a NOT NULL in place (the models always fill them), alike on both.
    op.add_column("themes", sa.Column("revision", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("themes", sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE themes SET changed_at = (SELECT max(CASE WHEN p.updated_at > m.added_at THEN p.updated_at"
        " ELSE m.added_at END) FROM memberships m JOIN practices p ON p.id = m.practice_id"
        " WHERE m.theme_id = themes.id)"
    )
    op.execute("UPDATE themes SET changed_at = created_at WHERE changed_at IS NULL")

    op.add_column("subscribers", sa.Column("feed_key", sa.String(length=43), nullable=True))
    op.add_column("subscribers", sa.Column("feed_only", sa.Boolean(), nullable=False, server_default=sa.false()))
    bind = op.get_bind()
    subscribers = sa.table("subscribers", sa.column("id", sa.Integer), sa.column("feed_key", sa.String))
    ids = [row[0] for row in bind.execute(sa.select(subscribers.c.id))]
    for start in range(0, len(ids), 1000):
        bind.execute(
            subscribers.update()
            .where(subscribers.c.id == sa.bindparam("row_id"))
            .values(feed_key=sa.bindparam("new_key")),
            [{"row_id": i, "new_key": secrets.token_urlsafe(16)} for i in ids[start : start + 1000]],
        )
    op.create_index("uq_subscribers_feed_key", "subscribers", ["feed_key"], unique=True)
    # The operator's figures count failed and cancelled digests off this (few rows; see models.UNSENT_SQL).
    op.create_index(
        "ix_digests_unsent", "digests", ["id"], sqlite_where=sa.text(UNSENT), postgresql_where=sa.text(UNSENT)
    )


def downgrade() -> None:
    op.drop_index("ix_digests_unsent", table_name="digests")
    op.drop_index("uq_subscribers_feed_key", table_name="subscribers")
    op.drop_column("subscribers", "feed_only")
    op.drop_column("subscribers", "feed_key")
    op.drop_column("themes", "changed_at")
    op.drop_column("themes", "revision")
