"""Sending: planned digests -> rendered messages -> delivery (digest.mail.delivery), and the plan-then-send run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.config import Settings
from digest.mail.bounces import return_path
from digest.mail.compose import DigestContent
from digest.mail.delivery import Deliverer, DeliveryPolicy, SendReport
from digest.mail.message import Envelope, build_message
from digest.mail.plan import PlanPolicy, plan_due
from digest.mail.render import Links, RenderedDigest, check_templates, render_digest
from digest.mail.signing import signer_for
from digest.mail.transport import Transport
from digest.store.models import Digest
from digest.subscriptions.tokens import Purpose, make_token


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


@dataclass(frozen=True)
class Addressed:
    """Who a digest goes to (their address and key), under which fixed Message-ID and subject (None: derive it from
    the content); ``period`` names the digest for its web view (None: a preview, which has none)."""

    key: str
    email: str
    message_id: str
    subject: str | None = None
    period: str | None = None


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
    )
    message = build_message(envelope, rendered.text, rendered.html)
    signer = signer_for(settings)
    return rendered, signer.sign(message) if signer else message


def message_for(settings: Settings, digest: Digest, email: str, key: str, now: datetime) -> bytes:
    """The planned digest's message, from its frozen content, with its fixed Message-ID."""
    to = Addressed(key, email, digest.message_id, digest.subject, digest.period)
    return digest_message(settings, DigestContent.from_json(digest.content), to, now)[1]


def deliver_due(
    factory: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    report: SendReport,
    should_stop: Callable[[], bool] = lambda: False,
) -> SendReport:
    """Send every digest that is due (planned, deferred and due again, or abandoned by a dead process)."""

    def build(digest: Digest, email: str, key: str, now: datetime) -> bytes:
        return message_for(settings, digest, email, key, now)

    policy = DeliveryPolicy.from_settings(settings)
    check_templates(settings.templates_dir or None)  # a broken template stops the run before any claim
    try:
        Deliverer(
            factory, transport, policy, build, partial(return_path, settings), report, settings.batch_size, should_stop
        ).run()
    finally:
        transport.close()
    return report


def plan_and_send(
    factory: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    should_stop: Callable[[], bool] = lambda: False,
) -> SendReport:
    """Plan a digest for every subscriber who is due, then deliver everything due."""
    plan = plan_due(factory, PlanPolicy.from_settings(settings), clock.now())
    report = SendReport(due=plan.due, planned=plan.planned, empty=plan.empty)
    return deliver_due(factory, settings, transport, report, should_stop)
