"""Reads that the CLI and the web app share: plain typed results, never ORM rows carried out of a session. Each
function takes a session, reads, and returns dataclasses (JSON-ready with ``dataclasses.asdict``); none writes.
Among them a subscriber's ledger, as `digest ledger` shows it: every digest with its state, times, Message-ID, the
practices in it, and its resends."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, true
from sqlalchemy.orm import Session, selectinload

from digest.errors import NotFoundError
from digest.store.models import (
    Bounce,
    ContentPractice,
    Digest,
    Membership,
    Practice,
    Resend,
    Subscriber,
    Subscription,
    Theme,
)
from digest.store.states import DigestStatus, SubscriberStatus
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
    themes: list[ThemeRef]  # in the order the practice joined them
    added: str | None  # when it joined its first theme here (ISO 8601)
    title_derived: bool
    language: str | None = None  # as its source says (BCP 47); None: unknown
    published: str | None = None  # when its source says it published it (ISO 8601); None: it does not say


@dataclass(frozen=True)
class SubscriberSummary:
    email: str
    status: str
    # Their themes' slugs, and the same themes' names (what people read), in the same order.
    themes: list[str]
    confirmed_at: str | None
    # Their schedule as chosen (None: the operator's default), when the next digest is due, a pause.
    frequency: str | None = None
    day: int | None = None
    hour: int | None = None
    timezone: str | None = None
    next_due_at: str | None = None
    paused_until: str | None = None
    theme_names: list[str] = field(default_factory=list)
    # Reading their themes in a feed reader only: no digest is mailed; the languages of practices they want, and
    # the language of their mails and pages (None: the default_language).
    feed_only: bool = False
    practice_languages: str | None = None
    language: str | None = None
    # How they read their digests: "html" (None) or "text".
    format: str | None = None
    # Asked "do you still want these?" after repeated soft bounces, not answered yet (when); why they left when not
    # by their own hand ("stopped receiving"); the last bounce's words (a suppression's reason too).
    reconfirm_asked_at: str | None = None
    left_reason: str | None = None
    last_bounce: str | None = None


# The summary's fields that are the subscriber's columns as stored.
_AS_STORED = (
    "frequency",
    "day",
    "hour",
    "timezone",
    "feed_only",
    "practice_languages",
    "language",
    "format",
    "left_reason",
    "last_bounce",
)


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


def practices(
    session: Session,
    theme: str | None = None,
    since: datetime | None = None,
    language: str | None = None,
    before: int | None = None,
    limit: int | None = None,
) -> list[PracticeSummary]:
    """Practices, newest first, with their themes; only one theme's when ``theme`` (slug or name) is given, those
    added here since ``since``, those in ``language`` (a BCP 47 tag or its primary subtag); paged by id with
    ``before`` and ``limit``."""
    query = (
        select(Practice)
        .order_by(Practice.id.desc())
        .options(selectinload(Practice.memberships).selectinload(Membership.theme))
    )
    if theme:
        target = theme_by_name(session, theme)
        query = query.where(Practice.id.in_(select(Membership.practice_id).where(Membership.theme_id == target.id)))
    if since is not None:
        query = query.where(Practice.id.in_(select(Membership.practice_id).where(Membership.added_at >= since)))
    if language:
        query = query.where(or_(Practice.language == language, Practice.language.like(language + "-%")))
    if before is not None:
        query = query.where(Practice.id < before)
    if limit is not None:
        query = query.limit(limit)
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
                language=p.language,
                published=_iso(p.published_at),
            )
        )
    return out


@dataclass(frozen=True)
class BounceRow:
    id: int
    email: str
    kind: str
    status: str
    reason: str
    diagnostic: str
    received_at: str


def bounce_page(
    session: Session, email: str | None, kind: str | None, before: int | None, limit: int
) -> list[BounceRow]:
    """Bounces kept, newest first, with whose they were (only ``email``'s, if given), paged by id."""
    query = select(Bounce, Subscriber.email).join(Subscriber).order_by(Bounce.id.desc()).limit(limit)
    if email:
        query = query.where(Subscriber.email == email)
    if kind:
        query = query.where(Bounce.kind == kind)
    if before is not None:
        query = query.where(Bounce.id < before)
    return [
        BounceRow(
            b.id,
            email,
            str(b.kind),
            b.status,
            b.reason or "undetermined",
            b.diagnostic,
            _iso(b.received_at) or "",
        )
        for b, email in session.execute(query)
    ]


def one_digest(session: Session, digest_id: int) -> tuple[str, LedgerDigest] | None:
    """One digest's state, and whose it is (None: no such digest)."""
    found = session.execute(select(Subscriber, Digest).join(Digest).where(Digest.id == digest_id)).first()
    if found is None:
        return None
    subscriber, digest = found
    (only,) = ledger(session, subscriber, only=digest.id).digests
    return subscriber.email, only


def complaints(session: Session, limit: int = 100) -> list[tuple[str, str, str]]:
    """Subscribers a complaint suppressed: (address, when, the feedback type), the newest first."""
    rows = session.execute(
        select(Subscriber.email, Subscriber.suppressed_at, Subscriber.last_bounce)
        .where(Subscriber.status == SubscriberStatus.SUPPRESSED, Subscriber.last_bounce.like("complaint:%"))
        .order_by(Subscriber.suppressed_at.desc())
        .limit(limit)
    )
    return [(str(e), _iso(t) or "", str(r).removeprefix("complaint:").strip()) for e, t, r in rows]


def subscriber_page(
    session: Session, prefix: str | None, status: str | None, theme: str | None, after: str | None, limit: int
) -> list[SubscriberSummary]:
    """Up to ``limit`` subscribers by address after ``after`` (keyset paging on the unique address index), filtered
    by an address prefix, a status and a theme's slug."""
    terms: list[Any] = []
    if prefix:
        escaped = prefix.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        terms.append(Subscriber.email.like(escaped + "%", escape="\\"))
    if status:
        terms.append(Subscriber.status == status)
    if theme:
        terms.append(Subscriber.id.in_(select(Subscription.subscriber_id).join(Theme).where(Theme.slug == theme)))
    if after is not None:
        terms.append(Subscriber.email > after)
    return _summaries(session, and_(true(), *terms), limit)


def digest_counts(session: Session, email: str) -> dict[str, int]:
    """A subscriber's ledger in figures: digests sent, digests in all, hard bounces in a row."""
    subscriber = session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
    rows = dict(
        session.execute(
            select(Digest.status, func.count()).where(Digest.subscriber_id == subscriber.id).group_by(Digest.status)
        ).all()
    )
    return {
        "digests_sent": int(rows.get(DigestStatus.SENT, 0)),
        "digests_total": int(sum(rows.values())),
        "bounces_in_a_row": subscriber.bounces,
    }


def subscribers(session: Session, email: str | None = None, key: str | None = None) -> list[SubscriberSummary]:
    """Every subscriber (or the one with this stored address, or this key): status, themes, schedule, by address."""
    condition: Any = true()
    if email is not None:
        condition = Subscriber.email == email
    if key is not None:
        condition = and_(condition, Subscriber.key == key)
    return _summaries(session, condition)


def _stored(values: Any) -> dict[str, Any]:
    """The summary's fields that are columns as stored, from their values in _AS_STORED's order."""
    return dict(zip(_AS_STORED, values, strict=True))


def _summaries(session: Session, condition: Any, limit: int | None = None) -> list[SubscriberSummary]:
    """The (first ``limit``) subscribers meeting ``condition``, by address: two plain reads (their rows, their
    themes), no ORM rows."""
    columns = [getattr(Subscriber, name) for name in _AS_STORED]
    rows = session.execute(
        select(
            Subscriber.id,
            Subscriber.email,
            Subscriber.status,
            Subscriber.confirmed_at,
            Subscriber.next_due_at,
            Subscriber.paused_until,
            Subscriber.reconfirm_asked_at,
            *columns,
        )
        .where(condition)
        .order_by(Subscriber.email)
        .limit(limit)
    ).all()
    # A page's themes by its ids; everyone's (a listing of all) by the same condition, never a list of every id.
    whose = Subscription.subscriber_id.in_(
        [row[0] for row in rows] if limit else select(Subscriber.id).where(condition)
    )
    themes: dict[int, list[tuple[str, str]]] = {}
    for subscriber_id, slug, name in session.execute(
        select(Subscription.subscriber_id, Theme.slug, Theme.name)
        .join(Theme, Theme.id == Subscription.theme_id)
        .where(whose)
        .order_by(Theme.slug)
    ):
        themes.setdefault(subscriber_id, []).append((slug, name))
    return [
        SubscriberSummary(
            email=row[1],
            status=str(row[2]),
            themes=[slug for slug, _ in themes.get(row[0], [])],
            theme_names=[name for _, name in themes.get(row[0], [])],
            confirmed_at=_iso(row[3]),
            next_due_at=_iso(row[4]),
            paused_until=_iso(row[5]),
            reconfirm_asked_at=_iso(row[6]),
            **_stored(row[7:]),
        )
        for row in rows
    ]


@dataclass(frozen=True)
class PracticeCard:
    """A practice as a list shows it."""

    uid: str
    title: str
    summary: str
    url: str | None
    added: str | None  # when it joined the theme listed (or its first theme), ISO 8601
    language: str | None = None  # as its source says
    published: str | None = None  # when its source says it published it, ISO 8601


@dataclass(frozen=True)
class ThemeOverview:
    name: str
    slug: str
    practices: int
    newest: list[PracticeCard]  # the theme's newest practices, newest first
    last_added: str | None


@dataclass(frozen=True)
class ThemePage:
    theme: ThemeRef
    practices: list[PracticeCard]
    total: int
    page: int
    pages: int


@dataclass(frozen=True)
class PracticeDetail:
    uid: str
    title: str
    summary: str
    # Sanitised at ingest (feeds); None for plain-text sources.
    summary_html: str | None
    url: str | None
    submitted_by: str | None
    themes: list[ThemeRef]
    added: str | None
    updated: str
    language: str | None = None
    published: str | None = None  # when its source says it published it, ISO 8601


def _cards(session: Session, theme_id: int, offset: int, limit: int) -> list[PracticeCard]:
    rows = session.execute(
        select(
            Practice.uid,
            Practice.title,
            Practice.summary,
            Practice.url,
            Membership.added_at,
            Practice.language,
            Practice.published_at,
        )
        .join(Membership, Membership.practice_id == Practice.id)
        .where(Membership.theme_id == theme_id)
        .order_by(Membership.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return [
        PracticeCard(uid, title, summary, url, _iso(added), lang, _iso(published))
        for uid, title, summary, url, added, lang, published in rows
    ]


def theme_overview(session: Session, newest: int = 3) -> list[ThemeOverview]:
    """Every theme by name with its practice count, its newest practices and when the last one joined."""
    counts = dict(session.execute(select(Membership.theme_id, func.count()).group_by(Membership.theme_id)).all())
    out = []
    for theme in session.scalars(select(Theme).order_by(Theme.name)):
        cards = _cards(session, theme.id, 0, newest)
        out.append(
            ThemeOverview(theme.name, theme.slug, counts.get(theme.id, 0), cards, cards[0].added if cards else None)
        )
    return out


def theme_page(session: Session, slug: str, page: int, size: int) -> ThemePage:
    """One page of a theme's practices, newest first; NotFoundError for an unknown slug. A page past the last
    is empty (its number is kept, so the caller can answer 404)."""
    theme = session.scalar(select(Theme).where(Theme.slug == slug))
    if theme is None:
        raise NotFoundError(f"no theme {slug!r}")
    total = session.scalar(select(func.count()).select_from(Membership).where(Membership.theme_id == theme.id)) or 0
    pages = max(1, -(-total // size))
    # Only a page that exists is read: a huge number must not reach OFFSET (it overflows the database's integer).
    practices = _cards(session, theme.id, (page - 1) * size, size) if 1 <= page <= pages else []
    return ThemePage(ThemeRef(theme.name, theme.slug), practices, total, page, pages)


def practice_detail(session: Session, uid: str) -> PracticeDetail:
    """A practice by its uid, with every theme that lists it; NotFoundError when there is none."""
    practice = session.scalar(
        select(Practice)
        .where(Practice.uid == uid)
        .options(selectinload(Practice.memberships).selectinload(Membership.theme))
    )
    if practice is None:
        raise NotFoundError(f"no practice {uid!r}")
    members = sorted(practice.memberships, key=lambda m: m.id)
    return PracticeDetail(
        uid=practice.uid,
        title=practice.title,
        summary=practice.summary,
        summary_html=practice.summary_html,
        url=practice.url,
        submitted_by=practice.submitted_by,
        themes=[ThemeRef(m.theme.name, m.theme.slug) for m in members],
        added=_iso(members[0].added_at) if members else None,
        updated=practice.updated_at.isoformat(),
        language=practice.language,
        published=_iso(practice.published_at),
    )


@dataclass(frozen=True)
class ArchivedDigest:
    """A digest as its web view needs it: the frozen content (JSON), subject and when it went."""

    period: str
    subject: str
    content: str
    status: str
    sent_at: str | None


def archived_digest(session: Session, key: str, period: str) -> ArchivedDigest:
    """The digest of this period of the subscriber with this key; NotFoundError when there is none."""
    digest = session.scalar(
        select(Digest)
        .join(Subscriber, Subscriber.id == Digest.subscriber_id)
        .where(Subscriber.key == key, Digest.period == period)
    )
    if digest is None:
        raise NotFoundError("this digest is not kept any more")
    return ArchivedDigest(digest.period, digest.subject, digest.content, str(digest.status), _iso(digest.sent_at))


def personal_data(session: Session, key: str) -> dict[str, object]:
    """Everything stored about the subscriber with this key, for them to download (JSON-ready): their row, their
    subscriptions, every digest with its attempts, errors, practices and resends, and every bounce report. Left
    out: row ids, the key their links are signed for, and positions in the store's order (bookkeeping, not
    about them); tests/test_probe.py checks this against every table that names a subscriber."""
    subscriber = session.scalar(
        select(Subscriber)
        .where(Subscriber.key == key)
        .options(selectinload(Subscriber.subscriptions).selectinload(Subscription.theme))
    )
    if subscriber is None:
        raise NotFoundError("this link belongs to no subscription any more")
    history = ledger(session, subscriber)
    rows = session.execute(select(Digest.id, Digest.period).where(Digest.subscriber_id == subscriber.id))
    periods = {digest_id: period for digest_id, period in rows}
    bounces = session.scalars(select(Bounce).where(Bounce.subscriber_id == subscriber.id).order_by(Bounce.id))
    return {
        "email": subscriber.email,
        "status": str(subscriber.status),
        "created_at": _iso(subscriber.created_at),
        "confirmed_at": _iso(subscriber.confirmed_at),
        "unsubscribed_at": _iso(subscriber.unsubscribed_at),
        "suppressed_at": _iso(subscriber.suppressed_at),
        "schedule": {
            "frequency": subscriber.frequency,
            "day": subscriber.day,
            "hour": subscriber.hour,
            "timezone": subscriber.timezone,
            "paused_until": _iso(subscriber.paused_until),
            "feed_only": subscriber.feed_only,
            "practice_languages": subscriber.practice_languages,
            "language": subscriber.language,
            "next_due_at": _iso(subscriber.next_due_at),
            "last_period": subscriber.last_period,
        },
        "bounces_in_a_row": subscriber.bounces,
        "last_bounce": subscriber.last_bounce,
        # The sunset (docs/bounces.md): asked "do you still want these?" and when, their last answer, why they left.
        "reconfirm_asked_at": _iso(subscriber.reconfirm_asked_at),
        "reconfirmed_at": _iso(subscriber.reconfirmed_at),
        "left_reason": subscriber.left_reason,
        "subscriptions": [
            {"theme": s.theme.name, "slug": s.theme.slug, "since": _iso(s.created_at)}
            for s in sorted(subscriber.subscriptions, key=lambda s: s.theme.name)
        ],
        "digests": [
            {
                "period": d.period,
                "status": d.status,
                "subject": d.subject,
                "message_id": d.message_id,
                "planned_at": d.planned_at,
                "sent_at": d.sent_at,
                "attempts": d.attempts,
                "last_error": d.last_error,
                "next_attempt_at": d.next_attempt_at,
                "claimed_at": d.claimed_at,
                "practices": [
                    {"title": p.title, "url": p.url, "theme": p.theme, "listed": not p.summarised} for p in d.practices
                ],
                "resent": [{"message_id": r.message_id, "sent_at": r.sent_at} for r in d.resends],
            }
            for d in history.digests
        ],
        "bounce_reports": [
            {
                "digest": periods.get(b.digest_id) if b.digest_id is not None else None,
                "kind": b.kind,
                "status": b.status,
                "reason": b.reason,
                "diagnostic": b.diagnostic,
                "received_at": _iso(b.received_at),
            }
            for b in bounces
        ],
    }


# A subscriber's ledger ---------------------------------------------------------------------------------------


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
    # When a sender last claimed it (the last attempt began).
    claimed_at: str | None
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


def ledger(session: Session, subscriber: Subscriber, only: int | None = None) -> SubscriberLedger:
    """A subscriber's digests, oldest first: state, times, Message-IDs, the practices in each, and resends; only the
    digest ``only``, if given."""
    mine = Digest.subscriber_id == subscriber.id
    chosen = and_(mine, Digest.id == only) if only is not None else mine
    digests = session.scalars(select(Digest).where(chosen).order_by(Digest.id)).all()
    ids = [d.id for d in digests]
    practices: dict[int, list[LedgerPractice]] = {i: [] for i in ids}
    rows = session.execute(
        select(Digest.id, Practice.uid, Practice.title, Practice.url, Theme.name, ContentPractice.summarised)
        .join(ContentPractice, ContentPractice.content_hash == Digest.content_hash)
        .join(Practice, Practice.id == ContentPractice.practice_id)
        .join(Theme, Theme.id == ContentPractice.theme_id)
        .where(chosen)
        .order_by(Digest.id, ContentPractice.position)
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
                claimed_at=_iso(d.claimed_at),
                practices=practices[d.id],
                resends=resends[d.id],
            )
            for d in digests
        ],
    )


# Pages of the web app ----------------------------------------------------------------------------------------
