"""A subscriber's ledger, as `digest ledger` shows it: every digest with its state, times, Message-ID, the practices
in it, and its resends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.store.models import ContentPractice, Digest, Practice, Resend, Subscriber, Theme


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True)
class LedgerPractice:
    uid: str
    title: str
    url: str | None
    theme: str
    # Past the digest's cap: counted in it, not listed.
    summarised: bool


@dataclass(frozen=True)
class LedgerResend:
    message_id: str
    sent_at: str | None


@dataclass(frozen=True)
class LedgerDigest:
    period: str
    status: str
    subject: str
    message_id: str
    planned_at: str | None
    sent_at: str | None
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    # When a sender last claimed it (the last attempt began).
    claimed_at: str | None
    practices: list[LedgerPractice]
    resends: list[LedgerResend]


@dataclass(frozen=True)
class SubscriberLedger:
    email: str
    status: str
    bounces: int
    last_bounce: str | None
    suppressed_at: str | None
    digests: list[LedgerDigest]


def ledger(session: Session, subscriber: Subscriber) -> SubscriberLedger:
    """A subscriber's digests, oldest first: state, times, Message-IDs, the practices in each, and resends."""
    digests = session.scalars(select(Digest).where(Digest.subscriber_id == subscriber.id).order_by(Digest.id)).all()
    ids = [d.id for d in digests]
    practices: dict[int, list[LedgerPractice]] = {i: [] for i in ids}
    rows = session.execute(
        select(Digest.id, Practice.uid, Practice.title, Practice.url, Theme.name, ContentPractice.summarised)
        .join(ContentPractice, ContentPractice.content_hash == Digest.content_hash)
        .join(Practice, Practice.id == ContentPractice.practice_id)
        .join(Theme, Theme.id == ContentPractice.theme_id)
        .where(Digest.subscriber_id == subscriber.id)
        .order_by(Digest.id, ContentPractice.position)
    )
    for digest_id, uid, title, url, theme, summarised in rows:
        practices[digest_id].append(LedgerPractice(uid, title, url, theme, summarised))
    resends: dict[int, list[LedgerResend]] = {i: [] for i in ids}
    for resend in session.scalars(select(Resend).where(Resend.digest_id.in_(ids)).order_by(Resend.id)):
        resends[resend.digest_id].append(LedgerResend(resend.message_id, _iso(resend.sent_at)))
    return SubscriberLedger(
        email=subscriber.email,
        status=str(subscriber.status),
        bounces=subscriber.bounces,
        last_bounce=subscriber.last_bounce,
        suppressed_at=_iso(subscriber.suppressed_at),
        digests=[
            LedgerDigest(
                period=d.period,
                status=str(d.status),
                subject=d.subject,
                message_id=d.message_id,
                planned_at=_iso(d.planned_at),
                sent_at=_iso(d.sent_at),
                attempts=d.attempts,
                next_attempt_at=_iso(d.next_attempt_at),
                last_error=d.last_error,
                claimed_at=_iso(d.claimed_at),
                practices=practices[d.id],
                resends=resends[d.id],
            )
            for d in digests
        ],
    )


# Pages of the web app ----------------------------------------------------------------------------------------
