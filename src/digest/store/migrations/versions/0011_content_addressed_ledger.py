"""content-addressed ledger

The ledger of who was given what stops being a row per subscriber and practice: what a content gives (each
practice, its theme, listed or counted) is stored once per content in `content_practices`, and a digest's share
of the ledger is its content's rows. A content's key becomes the SHA-256 of its JSON and of those rows (two
digests with the same JSON could have counted different practices past the cap); digests whose ledger rows
differ from their content's are given a content of their own. Existing rows are moved in batches; `ledger` is
dropped.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 01:30:00
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def content_key(body: str, rows: list[tuple[int, int, bool]]) -> str:
    """As digest.mail.plan.planner.content_key (a migration keeps its own copy of what it relies on)."""
    given = json.dumps([[p, t, bool(s)] for p, t, s in rows], separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8") + b"\n" + given.encode()).hexdigest()


def upgrade() -> None:
    op.create_table(
        "content_practices",
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("practice_id", sa.Integer(), nullable=False),
        sa.Column("theme_id", sa.Integer(), nullable=False),
        sa.Column("summarised", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(
            ["content_hash"], ["contents.hash"], name="fk_content_practices_content_hash_contents", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["practice_id"], ["practices.id"], name="fk_content_practices_practice_id_practices", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["theme_id"], ["themes.id"], name="fk_content_practices_theme_id_themes", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("content_hash", "position", name="pk_content_practices"),
    )
    op.create_index("ix_content_practices_practice_id", "content_practices", ["practice_id"])
    bind = op.get_bind()
    digests = sa.table("digests", sa.column("id", sa.Integer), sa.column("content_hash", sa.String))
    contents = sa.table(
        "contents",
        sa.column("hash", sa.String),
        sa.column("body", sa.Text),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    ledger = sa.table(
        "ledger",
        sa.column("id", sa.Integer),
        sa.column("digest_id", sa.Integer),
        sa.column("practice_id", sa.Integer),
        sa.column("theme_id", sa.Integer),
        sa.column("summarised", sa.Boolean),
    )
    given = sa.table(
        "content_practices",
        sa.column("content_hash", sa.String),
        sa.column("position", sa.Integer),
        sa.column("practice_id", sa.Integer),
        sa.column("theme_id", sa.Integer),
        sa.column("summarised", sa.Boolean),
    )
    now = datetime.now(UTC) if bind.dialect.name == "postgresql" else datetime.now(UTC).replace(tzinfo=None)
    old_keys: set[str] = set(bind.execute(sa.select(contents.c.hash)).scalars())
    known: set[str] = set()
    bodies: dict[str, str] = {}
    last = 0
    while True:
        batch = bind.execute(
            sa.select(digests.c.id, digests.c.content_hash)
            .where(digests.c.id > last)
            .order_by(digests.c.id)
            .limit(1000)
        ).all()
        if not batch:
            break
        rows: dict[int, list[tuple[int, int, bool]]] = defaultdict(list)
        for digest_id, practice_id, theme_id, summarised in bind.execute(
            sa.select(ledger.c.digest_id, ledger.c.practice_id, ledger.c.theme_id, ledger.c.summarised)
            .where(ledger.c.digest_id.in_([d for d, _ in batch]))
            .order_by(ledger.c.id)
        ):
            rows[digest_id].append((practice_id, theme_id, bool(summarised)))
        missing = {h for _, h in batch} - set(bodies)
        if missing:
            found = bind.execute(sa.select(contents.c.hash, contents.c.body).where(contents.c.hash.in_(missing)))
            bodies.update({key: body for key, body in found})
        moves = []
        for digest_id, old in batch:
            key = content_key(bodies[old], rows[digest_id])
            if key not in known:
                if key not in old_keys:
                    bind.execute(contents.insert().values(hash=key, body=bodies[old], created_at=now))
                if rows[digest_id]:
                    bind.execute(
                        given.insert(),
                        [
                            {"content_hash": key, "position": n, "practice_id": p, "theme_id": t, "summarised": s}
                            for n, (p, t, s) in enumerate(rows[digest_id])
                        ],
                    )
                known.add(key)
            moves.append({"row_id": digest_id, "key": key})
        bind.execute(
            digests.update().where(digests.c.id == sa.bindparam("row_id")).values(content_hash=sa.bindparam("key")),
            moves,
        )
        last = batch[-1][0]
    # Contents under their old keys that no digest carries any more.
    unused = old_keys - known
    for start in range(0, len(unused), 500):
        bind.execute(contents.delete().where(contents.c.hash.in_(sorted(unused)[start : start + 500])))
    op.drop_table("ledger")


def downgrade() -> None:
    op.create_table(
        "ledger",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("practice_id", sa.Integer(), nullable=False),
        sa.Column("digest_id", sa.Integer(), nullable=False),
        sa.Column("theme_id", sa.Integer(), nullable=False),
        sa.Column("summarised", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(["digest_id"], ["digests.id"], name="fk_ledger_digest_id_digests", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["practice_id"], ["practices.id"], name="fk_ledger_practice_id_practices", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"], ["subscribers.id"], name="fk_ledger_subscriber_id_subscribers", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["theme_id"], ["themes.id"], name="fk_ledger_theme_id_themes", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_ledger"),
        sa.UniqueConstraint("subscriber_id", "practice_id", name="uq_ledger_subscriber_id"),
    )
    op.create_index("ix_ledger_digest_id", "ledger", ["digest_id"])
    op.execute(
        "INSERT INTO ledger (subscriber_id, practice_id, digest_id, theme_id, summarised) "
        "SELECT d.subscriber_id, g.practice_id, d.id, g.theme_id, g.summarised FROM digests d "
        "JOIN content_practices g ON g.content_hash = d.content_hash ORDER BY d.id, g.position"
    )
    op.drop_table("content_practices")
