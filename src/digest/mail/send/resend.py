"""Sending a recorded digest again with its original content (what was sent lives in digest.store.queries)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.config import Settings
from digest.errors import NotFoundError, SubscriberError, TransportError
from digest.mail.build.recipient import Addressed, digest_message
from digest.mail.build.verp import return_path
from digest.mail.plan.compose import DigestContent
from digest.mail.plan.planner import new_message_id
from digest.mail.send.transport import Transport
from digest.store.db import transaction
from digest.store.models import Digest, Resend
from digest.store.states import DigestStatus, SubscriberStatus
from digest.subscriptions.subscribers import get_subscriber


@dataclass(frozen=True)
class Resent:
    email: str
    period: str
    message_id: str


def resend(
    factory: sessionmaker[Session], settings: Settings, transport: Transport, email: str, period: str | None = None
) -> Resent:
    """Send a recorded digest again, from its frozen content, under a new Message-ID, and record it."""
    with factory() as session:
        subscriber = get_subscriber(session, email)
        if subscriber.status != SubscriberStatus.CONFIRMED:
            raise SubscriberError(
                f"{subscriber.email} is {subscriber.status}: nothing is sent to them",
                "subscribe them again (confirmed) first if they asked for it",
            )
        query = select(Digest).where(Digest.subscriber_id == subscriber.id)
        if period is None:
            query = query.where(Digest.status == DigestStatus.SENT)
        else:
            query = query.where(Digest.period == period)
        digest = session.scalar(query.order_by(Digest.id.desc()))
        if digest is None:
            raise NotFoundError(
                f"{subscriber.email}: no {'sent digest' if period is None else 'digest for period ' + period}",
                f"see `digest ledger {subscriber.email}`",
            )
        if digest.status != DigestStatus.SENT:
            raise SubscriberError(
                f"{subscriber.email}: the digest of {digest.period} is {digest.status}, not sent",
                "`digest send` delivers planned and deferred digests; a resend is for one that was sent",
            )
        email_address, key, body = subscriber.email, subscriber.key, digest.content
    message_id = new_message_id(f"{digest.period}.resend", digest.subscriber_id, settings.id_domain)
    now = clock.now()
    to = Addressed(key, email_address, message_id, digest.subject, digest.period, digest.id)
    _, message = digest_message(settings, DigestContent.from_json(body), to, now)
    try:
        transport.send(return_path(settings, digest.id), email_address, message)
    except TransportError as e:
        raise TransportError(f"resend to {email_address} not sent: {e}", e.hint or "try again later") from e
    finally:
        transport.close()
    with transaction(factory) as session:
        session.add(Resend(digest_id=digest.id, message_id=message_id, sent_at=now))
    return Resent(email_address, digest.period, message_id)
