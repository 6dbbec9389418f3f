"""A digest's message for one recipient: their signed links, the rendering (once per distinct content, shared by
everyone who gets it), and the MIME bytes with a fixed Message-ID. Pure: no store, no transport."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from digest import clock
from digest.mail.build.dkim import signer_for
from digest.mail.build.mime import EncodedBody, Envelope, MessageTemplate, build_message
from digest.mail.build.render import Links, RenderedDigest, render_digest
from digest.mail.build.verp import unsubscribe_address
from digest.mail.plan.compose import DigestContent
from digest.store.states import MailFormat
from digest.subscriptions.tokens import Purpose, make_token
from digest.text.i18n import _, using

if TYPE_CHECKING:
    from digest.config import Settings
    from digest.store.digests import Claimed


def links_for(settings: Settings, key: str, period: str | None = None) -> Links:
    """The links of one recipient's digest: signed for their key (and the digest's period, to view it)."""
    base, secret = settings.base_url, settings.secret_key
    return Links(
        base_url=base,
        unsubscribe=f"{base}/unsubscribe/{make_token(secret, Purpose.UNSUBSCRIBE, key)}",
        manage=f"{base}/manage/{make_token(secret, Purpose.MANAGE, key)}",
        view=f"{base}/digests/{make_token(secret, Purpose.VIEW, key, period)}" if period else "",
    )


def render_for(settings: Settings, content: DigestContent, links: Links, subject: str | None = None) -> RenderedDigest:
    templates = Path(settings.templates_dir) if settings.templates_dir else None
    return render_digest(content, links, templates, subject, settings.postal_address)


def list_name(language: str) -> str:
    """The service's name as List-Id shows it, in the digest's language."""
    with using(language):
        return _("Practice digest")


@dataclass(frozen=True)
class Addressed:
    """Who a digest goes to (their address and key), under which fixed Message-ID and subject (None: derive it from
    the content); ``period`` names the digest for its web view (None: a preview, which has none)."""

    key: str
    email: str
    message_id: str
    subject: str | None = None
    period: str | None = None
    # The digest it is (a resend): its List-Unsubscribe then has a mailto: too (None: a preview).
    digest_id: int | None = None


def digest_message(
    settings: Settings, content: DigestContent, to: Addressed, now: datetime
) -> tuple[RenderedDigest, bytes]:
    """Render a digest and assemble its message; the unsubscribe token is signed once for both."""
    links = links_for(settings, to.key, to.period)
    rendered = render_for(settings, content, links, to.subject)
    envelope = Envelope(
        mail_from=settings.mail_from,
        to=to.email,
        subject=rendered.subject,
        message_id=to.message_id,
        date=now,
        list_id=settings.list_id,
        unsubscribe_url=links.unsubscribe,
        reply_to=settings.reply_to,
        list_name=list_name(content.language),
        language=content.language,
        unsubscribe_mailto=unsubscribe_address(settings, to.digest_id) if to.digest_id is not None else "",
    )
    message = build_message(envelope, rendered.text, rendered.html)
    signer = signer_for(settings)
    return rendered, signer.sign(message) if signer else message


# What stands for the per-recipient links in a rendering shared by everyone with the same digest: tokens that
# HTML escaping, CSS inlining and text wrapping leave alone, replaced in each recipient's copy.
_SLOTS = {"unsubscribe": "@@digest-unsubscribe@@", "manage": "@@digest-manage@@", "view": "@@digest-view@@"}


class MessageFactory:
    """Builds each recipient's message from one rendering per distinct content (render once): only the address,
    Message-ID, date and the signed links differ per message. The renderings kept are bounded."""

    def __init__(self, settings: Settings, keep: int = 64) -> None:
        self.settings = settings
        self.keep = keep
        self.signer = signer_for(settings)
        self._templates: OrderedDict[tuple[str, str, bool], MessageTemplate] = OrderedDict()

    def _template(self, content_hash: str, subject: str, body: str, text_only: bool) -> MessageTemplate:
        """The message of one distinct content (and format), rendered, encoded and laid out once."""
        key = (content_hash, subject, text_only)
        found = self._templates.get(key)
        if found is None:
            placeholders = Links(self.settings.base_url, **_SLOTS)
            content = DigestContent.from_json(body)
            rendered = render_for(self.settings, content, placeholders, subject)
            shared = Envelope(
                mail_from=self.settings.mail_from,
                to="",  # each message's own: To, Message-ID, Date and List-Unsubscribe are filled in per copy
                subject=rendered.subject,
                message_id="",
                date=clock.now(),
                list_id=self.settings.list_id,
                unsubscribe_url="",
                reply_to=self.settings.reply_to,
                list_name=list_name(content.language),
                language=content.language,
            )
            html = None if text_only else EncodedBody(rendered.html, _SLOTS)
            # In SMTP's form unless signed (DKIM signs the message itself; the transport lays that out).
            found = MessageTemplate(shared, EncodedBody(rendered.text, _SLOTS), html, data=self.signer is None)
            self._templates[key] = found
            if len(self._templates) > self.keep:
                self._templates.popitem(last=False)
        else:
            self._templates.move_to_end(key)
        return found

    def build(self, claimed: Claimed, body: str, now: datetime) -> bytes:
        """The message of a claimed digest, with its fixed Message-ID and its recipient's links: a DataForm (see
        digest.mail.build.mime), or, signed, CRLF bytes."""
        template = self._template(claimed.content_hash, claimed.subject, body, claimed.format == MailFormat.TEXT)
        links = links_for(self.settings, claimed.key, claimed.period)
        values = {"unsubscribe": links.unsubscribe, "manage": links.manage, "view": links.view}
        mailto = unsubscribe_address(self.settings, claimed.id)
        message = template.fill(claimed.email, claimed.message_id, now, links.unsubscribe, values, mailto)
        return self.signer.sign(message) if self.signer else message
