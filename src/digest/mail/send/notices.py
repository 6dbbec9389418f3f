"""Notices: one mail to one person, sent at once (the confirmation link, "you are subscribed already").

Rendered from templates/email/<name>.txt and .html like digests, but without the List-* headers of bulk mail:
a notice answers something the person just did on the web page.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from digest import clock
from digest.config import Settings
from digest.mail.build.mime import Envelope, build_message, sender_address
from digest.mail.build.render import render_notice
from digest.mail.send.transport import Transport
from digest.subscriptions.tokens import Purpose, make_token
from digest.text.clean import header_safe
from digest.text.i18n import DEFAULT, _, using

CONFIRM = "confirm"
ALREADY_SUBSCRIBED = "already-subscribed"


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
