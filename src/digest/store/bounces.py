"""Bounces recorded and acted on: hard ones counted per subscriber and the address suppressed at the limit, soft
ones recorded with their reason until they add up to a "do you still want these?" (the sunset), complaints
suppressing at once; whether the refusal came during the SMTP transaction (digest.mail.send.delivery) or later as
a report (digest.mail.replies.bounces)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, exists, func, insert, select, update
from sqlalchemy.orm import Session

from digest.store import outbox
from digest.store.models import Bounce, Digest, Subscriber
from digest.store.states import WAITING, BounceKind, DigestStatus, SubscriberStatus

STOPPED_RECEIVING = "stopped receiving"


def at_transaction_key(digest_id: int) -> str:
    """The source key of a refusal during the SMTP transaction: one per digest (a digest is refused once)."""
    return hashlib.sha256(f"smtp\n{digest_id}".encode()).hexdigest()


def record(
    conn: Connection,
    source: str,
    subscriber_id: int,
    digest_id: int | None,
    kind: BounceKind,
    status: str,
    reason: str,
    diagnostic: str,
    now: datetime,
) -> bool:
    """One bounce kept, on ``conn``'s transaction, unless one with this ``source`` is kept already. True when new."""
    if conn.scalar(select(Bounce.id).where(Bounce.source == source)) is not None:
        return False

    def tell() -> tuple[dict[str, Any], str]:
        email = conn.scalar(select(Subscriber.email).where(Subscriber.id == subscriber_id)) or ""
        data = {"email": email, "digest_id": digest_id, "kind": kind.value, "status": status, "reason": reason}
        return data | {"diagnostic": diagnostic[:500]}, email

    outbox.emit(conn, "bounce.received", now, tell)
    conn.execute(
        insert(Bounce).values(
            source=source,
            subscriber_id=subscriber_id,
            digest_id=digest_id,
            kind=kind.value,
            status=status[:20],
            reason=reason[:20],
            diagnostic=diagnostic,
            received_at=now,
        )
    )
    return True


def count_hard_bounce(conn: Connection, subscriber_id: int, error: str, limit: int, now: datetime) -> bool:
    """Count a hard bounce for the subscriber, on ``conn``'s transaction; at ``limit`` in a row they are suppressed
    and their digests not yet sent are cancelled. True when this bounce suppressed them."""
    conn.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .values(bounces=Subscriber.bounces + 1, last_bounce=error)
    )
    return _suppress(conn, subscriber_id, now, Subscriber.bounces >= limit)


def suppress_for_complaint(conn: Connection, subscriber_id: int, reason: str, now: datetime) -> bool:
    """A spam complaint (a feedback loop's report): the subscriber is suppressed at once, on ``conn``'s
    transaction, with the reason kept; their digests not yet sent are cancelled. True when this suppressed them
    (False: they had left or were suppressed already)."""
    conn.execute(update(Subscriber).where(Subscriber.id == subscriber_id).values(last_bounce=reason))
    return _suppress(conn, subscriber_id, now)


def unsubscribe_by_mail(conn: Connection, subscriber_id: int, now: datetime) -> bool:
    """A mail to a digest's List-Unsubscribe mailto: its reader leaves, on ``conn``'s transaction, their digests not
    yet sent cancelled. True when this unsubscribed them (False: they had left, or were never confirmed)."""
    left = conn.execute(
        update(Subscriber)
        .where(
            Subscriber.id == subscriber_id,
            Subscriber.status.in_((SubscriberStatus.CONFIRMED, SubscriberStatus.SUPPRESSED)),
        )
        .values(status=SubscriberStatus.UNSUBSCRIBED, unsubscribed_at=now)
    ).rowcount
    if left:
        _cancel_unsent(conn, subscriber_id)
        outbox.tell_of_subscriber(conn, "subscriber.unsubscribed", subscriber_id, now)
    return bool(left)


def _suppress(conn: Connection, subscriber_id: int, now: datetime, *also: Any) -> bool:
    """A confirmed subscriber (meeting ``also``) suppressed, and their digests not yet sent cancelled."""
    suppressed = conn.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id, Subscriber.status == SubscriberStatus.CONFIRMED, *also)
        .values(status=SubscriberStatus.SUPPRESSED, suppressed_at=now)
    ).rowcount
    if suppressed:
        _cancel_unsent(conn, subscriber_id)
        outbox.tell_of_subscriber(conn, "subscriber.suppressed", subscriber_id, now)
    return bool(suppressed)


def _cancel_unsent(conn: Connection, subscriber_id: int) -> None:
    conn.execute(
        update(Digest)
        .where(Digest.subscriber_id == subscriber_id, Digest.status.in_(WAITING))
        .values(status=DigestStatus.CANCELLED)
    )


# The sunset ------------------------------------------------------------------------------------------------------


def to_reconfirm(session: Session, limit: int, days: int, now: datetime) -> list[Subscriber]:
    """Confirmed subscribers not asked yet whose digests bounced softly ``limit`` times or more over at least
    ``days`` days with no digest accepted in between (since their last clean delivery, their confirmation, or their
    last "yes"); marked asked as of ``now`` on the session's transaction (the caller mails them after it commits,
    and calls ``not_asked`` for a mail that could not go)."""
    candidates = session.scalars(
        select(Bounce.subscriber_id)
        .join(Subscriber, Subscriber.id == Bounce.subscriber_id)
        .where(
            Bounce.kind == BounceKind.SOFT,
            Subscriber.status == SubscriberStatus.CONFIRMED,
            Subscriber.reconfirm_asked_at.is_(None),
        )
        .group_by(Bounce.subscriber_id)
        .having(func.count() >= limit)
    ).all()
    asked = []
    for subscriber_id in candidates:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        clean = session.scalar(
            select(func.max(Digest.sent_at)).where(
                Digest.subscriber_id == subscriber_id,
                Digest.status == DigestStatus.SENT,
                ~exists().where(Bounce.digest_id == Digest.id),
            )
        )
        marks = [t for t in (clean, subscriber.confirmed_at, subscriber.reconfirmed_at) if t is not None]
        since = max(marks, default=now - timedelta(days=36_500))
        first, last, count = session.execute(
            select(func.min(Bounce.received_at), func.max(Bounce.received_at), func.count()).where(
                Bounce.subscriber_id == subscriber_id, Bounce.kind == BounceKind.SOFT, Bounce.received_at > since
            )
        ).one()
        if count >= limit and last - first >= timedelta(days=days):
            subscriber.reconfirm_asked_at = now
            asked.append(subscriber)
    return asked


def not_asked(session: Session, subscriber_id: int) -> None:
    """The "do you still want these?" mail could not go: they are asked again by the next run."""
    session.execute(update(Subscriber).where(Subscriber.id == subscriber_id).values(reconfirm_asked_at=None))


def stopped_receiving(session: Session, days: int, now: datetime) -> list[str]:
    """Those asked ``days`` ago or more who never answered leave, with the reason "stopped receiving"; their digests
    not sent yet are cancelled. Their addresses."""
    gone = session.scalars(
        select(Subscriber).where(
            Subscriber.status == SubscriberStatus.CONFIRMED,
            Subscriber.reconfirm_asked_at <= now - timedelta(days=days),
        )
    ).all()
    for subscriber in gone:
        subscriber.status, subscriber.unsubscribed_at = SubscriberStatus.UNSUBSCRIBED, now
        subscriber.left_reason, subscriber.reconfirm_asked_at = STOPPED_RECEIVING, None
        _cancel_unsent(session.connection(), subscriber.id)
        session.flush()
        outbox.tell_of_subscriber(session.connection(), "subscriber.unsubscribed", subscriber.id, now)
    return [s.email for s in gone]
