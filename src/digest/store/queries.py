"""Reads that the CLI and the web app share: plain typed results, never ORM rows carried out of a session.

Each function takes a session, reads, and returns dataclasses (JSON-ready with ``dataclasses.asdict``). It
never writes and never commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from digest.errors import NotFoundError
from digest.store.models import Digest, LedgerEntry, Membership, Practice, Resend, Subscriber, Subscription, Theme
from digest.text.clean import slugify


@dataclass(frozen=True)
class ThemeRef:
    name: str
    slug: str


@dataclass(frozen=True)
class ThemeSummary:
    name: str
    slug: str
    practices: int
    subscribers: int


@dataclass(frozen=True)
class PracticeSummary:
    id: int
    title: str
    summary: str
    url: str | None
    submitted_by: str | None
    # In the order the practice joined them.
    themes: list[ThemeRef]
    # When it joined its first theme here (ISO 8601).
    added: str | None
    title_derived: bool


@dataclass(frozen=True)
class SubscriberSummary:
    email: str
    status: str
    themes: list[str]
    confirmed_at: str | None
    # Their schedule as chosen (None: the operator's default), when the next digest is due, a pause.
    frequency: str | None = None
    day: int | None = None
    hour: int | None = None
    timezone: str | None = None
    next_due_at: str | None = None
    paused_until: str | None = None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def theme_by_name(session: Session, name: str) -> Theme:
    """A theme by slug or name; NotFoundError listing the known slugs."""
    theme = session.scalar(select(Theme).where(Theme.slug == slugify(name)))
    if theme is None:
        known = ", ".join(session.scalars(select(Theme.slug).order_by(Theme.slug))) or "none yet"
        raise NotFoundError(f"no theme {name!r}", f"known themes: {known}")
    return theme


def themes(session: Session) -> list[ThemeSummary]:
    """Every theme by name, with how many practices it lists and how many subscribe to it."""
    practices = dict(session.execute(select(Membership.theme_id, func.count()).group_by(Membership.theme_id)).all())
    subscribers = dict(
        session.execute(select(Subscription.theme_id, func.count()).group_by(Subscription.theme_id)).all()
    )
    return [
        ThemeSummary(t.name, t.slug, practices.get(t.id, 0), subscribers.get(t.id, 0))
        for t in session.scalars(select(Theme).order_by(Theme.name))
    ]


def practices(session: Session, theme: str | None = None) -> list[PracticeSummary]:
    """Practices, newest first, with their themes; only one theme's when ``theme`` (slug or name) is given."""
    query = (
        select(Practice)
        .order_by(Practice.id.desc())
        .options(selectinload(Practice.memberships).selectinload(Membership.theme))
    )
    if theme:
        target = theme_by_name(session, theme)
        query = query.where(Practice.id.in_(select(Membership.practice_id).where(Membership.theme_id == target.id)))
    out = []
    for p in session.scalars(query):
        members = sorted(p.memberships, key=lambda m: m.id)
        out.append(
            PracticeSummary(
                id=p.id,
                title=p.title,
                summary=p.summary,
                url=p.url,
                submitted_by=p.submitted_by,
                themes=[ThemeRef(m.theme.name, m.theme.slug) for m in members],
                added=_iso(members[0].added_at) if members else None,
                title_derived=p.title_derived,
            )
        )
    return out


def subscribers(session: Session, email: str | None = None) -> list[SubscriberSummary]:
    """Every subscriber (or the one with this stored address) with status, theme slugs and schedule, by address."""
    query = (
        select(Subscriber)
        .order_by(Subscriber.email)
        .options(selectinload(Subscriber.subscriptions).selectinload(Subscription.theme))
    )
    if email is not None:
        query = query.where(Subscriber.email == email)
    return [
        SubscriberSummary(
            email=s.email,
            status=str(s.status),
            themes=sorted(sub.theme.slug for sub in s.subscriptions),
            confirmed_at=_iso(s.confirmed_at),
            frequency=s.frequency,
            day=s.day,
            hour=s.hour,
            timezone=s.timezone,
            next_due_at=_iso(s.next_due_at),
            paused_until=_iso(s.paused_until),
        )
        for s in session.scalars(query)
    ]


@dataclass(frozen=True)
class LedgerPractice:
    uid: str
    title: str
    url: str | None
    theme: str
    # Past the digest's cap: counted in it, not listed.
    summarised: bool


@dataclass(frozen=True)
class LedgerResend:
    message_id: str
    sent_at: str | None


@dataclass(frozen=True)
class LedgerDigest:
    period: str
    status: str
    subject: str
    message_id: str
    planned_at: str | None
    sent_at: str | None
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    practices: list[LedgerPractice]
    resends: list[LedgerResend]


@dataclass(frozen=True)
class SubscriberLedger:
    email: str
    status: str
    bounces: int
    last_bounce: str | None
    suppressed_at: str | None
    digests: list[LedgerDigest]


def ledger(session: Session, subscriber: Subscriber) -> SubscriberLedger:
    """A subscriber's digests, oldest first: state, times, Message-IDs, the practices in each, and resends."""
    digests = session.scalars(select(Digest).where(Digest.subscriber_id == subscriber.id).order_by(Digest.id)).all()
    ids = [d.id for d in digests]
    practices: dict[int, list[LedgerPractice]] = {i: [] for i in ids}
    rows = session.execute(
        select(LedgerEntry.digest_id, Practice.uid, Practice.title, Practice.url, Theme.name, LedgerEntry.summarised)
        .join(Practice, Practice.id == LedgerEntry.practice_id)
        .join(Theme, Theme.id == LedgerEntry.theme_id)
        .where(LedgerEntry.subscriber_id == subscriber.id)
        .order_by(LedgerEntry.id)
    )
    for digest_id, uid, title, url, theme, summarised in rows:
        practices[digest_id].append(LedgerPractice(uid, title, url, theme, summarised))
    resends: dict[int, list[LedgerResend]] = {i: [] for i in ids}
    for resend in session.scalars(select(Resend).where(Resend.digest_id.in_(ids)).order_by(Resend.id)):
        resends[resend.digest_id].append(LedgerResend(resend.message_id, _iso(resend.sent_at)))
    return SubscriberLedger(
        email=subscriber.email,
        status=str(subscriber.status),
        bounces=subscriber.bounces,
        last_bounce=subscriber.last_bounce,
        suppressed_at=_iso(subscriber.suppressed_at),
        digests=[
            LedgerDigest(
                period=d.period,
                status=str(d.status),
                subject=d.subject,
                message_id=d.message_id,
                planned_at=_iso(d.planned_at),
                sent_at=_iso(d.sent_at),
                attempts=d.attempts,
                next_attempt_at=_iso(d.next_attempt_at),
                last_error=d.last_error,
                practices=practices[d.id],
                resends=resends[d.id],
            )
            for d in digests
        ],
    )
