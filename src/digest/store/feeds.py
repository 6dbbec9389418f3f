"""What the Atom feeds are made of: a theme's practices in the order they joined it, every practice in the order it
first joined any theme, a subscriber's themes' practices, and the few figures that tell whether any of these changed
(digest.feeds.documents turns them into validators, so a conditional GET costs one indexed row)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, bindparam, func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from digest.store.models import Membership, Practice, Subscriber, Subscription, Theme
from digest.store.states import SubscriberStatus

# Subscribers whose personal feed answers: the others have not confirmed their address, or left.
FEED_READERS = (SubscriberStatus.CONFIRMED, SubscriberStatus.SUPPRESSED)


@dataclass(frozen=True)
class FeedEntry:
    practice: Practice
    # When it joined this feed's theme (for the feed of all practices, or a personal one: its first theme).
    added_at: datetime
    # Every theme that lists it, as (slug, name), by name.
    themes: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class AllStamp:
    """What the feed of all practices is a function of: every theme's revision."""

    revisions: int
    changed_at: datetime | None
    themes: int


@dataclass(frozen=True)
class PersonalStamp:
    """A personal feed's subscriber and what their feed is a function of: their themes (how many, the newest
    choice) and those themes' revisions."""

    subscriber_id: int
    key: str
    status: SubscriberStatus
    created_at: datetime
    themes: int
    newest_choice: datetime | None
    revisions: int
    changed_at: datetime | None
    # The languages of the practices they want ("es fr"; None: every language).
    languages: str | None = None
    # The language they read (their mails and pages; None: the default_language): their feed's own words too.
    language: str | None = None


@dataclass(frozen=True)
class ThemeStamp:
    """A theme as its feeds need it: what names it, and what its documents are a function of."""

    id: int
    slug: str
    name: str
    revision: int
    changed_at: datetime


_THEMES = Theme.__table__.c
# Core, not the ORM: the one query of a conditional GET, so it costs what a `SELECT 1` costs, near enough.
_THEME_COLUMNS = select(
    _THEMES.id, _THEMES.slug, _THEMES.name, _THEMES.revision, func.coalesce(_THEMES.changed_at, _THEMES.created_at)
)
_THEME_STAMP = _THEME_COLUMNS.where(_THEMES.slug == bindparam("slug"))


def theme_by_slug(connection: Connection, slug: str) -> ThemeStamp | None:
    row = connection.execute(_THEME_STAMP, {"slug": slug}).first()
    return None if row is None else ThemeStamp(*row)


def theme_stamps(connection: Connection) -> list[ThemeStamp]:
    """Every theme, by slug."""
    return [ThemeStamp(*row) for row in connection.execute(_THEME_COLUMNS.order_by(_THEMES.slug))]


def theme_size(connection: Connection, theme_id: int) -> int:
    """Practices in the theme (read off ix_memberships_theme_id_id)."""
    return connection.scalar(select(func.count()).where(Membership.theme_id == theme_id)) or 0


# Built once: the home page asks on every request (building the statement cost more than running it).
_ALL_STAMP = select(func.coalesce(func.sum(Theme.revision), 0), func.max(Theme.changed_at), func.count())


def all_stamp(connection: Connection) -> AllStamp:
    row = connection.execute(_ALL_STAMP).one()
    return AllStamp(int(row[0]), row[1], int(row[2]))


def all_size(connection: Connection) -> int:
    """Practices in any theme."""
    return connection.scalar(select(func.count(func.distinct(Membership.practice_id)))) or 0


def revisions(session: Session) -> dict[str, int]:
    """Every theme's revision by slug: what tells which feeds an ingest changed."""
    return {slug: revision for slug, revision in session.execute(select(Theme.slug, Theme.revision))}


def theme_entries(session: Session, theme_id: int, offset: int, limit: int | None) -> list[FeedEntry]:
    """The theme's practices from the ``offset``-th to join it (0: the first), at most ``limit``, newest first."""
    rows = session.execute(
        select(Practice, Membership.added_at)
        .join(Membership, Membership.practice_id == Practice.id)
        .where(Membership.theme_id == theme_id)
        .order_by(Membership.id)
        .offset(offset)
        .limit(limit)
    ).all()
    return _with_themes(session, [(row[0], row[1]) for row in reversed(rows)])


def _firsts() -> Select[int, int, datetime]:
    return select(
        Membership.practice_id,
        func.min(Membership.id).label("first_id"),
        func.min(Membership.added_at).label("added"),
    ).group_by(Membership.practice_id)


def all_entries(session: Session, offset: int, limit: int | None) -> list[FeedEntry]:
    """Every practice, in the order each first joined a theme: from the ``offset``-th, at most ``limit``, newest
    first."""
    first = _firsts().subquery()
    rows = session.execute(
        select(Practice, first.c.added)
        .join(first, first.c.practice_id == Practice.id)
        .order_by(first.c.first_id)
        .offset(offset)
        .limit(limit)
    ).all()
    return _with_themes(session, [(row[0], row[1]) for row in reversed(rows)])


def practice_languages(session: Session) -> list[str]:
    """The languages practices are written in here (their first subtag: "es" for es-MX), for choosing among."""
    tags = session.scalars(select(Practice.language).where(Practice.language.is_not(None)).distinct())
    return sorted({tag.split("-")[0] for tag in tags if tag})


def feed_key(session: Session, key: str) -> str | None:
    """The feed key of the subscriber with this key: what their personal feed's link names."""
    return session.scalar(select(Subscriber.feed_key).where(Subscriber.key == key))


def personal_stamp(connection: Connection, feed_key: str) -> PersonalStamp | None:
    """The subscriber whose feed key this is, with what their feed is made of; None if nobody has it."""
    who = (
        Subscriber.id,
        Subscriber.key,
        Subscriber.status,
        Subscriber.created_at,
        Subscriber.practice_languages,
        Subscriber.language,
    )
    row = connection.execute(
        select(
            *who,
            func.count(Subscription.id),
            func.max(Subscription.created_at),
            func.coalesce(func.sum(Theme.revision), 0),
            func.max(Theme.changed_at),
        )
        .outerjoin(Subscription, Subscription.subscriber_id == Subscriber.id)
        .outerjoin(Theme, Theme.id == Subscription.theme_id)
        .where(Subscriber.feed_key == feed_key)
        .group_by(*who)
    ).first()
    if row is None:
        return None
    return PersonalStamp(row[0], row[1], row[2], row[3], int(row[6]), row[7], int(row[8]), row[9], row[4], row[5])


def personal_entries(
    session: Session, subscriber_id: int, limit: int, languages: frozenset[str] = frozenset()
) -> tuple[list[str], list[FeedEntry]]:
    """The subscriber's theme names and the newest ``limit`` practices of those themes, each once however many
    of them list it (the digest's rule), newest first by when it first joined one of them; only those in
    ``languages`` when they chose some (and those of unknown language, as their digests do)."""
    names = list(
        session.scalars(
            select(Theme.name)
            .join(Subscription, Subscription.theme_id == Theme.id)
            .where(Subscription.subscriber_id == subscriber_id)
            .order_by(Theme.name)
        )
    )
    first = (
        _firsts()
        .join(Subscription, Subscription.theme_id == Membership.theme_id)
        .where(Subscription.subscriber_id == subscriber_id)
        .subquery()
    )
    query = select(Practice, first.c.added).join(first, first.c.practice_id == Practice.id)
    if languages:
        query = query.where(
            or_(
                Practice.language.is_(None),
                *(or_(Practice.language == tag, Practice.language.like(f"{tag}-%")) for tag in sorted(languages)),
            )
        )
    rows = session.execute(query.order_by(first.c.first_id.desc()).limit(limit)).all()
    return names, _with_themes(session, [(row[0], row[1]) for row in rows])


def _with_themes(session: Session, rows: list[tuple[Practice, datetime]]) -> list[FeedEntry]:
    """The entries with the themes that list each practice (one query for the page)."""
    listed: dict[int, list[tuple[str, str]]] = defaultdict(list)
    ids = [practice.id for practice, _ in rows]
    for start in range(0, len(ids), 500):
        for practice_id, slug, name in session.execute(
            select(Membership.practice_id, Theme.slug, Theme.name)
            .join(Theme, Theme.id == Membership.theme_id)
            .where(Membership.practice_id.in_(ids[start : start + 500]))
            .order_by(Theme.name)
        ):
            listed[practice_id].append((slug, name))
    return [FeedEntry(practice, added, tuple(listed[practice.id])) for practice, added in rows]


def reader_themes(connection: Connection, feed_key: str) -> list[tuple[str, str]] | None:
    """The themes, as (slug, name) by name, of the subscriber whose feed key this is, when they may read their feed
    (FEED_READERS); None otherwise."""
    status = connection.scalar(select(Subscriber.status).where(Subscriber.feed_key == feed_key))
    if status not in FEED_READERS:
        return None
    rows = connection.execute(
        select(Theme.slug, Theme.name)
        .join(Subscription, Subscription.theme_id == Theme.id)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(Subscriber.feed_key == feed_key)
        .order_by(Theme.name)
    )
    return [(slug, name) for slug, name in rows]
