"""Notices: one mail to one person, sent at once (the confirmation link, "you are subscribed already").

Rendered from templates/email/<name>.txt and .html like digests, but without the List-* headers of bulk mail:
a notice answers something the person just did on the web page.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from digest import clock, logs
from digest.config import Settings
from digest.errors import TransportError
from digest.mail.build.mime import Envelope, build_message, sender_address
from digest.mail.build.render import render_notice
from digest.mail.plan.planner import first_digest_at
from digest.mail.send.transport import Transport, transport_for
from digest.schedules.defaults import defaults_from
from digest.schedules.slots import choice_of, schedule_of
from digest.store.models import Subscriber
from digest.subscriptions.tokens import Purpose, make_token
from digest.text.clean import header_safe
from digest.text.i18n import DEFAULT, _, using, when

CONFIRM = "confirm"
ALREADY_SUBSCRIBED = "already-subscribed"
WELCOME = "welcome"
events = logs.EventLog(__name__)


def notice_message(
    settings: Settings, name: str, to: str, subject: str, context: dict[str, object], language: str = DEFAULT
) -> bytes:
    templates = Path(settings.templates_dir) if settings.templates_dir else None
    text, html = render_notice(name, {"subject": subject, **context}, templates, language)
    envelope = Envelope(
        mail_from=settings.mail_from,
        to=to,
        subject=header_safe(subject),
        message_id=f"<notice.{secrets.token_hex(12)}@{settings.id_domain}>",
        date=clock.now(),
        list_id=settings.list_id,
        unsubscribe_url="",
        bulk=False,
        language=language,
    )
    return build_message(envelope, text, html)


def send_notice(
    settings: Settings,
    transport: Transport,
    name: str,
    to: str,
    subject: str,
    context: dict[str, object],
    language: str = DEFAULT,
) -> None:
    """Render and hand over one notice in ``language``; the transport's TransportError when it could not go."""
    message = notice_message(settings, name, to, subject, context, language)
    try:
        transport.send(sender_address(settings.mail_from), to, message)
    finally:
        transport.close()


def send_confirmation(
    settings: Settings, transport: Transport, to: str, key: str, themes: list[str], language: str = DEFAULT
) -> None:
    """The double opt-in mail: the themes asked for (their names) and the link that confirms them."""
    token = make_token(settings.secret_key, Purpose.CONFIRM, key)
    context: dict[str, object] = {
        "confirm_url": f"{settings.base_url}/confirm/{token}",
        "themes": themes,
        "hours": f"{settings.confirm_hours:g}",
    }
    with using(language):
        subject = _("Confirm your practice digest subscription")
    send_notice(settings, transport, CONFIRM, to, subject, context, language)


def send_manage_link(settings: Settings, transport: Transport, to: str, key: str, language: str = DEFAULT) -> None:
    """To an address confirmed already that was typed in again: a link to change things, and nothing changed."""
    token = make_token(settings.secret_key, Purpose.MANAGE, key)
    context: dict[str, object] = {"manage_url": f"{settings.base_url}/manage/{token}"}
    with using(language):
        subject = _("You are subscribed already")
    send_notice(settings, transport, ALREADY_SUBSCRIBED, to, subject, context, language)


@dataclass(frozen=True)
class Welcome:
    """What a welcome mail says, read from the subscriber as they were confirmed (sent after that commits)."""

    to: str
    language: str
    context: dict[str, object]


def welcome_for(settings: Settings, subscriber: Subscriber, now: datetime) -> Welcome:
    """The welcome of a subscriber just confirmed: their themes, their schedule in words and when the first digest
    comes (in their zone), the manage link, their own feed's link, and how to leave."""
    language = subscriber.language or settings.default_language
    schedule = schedule_of(choice_of(subscriber), defaults_from(settings))
    first = first_digest_at(schedule, subscriber, now)
    secret, base = settings.secret_key, settings.base_url
    with using(language):
        context: dict[str, object] = {
            "themes": sorted(s.theme.name for s in subscriber.subscriptions),
            "schedule": schedule.describe(),
            "first": when(first) if first else None,
            "zone": schedule.zone.key,
            "manage_url": f"{base}/manage/{make_token(secret, Purpose.MANAGE, subscriber.key)}",
            "feed_url": f"{base}/feeds/me/{make_token(secret, Purpose.FEED, subscriber.feed_key or '')}.atom",
            "unsubscribe_url": f"{base}/unsubscribe/{make_token(secret, Purpose.UNSUBSCRIBE, subscriber.key)}",
        }
    return Welcome(subscriber.email, language, context)


def send_welcome(settings: Settings, transport: Transport, welcome: Welcome) -> None:
    """The one welcome after confirming (the caller marked it sent first: subscriptions.to_welcome)."""
    with using(welcome.language):
        subject = _("Welcome: your practice digest subscription")
    send_notice(settings, transport, WELCOME, welcome.to, subject, welcome.context, welcome.language)


def send_welcome_if_it_can(settings: Settings, welcome: Welcome) -> bool:
    """Send the welcome, or log why it could not go (the mail server away): it is a courtesy, and the
    confirmation it follows stands either way. Never retried: it was marked sent first, so it never goes twice."""
    try:
        send_welcome(settings, transport_for(settings), welcome)
    except TransportError as e:
        events("welcome.failed", logging.WARNING, error=str(e))
        return False
    return True
