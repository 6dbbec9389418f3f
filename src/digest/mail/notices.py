"""Notices: one mail to one person, sent at once (the confirmation link, "you are subscribed already").

Rendered from templates/email/<name>.txt and .html like digests, but without the List-* headers of bulk mail:
a notice answers something the person just did on the web page.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from digest import clock
from digest.config import Settings
from digest.mail.message import Envelope, build_message, sender_address
from digest.mail.render import render_notice
from digest.mail.transport import Transport
from digest.text.clean import header_safe

CONFIRM = "confirm"
ALREADY_SUBSCRIBED = "already-subscribed"


def notice_message(settings: Settings, name: str, to: str, subject: str, context: dict[str, object]) -> bytes:
    templates = Path(settings.templates_dir) if settings.templates_dir else None
    text, html = render_notice(name, {"subject": subject, **context}, templates)
    envelope = Envelope(
        mail_from=settings.mail_from,
        to=to,
        subject=header_safe(subject),
        message_id=f"<notice.{secrets.token_hex(12)}@{settings.id_domain}>",
        date=clock.now(),
        list_id=settings.list_id,
        unsubscribe_url="",
        bulk=False,
    )
    return build_message(envelope, text, html)


def send_notice(
    settings: Settings, transport: Transport, name: str, to: str, subject: str, context: dict[str, object]
) -> None:
    """Render and hand over one notice; the transport's TransportError when it could not go."""
    message = notice_message(settings, name, to, subject, context)
    try:
        transport.send(sender_address(settings.mail_from), to, message)
    finally:
        transport.close()
