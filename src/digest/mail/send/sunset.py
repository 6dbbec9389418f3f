"""The sunset, without open tracking: an address whose digests bounce softly again and again (a full mailbox, a
block) is asked "do you still want these?" once; no answer in ``reconfirm_days`` and it leaves, with the reason
"stopped receiving". The counting is the store's (digest.store.bounces.to_reconfirm); the answer is any change on
their manage page (digest.subscriptions.subscribers.still_wanted).

Each ask is marked first and mailed after the mark commits (never twice); a mail that cannot go un-marks it, so the
next run asks again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest import logs
from digest.config import Settings
from digest.errors import TransportError
from digest.mail.send.notices import send_notice
from digest.mail.send.transport import Transport
from digest.store.bounces import not_asked, stopped_receiving, to_reconfirm
from digest.store.db import transaction
from digest.store.models import Bounce
from digest.store.states import BounceKind
from digest.subscriptions.tokens import Purpose, make_token
from digest.text.i18n import _, using

RECONFIRM = "reconfirm"
events = logs.EventLog(__name__)


@dataclass
class Sunset:
    """What one pass did: the addresses asked, those the mail could not reach yet, and those who left."""

    asked: list[str] = field(default_factory=list)
    not_reached: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Ask:
    subscriber_id: int
    to: str
    key: str
    language: str
    reason: str


def sunset(factory: sessionmaker[Session], settings: Settings, transport: Transport, now: datetime) -> Sunset:
    """Ask those whose digests keep bouncing softly, and let go those who never answered."""
    done = Sunset()
    with transaction(factory) as session:
        done.left = stopped_receiving(session, settings.reconfirm_days, now)
        asks = [
            _Ask(s.id, s.email, s.key, s.language or settings.default_language, _last_reason(session, s.id))
            for s in to_reconfirm(session, settings.soft_bounce_limit, settings.soft_bounce_days, now)
        ]
    for address in done.left:
        events("subscriber.stopped_receiving", logging.WARNING, email=address, days=settings.reconfirm_days)
    for ask in asks:
        try:
            _send(settings, transport, ask)
        except TransportError as e:
            with transaction(factory) as session:
                not_asked(session, ask.subscriber_id)
            done.not_reached.append(ask.to)
            events("reconfirm.failed", logging.WARNING, email=ask.to, error=str(e))
            continue
        done.asked.append(ask.to)
        events("reconfirm.asked", logging.INFO, email=ask.to, reason=ask.reason)
    return done


def _last_reason(session: Session, subscriber_id: int) -> str:
    reason = session.scalar(
        select(Bounce.reason)
        .where(Bounce.subscriber_id == subscriber_id, Bounce.kind == BounceKind.SOFT)
        .order_by(Bounce.received_at.desc(), Bounce.id.desc())
        .limit(1)
    )
    return reason or "undetermined"


def in_words(reason: str) -> str:
    """A soft bounce's reason as the reader would say it, in the language in use."""
    words = {
        "mailbox-full": _("the mailbox is full"),
        "suspended": _("the mailbox is disabled"),
        "too-big": _("the message was too big"),
        "blocked": _("the sender was blocked"),
        "spam": _("the message was taken for spam"),
        "policy": _("refused by the receiving server's policy"),
        "rate-limited": _("too many messages at once"),
        "expired": _("no answer from the receiving server for days"),
    }
    return words.get(reason, _("refused for now"))


def _send(settings: Settings, transport: Transport, ask: _Ask) -> None:
    secret, base = settings.secret_key, settings.base_url
    context: dict[str, object] = {
        "manage_url": f"{base}/manage/{make_token(secret, Purpose.MANAGE, ask.key)}",
        "unsubscribe_url": f"{base}/unsubscribe/{make_token(secret, Purpose.UNSUBSCRIBE, ask.key)}",
        "days": settings.reconfirm_days,
    }
    with using(ask.language):
        subject = _("Do you still want your practice digests?")
        context["reason"] = in_words(ask.reason)
    send_notice(settings, transport, RECONFIRM, ask.to, subject, context, ask.language)
