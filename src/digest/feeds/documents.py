"""Which feed documents exist, what each is made of, and its validators.

A theme's feed, the feed of all practices and a subscriber's personal feed are each a function of a few figures
in the store (the themes' revisions, digest.store.feeds) and of the settings that shape a document; their
validators (ETag, Last-Modified) are made of those alone, so the web app answers a conditional GET with one
indexed query and renders only on a miss. A theme's older practices are in archive documents (RFC 5005) of
exactly ``feed_max_entries`` each, numbered from the oldest: archive k holds the (k-1)·N-th to the k·N-1-th
practices to join, and never changes but for an edit of one of them. The current document holds the rest: from
N up to 2N-1 practices once the theme has N, so a reader that follows prev-archive from it sees each practice
exactly once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from datetime import datetime
from functools import lru_cache

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from digest import __version__
from digest.config import Settings
from digest.feeds.atom import Page, newest_change, render
from digest.feeds.jsonfeed import render_json
from digest.store import feeds as store
from digest.text.i18n import _, using
from digest.text.languages import parse_tags

ALL = "all"
ARCHIVES = "archives"

# The settings a document's bytes depend on (with digest's version): a change to any makes new validators.
_SHAPING = ("base_url", "feed_max_entries", "feed_author", "id_domain", "id_date", "websub_hubs", "default_language")


@lru_cache(maxsize=8)
def shape(settings: Settings) -> str:
    values = {f.name: getattr(settings, f.name) for f in fields(settings) if f.name in _SHAPING}
    return hashlib.sha256(repr((__version__, sorted(values.items()))).encode()).hexdigest()[:16]


def feed_filename(slug: str) -> str:
    # A theme slugged "all" must not overwrite the feed of all practices.
    return f"{slug}.atom" if slug != ALL else "theme-all.atom"


def feed_url(settings: Settings, filename: str) -> str:
    return f"{settings.base_url}/feeds/{filename}"


def archive_path(stem: str, number: int) -> str:
    """An archive document's path under the feeds folder (and under /feeds/ on the web)."""
    return f"{ARCHIVES}/{stem}/{number}.atom"


def archives(total: int, size: int) -> int:
    """How many full archive documents a feed of ``total`` entries has: all its entries but the newest N to 2N-1."""
    return max(0, (total - size) // size)


@dataclass(frozen=True)
class Document:
    """One feed document that exists, with its validators; digest.feeds.documents.render_document renders it."""

    # Under /feeds/ on the web and under feeds_dir on disk ("water.atom", "archives/water/3.atom"); a personal
    # feed's is its link's.
    path: str
    etag: str
    modified: datetime
    kind: str  # "theme", "all" or "me"
    # The theme's or the subscriber's id (none for the feed of all practices).
    ident: int | None
    # The archive's number (1: the oldest), or None for the feed's current document.
    number: int | None
    title: str
    # The theme's slug; for a personal feed, its subscriber's key (what its permanent id is made from).
    slug: str = ""
    # A personal feed's languages of practices ("es fr"; empty: every language).
    languages: str = ""
    # The feed's practices, when counted already (to find its archives): rendering counts them only when not.
    total: int | None = None
    # The language of its own words: the default_language, or a personal feed's subscriber's.
    language: str = ""

    @property
    def stem(self) -> str:
        return feed_filename(self.slug).removesuffix(".atom") if self.kind == "theme" else self.kind


def _etag(settings: Settings, *parts: object) -> str:
    return hashlib.sha256(repr((shape(settings), parts)).encode()).hexdigest()[:32]


def _epoch(settings: Settings) -> datetime:
    return datetime.fromisoformat(settings.id_date + "T00:00:00+00:00")


def _theme_document(
    settings: Settings, theme: store.ThemeStamp, number: int | None, total: int | None = None
) -> Document:
    filename = feed_filename(theme.slug)
    path = filename if number is None else archive_path(filename.removesuffix(".atom"), number)
    etag = _etag(settings, "theme", theme.id, theme.revision, theme.changed_at, number)
    return Document(
        path, etag, theme.changed_at, "theme", theme.id, number, theme.name, theme.slug, total=total,
        language=settings.default_language,
    )  # fmt: skip


def _all_document(settings: Settings, stamp: store.AllStamp, number: int | None, total: int | None = None) -> Document:
    path = f"{ALL}.atom" if number is None else archive_path(ALL, number)
    etag = _etag(settings, ALL, stamp.revisions, stamp.changed_at, stamp.themes, number)
    with using(settings.default_language):
        title = _("All practices")
    modified = stamp.changed_at or _epoch(settings)
    return Document(path, etag, modified, ALL, None, number, title, total=total, language=settings.default_language)


def public_document(
    connection: Connection, settings: Settings, filename: str, number: int | None = None
) -> Document | None:
    """The current document of the feed written to ``filename`` ("water.atom", "all.atom"), or its archive
    ``number``; None when there is no such feed or archive. One indexed query for a current document (two for an
    archive: it must exist)."""
    if not filename.endswith(".atom"):
        return None
    size = settings.feed_max_entries
    if filename == f"{ALL}.atom":
        stamp = store.all_stamp(connection)
        total = None
        if number is not None:
            total = store.all_size(connection)
            if not 1 <= number <= archives(total, size):
                return None
        return _all_document(settings, stamp, number, total)
    slug = ALL if filename == feed_filename(ALL) else filename.removesuffix(".atom")
    theme = store.theme_by_slug(connection, slug)
    if theme is None or feed_filename(theme.slug) != filename:
        return None
    total = None
    if number is not None:
        total = store.theme_size(connection, theme.id)
        if not 1 <= number <= archives(total, size):
            return None
    return _theme_document(settings, theme, number, total)


def archive_document(connection: Connection, settings: Settings, stem: str, number: int) -> Document | None:
    """Archive ``number`` of the feed whose current document is ``stem``.atom."""
    return public_document(connection, settings, f"{stem}.atom", number)


def personal_document(connection: Connection, settings: Settings, feed_key: str, token: str) -> Document | None:
    """A subscriber's personal feed, reached by the link ``me/<token>.atom`` that names ``feed_key``; None when
    the key is nobody's (revoked, erased) or its holder has not confirmed or has left."""
    stamp = store.personal_stamp(connection, feed_key)
    if stamp is None or stamp.status not in store.FEED_READERS:
        return None
    path = f"me/{token}.atom"
    etag = _etag(
        settings,
        "me",
        stamp.subscriber_id,
        path,
        stamp.themes,
        stamp.newest_choice,
        stamp.revisions,
        stamp.changed_at,
        stamp.languages,
        stamp.language,
    )
    modified = max(d for d in (stamp.changed_at, stamp.newest_choice, stamp.created_at) if d is not None)
    language = stamp.language or settings.default_language
    return Document(
        path, etag, modified, "me", stamp.subscriber_id, None, "", stamp.key, stamp.languages or "", language=language
    )


def all_documents(session: Session, settings: Settings) -> list[Document]:
    """Every public document: each theme's feed and archives, then the feed of all practices and its archives."""
    size = settings.feed_max_entries
    connection = session.connection()
    found: list[Document] = []
    for theme in store.theme_stamps(connection):
        total = store.theme_size(connection, theme.id)
        found.extend(_theme_document(settings, theme, k, total) for k in [None, *range(1, archives(total, size) + 1)])
    stamp = store.all_stamp(connection)
    total = store.all_size(connection)
    found.extend(_all_document(settings, stamp, k, total) for k in [None, *range(1, archives(total, size) + 1)])
    return found


@dataclass(frozen=True)
class Rendered:
    data: bytes
    entries: int


def render_document(session: Session, settings: Settings, document: Document, as_json: bool = False) -> Rendered:
    """The document, read from the store now: the same bytes for the same store, on disk or on the web; Atom, or
    with ``as_json`` the JSON Feed of the same entries."""
    page = page_of(session, settings, document)
    data = render_json(settings, page) if as_json else render(settings, page)
    return Rendered(data, len(page.entries))


def page_of(session: Session, settings: Settings, document: Document) -> Page:
    """What the document holds, read from the store now: its entries, its links and ids."""
    size = settings.feed_max_entries
    base = settings.base_url
    if document.kind == "me":
        assert document.ident is not None
        names, entries = store.personal_entries(session, document.ident, size, parse_tags(document.languages))
        with using(document.language):
            title = _("Your practices: %(themes)s", themes=", ".join(names)) if names else _("Your practices")
            subtitle = _("Practices newly added to your themes, each once")
        return Page(
            # The subscriber's key, hashed: permanent (a new feed link keeps it) and telling nothing.
            specific_id=f"me/{hashlib.sha256(document.slug.encode()).hexdigest()[:20]}",
            title=title,
            alternate=f"{base}/",
            self_url=feed_url(settings, document.path),
            updated=document.modified,
            entries=entries,
            language=document.language,
            subtitle=subtitle,
        )
    with using(document.language or settings.default_language):
        subtitle = (
            _("Practices newly added to %(theme)s", theme=document.title)
            if document.kind == "theme"
            else _("Practices newly added to any theme")
        )
    if document.kind == "theme":
        assert document.ident is not None
        theme_id = document.ident
        total = document.total if document.total is not None else store.theme_size(session.connection(), theme_id)
        specific, alternate = f"theme/{document.slug}", f"{base}/themes/{document.slug}"

        def entries_from(offset: int, limit: int | None) -> list[store.FeedEntry]:
            return store.theme_entries(session, theme_id, offset, limit)

    else:
        total = document.total if document.total is not None else store.all_size(session.connection())
        specific, alternate = ALL, f"{base}/"

        def entries_from(offset: int, limit: int | None) -> list[store.FeedEntry]:
            return store.all_entries(session, offset, limit)

    current = feed_url(settings, f"{document.stem}.atom")
    held = archives(total, size)
    if document.number is None:
        entries = entries_from(held * size, None)
        return Page(
            specific_id=specific,
            title=document.title,
            alternate=alternate,
            self_url=current,
            updated=document.modified,
            entries=entries,
            prev_archive=feed_url(settings, archive_path(document.stem, held)) if held else None,
            hubs=settings.hubs,
            language=document.language,
            subtitle=subtitle,
        )
    number = document.number
    entries = entries_from((number - 1) * size, size)
    return Page(
        specific_id=specific,
        title=document.title,
        alternate=alternate,
        self_url=feed_url(settings, document.path),
        updated=newest_change(entries, _epoch(settings)),
        entries=entries,
        current=current,
        prev_archive=feed_url(settings, archive_path(document.stem, number - 1)) if number > 1 else None,
        archive=True,
        language=document.language,
        subtitle=subtitle,
    )
