"""fingerprints for every script

The text fingerprint that identifies a practice without guid or URL used to keep only ASCII letters and
digits, so practices written in Chinese, Cyrillic or Arabic shared one identity. Every stored practice now
also gets a key under the new fingerprint (letters and digits of every script, NFKC, casefolded), beside the
old one, so existing data keeps its identity: the next read of a listing finds the same rows.

The two fingerprint functions are written out here: a migration must not change when the code does.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 20:00:00
"""

from __future__ import annotations

import hashlib
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CHUNK = 1000


def _new_fingerprint(*parts: str) -> str:
    words: list[str] = []
    for part in parts:
        text = unicodedata.normalize("NFKC", part).casefold()
        kept = "".join(c if unicodedata.category(c)[0] in "LNM" else " " for c in text)
        words.extend(kept.split())
    return hashlib.sha256(" ".join(words).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _key(identity: str) -> str:
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def upgrade() -> None:
    conn = op.get_bind()
    practices = sa.table(
        "practices",
        sa.column("id", sa.Integer),
        sa.column("title", sa.Text),
        sa.column("title_derived", sa.Boolean),
        sa.column("summary", sa.Text),
    )
    keys = sa.table("practice_keys", sa.column("key", sa.String), sa.column("practice_id", sa.Integer))
    last = 0
    while True:
        rows = conn.execute(
            sa.select(practices.c.id, practices.c.title, practices.c.title_derived, practices.c.summary)
            .where(practices.c.id > last)
            .order_by(practices.c.id)
            .limit(CHUNK)
        ).all()
        if not rows:
            return
        last = rows[-1].id
        wanted = {
            _key(
                "text:" + _new_fingerprint("" if row.title_derived else row.title, row.summary.split("\n\n", 1)[0])
            ): row.id
            for row in rows
        }
        taken = set(conn.scalars(sa.select(keys.c.key).where(keys.c.key.in_(list(wanted)))))
        fresh = [{"key": k, "practice_id": pid} for k, pid in wanted.items() if k not in taken]
        if fresh:
            conn.execute(sa.insert(keys), fresh)


def downgrade() -> None:
    pass  # the extra keys are harmless to the old code, which never computes them
