"""content-addressed digests

A digest's frozen content moves to `contents`, keyed by its SHA-256 and stored once however many digests carry
it; digests keep only the hash. Existing rows are moved in batches, identical contents merged.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 22:30:00
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contents",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hash", name="pk_contents"),
    )
    with op.batch_alter_table("digests") as batch:
        batch.add_column(sa.Column("content_hash", sa.String(length=64), nullable=True))
    bind = op.get_bind()
    digests = sa.table(
        "digests", sa.column("id", sa.Integer), sa.column("content", sa.Text), sa.column("content_hash", sa.String)
    )
    contents = sa.table(
        "contents",
        sa.column("hash", sa.String),
        sa.column("body", sa.Text),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    now = datetime.now(UTC) if bind.dialect.name == "postgresql" else datetime.now(UTC).replace(tzinfo=None)
    known: set[str] = set(bind.execute(sa.select(contents.c.hash)).scalars())
    last = 0
    while True:
        rows = bind.execute(
            sa.select(digests.c.id, digests.c.content).where(digests.c.id > last).order_by(digests.c.id).limit(1000)
        ).all()
        if not rows:
            break
        hashes = []
        for digest_id, body in rows:
            key = hashlib.sha256(body.encode("utf-8")).hexdigest()
            if key not in known:
                bind.execute(contents.insert().values(hash=key, body=body, created_at=now))
                known.add(key)
            hashes.append({"row_id": digest_id, "key": key})
        bind.execute(
            digests.update().where(digests.c.id == sa.bindparam("row_id")).values(content_hash=sa.bindparam("key")),
            hashes,
        )
        last = rows[-1][0]
    with op.batch_alter_table("digests") as batch:
        batch.alter_column("content_hash", existing_type=sa.String(length=64), nullable=False)
        batch.create_index("ix_digests_content_hash", ["content_hash"])
        batch.create_foreign_key("fk_digests_content_hash_contents", "contents", ["content_hash"], ["hash"])
        batch.drop_column("content")


def downgrade() -> None:
    with op.batch_alter_table("digests") as batch:
        batch.add_column(sa.Column("content", sa.Text(), nullable=True))
    op.execute("UPDATE digests SET content = (SELECT body FROM contents WHERE contents.hash = digests.content_hash)")
    with op.batch_alter_table("digests") as batch:
        batch.drop_constraint("fk_digests_content_hash_contents", type_="foreignkey")
        batch.drop_index("ix_digests_content_hash")
        batch.drop_column("content_hash")
        batch.alter_column("content", existing_type=sa.Text(), nullable=False)
    op.drop_table("contents")
