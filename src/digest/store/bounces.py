"""Hard bounces counted per subscriber, and the address suppressed at the limit: whether the refusal came during
the SMTP transaction (digest.mail.send.delivery) or later as a delivery status notification
(digest.mail.replies.bounces)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, update

from digest.store.models import Digest, Subscriber
from digest.store.states import DigestStatus, SubscriberStatus


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


def _suppress(conn: Connection, subscriber_id: int, now: datetime, *also: Any) -> bool:
    """A confirmed subscriber (meeting ``also``) suppressed, and their digests not yet sent cancelled."""
    suppressed = conn.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id, Subscriber.status == SubscriberStatus.CONFIRMED, *also)
        .values(status=SubscriberStatus.SUPPRESSED, suppressed_at=now)
    ).rowcount
    if suppressed:
        conn.execute(
            update(Digest)
            .where(
                Digest.subscriber_id == subscriber_id,
                Digest.status.in_((DigestStatus.PLANNED, DigestStatus.DEFERRED)),
            )
            .values(status=DigestStatus.CANCELLED)
        )
    return bool(suppressed)
