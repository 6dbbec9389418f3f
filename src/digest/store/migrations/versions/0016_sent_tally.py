"""figures: the count of digests ever sent, kept by triggers

A scrape of /metrics must not count a million digests (PostgreSQL counts rows one by one). Triggers on digests add
one to tallies('sent') whenever a digest becomes sent (inserted so, or updated to it), in the transaction that
does it, whichever process or host that is; an erasure deletes digests but never lowers the tally, so it counts
every digest ever sent. It starts at what the store holds now: digests sent, and those of erased subscribers.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

SQLITE = [
    "CREATE TRIGGER digests_sent_tally_update AFTER UPDATE OF status ON digests"
    " WHEN NEW.status = 'sent' AND OLD.status <> 'sent'"
    " BEGIN UPDATE tallies SET n = n + 1 WHERE name = 'sent'; END",
    "CREATE TRIGGER digests_sent_tally_insert AFTER INSERT ON digests WHEN NEW.status = 'sent'"
    " BEGIN UPDATE tallies SET n = n + 1 WHERE name = 'sent'; END",
]
POSTGRESQL = [
    "CREATE FUNCTION digests_sent_tally() RETURNS trigger LANGUAGE plpgsql AS"
    " $$ BEGIN UPDATE tallies SET n = n + 1 WHERE name = 'sent'; RETURN NULL; END $$",
    "CREATE TRIGGER digests_sent_tally_update AFTER UPDATE OF status ON digests FOR EACH ROW"
    " WHEN (NEW.status = 'sent' AND OLD.status <> 'sent') EXECUTE FUNCTION digests_sent_tally()",
    "CREATE TRIGGER digests_sent_tally_insert AFTER INSERT ON digests FOR EACH ROW"
    " WHEN (NEW.status = 'sent') EXECUTE FUNCTION digests_sent_tally()",
]


def upgrade() -> None:
    op.create_table(
        "tallies",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_tallies"),
    )
    op.execute(
        "INSERT INTO tallies (name, n) SELECT 'sent', (SELECT count(*) FROM digests WHERE status = 'sent')"
        " + (SELECT coalesce(sum(digests_sent), 0) FROM erasures)"
    )
    for statement in POSTGRESQL if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS digests_sent_tally_insert" + _on())
    op.execute("DROP TRIGGER IF EXISTS digests_sent_tally_update" + _on())
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS digests_sent_tally()")
    op.drop_table("tallies")


def _on() -> str:
    return " ON digests" if op.get_bind().dialect.name == "postgresql" else ""
