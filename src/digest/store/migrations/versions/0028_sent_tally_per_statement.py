"""figures: on PostgreSQL, a send run's groups of sent digests counted in the sent tally by their own statement

0016's trigger ran a PL/pgSQL function for every digest that became sent, each an UPDATE of the tally's row: a
tenth of PostgreSQL's time in a big send run, where a group of ten sent digests is one statement. The sender's
statement now adds its count to the tally itself, in the same statement (so in the same transaction), on a
connection that says so (the setting digest.tally_sent_by_statement, which only that connection sets); for every
other statement and session the trigger counts as before. (A statement-level trigger with transition tables was
measured too: copying every updated row, claims included, into its tables cost nearly as much as it saved.)
SQLite keeps its triggers as they are.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07 11:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

# The setting a connection that counts its own sent digests turns on (digest.store.digests.TALLY_SENT_BY_STATEMENT,
# written out here: a migration keeps the value it was written with).
SETTING = "digest.tally_sent_by_statement"


def _trigger(when: str) -> list[str]:
    return [
        "DROP TRIGGER digests_sent_tally_update ON digests",
        "CREATE TRIGGER digests_sent_tally_update AFTER UPDATE OF status ON digests FOR EACH ROW"
        f" WHEN ({when}) EXECUTE FUNCTION digests_sent_tally()",
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        mine = f"current_setting('{SETTING}', true) IS DISTINCT FROM 'on'"  # unset: NULL
        became = f"NEW.status = 'sent' AND OLD.status <> 'sent' AND {mine}"
        for statement in _trigger(became):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _trigger("NEW.status = 'sent' AND OLD.status <> 'sent'"):
            op.execute(statement)
