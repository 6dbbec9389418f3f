"""Delivery: planned digests -> rendered messages -> transport, each state change committed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.config import Settings
from digest.message import Envelope, build_message, sender_address
from digest.models import Digest, Subscriber
from digest.plan import DigestContent, PlanReport, plan_period
from digest.render import Links, RenderedDigest, render_digest
from digest.schedule import current_period
from digest.tokens import make_token
from digest.transport import RecipientRefused, Transport

PENDING = ("planned", "sending")


@dataclass
class SendReport:
    """What one `digest send` did."""

    period: str
    planned: int = 0
    empty: int = 0
    sent: int = 0
    failed: int = 0
    cancelled: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def links_for(settings: Settings, subscriber_id: int) -> Links:
    token = make_token(settings.secret_key, subscriber_id)
    return Links(base_url=settings.base_url, unsubscribe=f"{settings.base_url}/unsubscribe/{token}")


def render_for(settings: Settings, content: DigestContent, links: Links, subject: str | None = None) -> RenderedDigest:
    templates = Path(settings.templates_dir) if settings.templates_dir else None
    return render_digest(content, links, templates, subject)


@dataclass(frozen=True)
class Addressed:
    """Who a digest goes to, under which fixed Message-ID and subject (None: derive it from the content)."""

    subscriber_id: int
    email: str
    message_id: str
    subject: str | None = None


def digest_message(
    settings: Settings, content: DigestContent, to: Addressed, now: datetime
) -> tuple[RenderedDigest, bytes]:
    """Render a digest and assemble its message; the unsubscribe token is signed once for both."""
    links = links_for(settings, to.subscriber_id)
    rendered = render_for(settings, content, links, to.subject)
    envelope = Envelope(
        mail_from=settings.mail_from,
        to=to.email,
        subject=rendered.subject,
        message_id=to.message_id,
        date=now,
        list_id=settings.list_id,
        unsubscribe_url=links.unsubscribe,
    )
    return rendered, build_message(envelope, rendered.text, rendered.html)


def message_for(settings: Settings, digest: Digest, email: str, now: datetime) -> bytes:
    """The planned digest's message, from its frozen content, with its fixed Message-ID."""
    to = Addressed(digest.subscriber_id, email, digest.message_id, digest.subject)
    return digest_message(settings, DigestContent.from_json(digest.content), to, now)[1]


def _next_pending(session: Session, after_id: int, limit: int) -> list[tuple[Digest, str]]:
    rows = session.execute(
        select(Digest, Subscriber.email)
        .join(Subscriber, Subscriber.id == Digest.subscriber_id)
        .where(Digest.id > after_id, Digest.status.in_(PENDING))
        .order_by(Digest.id)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in rows]


def _claim(engine: Engine, digest_id: int) -> str:
    """Mark a pending digest `sending` (committed) if its subscriber is still confirmed; else cancel it."""
    confirmed = select(Subscriber.id).where(Subscriber.status == "confirmed")
    with engine.begin() as conn:
        claimed = conn.execute(
            update(Digest)
            .where(Digest.id == digest_id, Digest.status.in_(PENDING), Digest.subscriber_id.in_(confirmed))
            .values(status="sending", attempts=Digest.attempts + 1)
        ).rowcount
        if claimed:
            return "sending"
        cancelled = conn.execute(
            update(Digest).where(Digest.id == digest_id, Digest.status.in_(PENDING)).values(status="cancelled")
        ).rowcount
    return "cancelled" if cancelled else "gone"


def _finish(engine: Engine, digest_id: int, status: str, sent_at: datetime | None, error: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(Digest).where(Digest.id == digest_id).values(status=status, sent_at=sent_at, last_error=error)
        )


def deliver_pending(
    factory: sessionmaker[Session], settings: Settings, transport: Transport, report: SendReport
) -> None:
    """Send every planned digest (of any period). Each digest: mark sending, send, mark sent — each committed.

    A digest left in `sending` by a crash is sent again with the same Message-ID. A transport failure that is
    not about one recipient (server down, connection lost) stops the run and leaves the rest pending.
    """
    sender = sender_address(settings.mail_from)
    with factory() as session:
        engine = session.get_bind()
    assert isinstance(engine, Engine)
    last_id = 0
    while True:
        with factory() as session:
            batch = _next_pending(session, last_id, settings.batch_size)
        if not batch:
            return
        for digest, email in batch:
            last_id = digest.id
            claim = _claim(engine, digest.id)
            if claim == "cancelled":
                report.cancelled += 1
            if claim != "sending":
                continue
            now = clock.now()
            message = message_for(settings, digest, email, now)
            try:
                transport.send(sender, email, message)
            except RecipientRefused as e:
                _finish(engine, digest.id, "failed", None, str(e))
                report.failed += 1
                report.errors.append(str(e))
                continue
            _finish(engine, digest.id, "sent", now, None)
            report.sent += 1


def plan_and_send(factory: sessionmaker[Session], settings: Settings, transport: Transport) -> SendReport:
    """Plan the current period's digests (if not done yet), then deliver everything pending."""
    now = clock.now()
    period = current_period(settings, now)
    plan: PlanReport = plan_period(factory, period.key, now, settings.id_domain, settings.batch_size)
    report = SendReport(period=period.key, planned=plan.planned, empty=plan.empty)
    try:
        deliver_pending(factory, settings, transport, report)
    finally:
        transport.close()
    return report
