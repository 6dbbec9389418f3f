"""The scheduler lease: one row in the database names the one worker that schedules; it expires unless renewed.

Taken by a guarded UPDATE (free, expired, or already ours), else an INSERT that loses on the primary key, so it
works the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, case, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from digest.store.models import Lease

LEASE = "scheduler"


def wall_now() -> datetime:
    """Real time, for leases and job runs (DIGEST_NOW fixes the digest clock, never the worker's timers)."""
    return datetime.now(UTC)


def acquire_lease(engine: Engine, holder: str, ttl: timedelta) -> bool:
    """Take the lease if it is free, expired or already ours; renew it if ours. Atomic on SQLite and PostgreSQL."""
    now = wall_now()
    with engine.begin() as conn:
        taken = conn.execute(
            update(Lease)
            .where(Lease.name == LEASE, (Lease.holder == holder) | (Lease.expires_at < now))
            .values(
                holder=holder,
                since=case((Lease.holder == holder, Lease.since), else_=now),  # SET reads the old row
                renewed_at=now,
                expires_at=now + ttl,
            )
        ).rowcount
    if taken:
        return True
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(Lease).values(name=LEASE, holder=holder, since=now, renewed_at=now, expires_at=now + ttl)
            )
        return True
    except IntegrityError:
        return False  # another worker holds it


def renew_lease(engine: Engine, holder: str, ttl: timedelta) -> bool:
    now = wall_now()
    with engine.begin() as conn:
        return bool(
            conn.execute(
                update(Lease)
                .where(Lease.name == LEASE, Lease.holder == holder, Lease.expires_at >= now)
                .values(renewed_at=now, expires_at=now + ttl)
            ).rowcount
        )


def release_lease(engine: Engine, holder: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(Lease).where(Lease.name == LEASE, Lease.holder == holder))


def current_holder(engine: Engine) -> str | None:
    """Who holds a live lease now ("host:pid:run"), or None."""
    with engine.connect() as conn:
        row = conn.execute(select(Lease.holder, Lease.expires_at).where(Lease.name == LEASE)).first()
    return row[0] if row is not None and row[1] >= wall_now() else None
