"""The audit log: who changed what, to whom, when and from where (a keyed hash of the client's address), written in
the same transaction as the change it records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from digest.store.models import AuditEntry


@dataclass(frozen=True)
class Entry:
    at: datetime
    actor: str
    action: str
    subject: str
    detail: str
    client: str


def record(
    session: Session, actor: str, action: str, subject: str, now: datetime, detail: str = "", client: str = ""
) -> None:
    session.add(AuditEntry(at=now, actor=actor, action=action, subject=subject, detail=detail[:2000], client=client))


def recent(session: Session, limit: int = 50) -> list[Entry]:
    rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit))
    return [Entry(r.at, r.actor, r.action, r.subject, r.detail, r.client) for r in rows]


def forget(session: Session, address: str) -> None:
    """An erased subscriber's address leaves the log (the entries stay, about nobody)."""
    session.execute(update(AuditEntry).where(AuditEntry.subject == address).values(subject="(erased)"))
