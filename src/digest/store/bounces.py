"""Hard bounces counted per subscriber, and the address suppressed at the limit: whether the refusal came during
the SMTP transaction (digest.mail.send.delivery) or later as a delivery status notification
(digest.mail.replies.bounces)."""

from __future__ import annotations

from datetime import datetime

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
    suppressed = conn.execute(
        update(Subscriber)
        .where(
            Subscriber.id == subscriber_id,
            Subscriber.bounces >= limit,
            Subscriber.status == SubscriberStatus.CONFIRMED,
        )
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
