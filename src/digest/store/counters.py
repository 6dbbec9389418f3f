"""Counters in fixed time windows, kept in the store so every process (and host) on it counts together.

The web app's rate limits use them: two server processes behind one balancer see the same counts. One
statement per hit (an upsert that returns the new count), on SQLite as on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from digest.store.db import conflict_insert
from digest.store.models import RateWindow


def window_start(now: datetime, window: timedelta) -> datetime:
    """The start of the fixed window ``now`` falls in (windows are aligned on the Unix epoch)."""
    seconds = window.total_seconds()
    return datetime.fromtimestamp(now.timestamp() // seconds * seconds, UTC)


def take(session: Session, bucket: str, limit: int, window: timedelta, now: datetime) -> bool:
    """Count one hit for ``bucket``; True while the window's count stays within ``limit``.

    ``bucket`` should not be personal data itself (hash an address or a client first). Windows older than the
    previous one are deleted on the way.
    """
    start = window_start(now, window)
    upsert = (
        conflict_insert(session)(RateWindow)
        .values(bucket=bucket, window_start=start, hits=1)
        .on_conflict_do_update(
            index_elements=[RateWindow.bucket, RateWindow.window_start], set_={"hits": RateWindow.hits + 1}
        )
        .returning(RateWindow.hits)
    )
    hits: int = session.execute(upsert).scalar_one()
    session.execute(delete(RateWindow).where(RateWindow.window_start < start - window))
    return hits <= limit


def give_back(session: Session, bucket: str, window: timedelta, now: datetime) -> None:
    """Undo one hit of ``bucket`` in the window ``now`` falls in (a try that turned out not to count)."""
    session.execute(
        update(RateWindow)
        .where(RateWindow.bucket == bucket, RateWindow.window_start == window_start(now, window), RateWindow.hits > 0)
        .values(hits=RateWindow.hits - 1)
    )


def forget(session: Session, bucket: str) -> None:
    """Delete every window of ``bucket`` (an erased address leaves no trace, not even a keyed hash)."""
    session.execute(delete(RateWindow).where(RateWindow.bucket == bucket))
