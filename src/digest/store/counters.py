"""What every process (and host) on the store shares as it goes: counters in fixed time windows, and the SMTP
relays' health.

The rate limits use the counters (the web app's: two server processes behind one balancer see the same counts; the
senders' rate_per_second and each relay's ?rate=). One statement per hit (an upsert that returns the new count),
on SQLite as on PostgreSQL. A relay's health is written by the senders when it changes (digest.mail.send.relays)
and read by `digest status`, the operator page and /metrics.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, delete, select, update
from sqlalchemy.orm import Session

from digest.store.db import conflict_insert
from digest.store.models import RateWindow, RelayHealth


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


# Relays -------------------------------------------------------------------------------------------------------------


def record_relay(engine: Engine, relay: str, up: bool, error: str | None, now: datetime) -> None:
    """The relay (its display name: no credentials) found up, or down with ``error``; in a transaction of its own."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    upsert = (
        insert(RelayHealth)
        .values(relay=relay, up=up, last_error=error, changed_at=now)
        .on_conflict_do_update(
            index_elements=[RelayHealth.relay], set_={"up": up, "last_error": error, "changed_at": now}
        )
    )
    with engine.begin() as connection:
        connection.execute(upsert)


def relay_health(connection: Connection) -> list[tuple[str, bool, str | None, datetime]]:
    """Every relay the senders have found: (relay, up, last error, since), by name."""
    rows = connection.execute(
        select(RelayHealth.relay, RelayHealth.up, RelayHealth.last_error, RelayHealth.changed_at).order_by(
            RelayHealth.relay
        )
    )
    return [(str(r), bool(u), e, t) for r, u, e, t in rows]
