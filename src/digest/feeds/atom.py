"""Atom documents (RFC 4287) with feedgen: every entry a link, its themes as categories, the feed linked to its
web page, to itself, to its hubs (WebSub) and to its archives (RFC 5005). A pure function of its arguments (no
clock), so the same store gives the same bytes, written to a file or served."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from digest import __version__
from digest.config import Settings
from digest.store.feeds import FeedEntry
from digest.text.clean import strip_unsafe
from digest.text.links import safe_link

# RFC 5005's namespace: an archive document says so with <fh:archive/>.
HISTORY = "http://purl.org/syndication/history/1.0"
ATOM_TYPE = "application/atom+xml"
ATOM_NS = "http://www.w3.org/2005/Atom"
# A source URL whose path ends so is not a web page; its link carries no type.
_NOT_HTML = (".pdf", ".doc", ".docx", ".odt", ".xls", ".xlsx", ".ods", ".ppt", ".pptx", ".zip", ".csv", ".json")


def tag_uri(settings: Settings, specific: str) -> str:
    """A permanent id (RFC 4151) from the configured domain and date: never from a title or a URL."""
    return f"tag:{settings.id_domain},{settings.id_date}:{specific}"


@dataclass(frozen=True)
class Page:
    """One document of a feed, as rendered: what it is, where it is, and the documents it links to."""

    specific_id: str
    title: str
    # The web page the feed is the feed of (a theme's page, the home page).
    alternate: str
    self_url: str
    updated: datetime
    entries: list[FeedEntry]
    # RFC 5005: the feed's current document (in an archive), the next older archive, and whether this is one.
    current: str | None = None
    prev_archive: str | None = None
    archive: bool = False
    hubs: list[str] = field(default_factory=list)
    # The language of the feed's own words (its title when ours, its subtitle): xml:lang on the feed.
    language: str = ""
    subtitle: str = ""


class _History(BaseExtension):  # type: ignore[misc]
    """feedgen's hook for RFC 5005's <fh:archive/>, before the entries (where the schema puts extensions)."""

    def __init__(self) -> None:
        self.archive = False

    def extend_ns(self) -> dict[str, str]:
        return {"fh": HISTORY} if self.archive else {}

    def extend_atom(self, feed: Any) -> Any:
        if self.archive:
            etree.SubElement(feed, f"{{{HISTORY}}}archive")
        return feed


class _EntryLinks(BaseEntryExtension):  # type: ignore[misc]
    """An entry's links, written with every attribute: feedgen 1.0's own entry links lose their rel and type (its
    loop reads them off the element it just made), which would make two links both "alternate"."""

    def __init__(self) -> None:
        self.links: list[dict[str, str]] = []
        self.lang: str | None = None

    def extend_atom(self, entry: Any) -> Any:
        if self.lang:  # the practice's own language, for readers and screen readers (RFC 4287's xml:lang)
            entry.set("{http://www.w3.org/XML/1998/namespace}lang", self.lang)
        for link in self.links:
            etree.SubElement(entry, f"{{{ATOM_NS}}}link", link)
        return entry


def practice_page(settings: Settings, uid: str) -> str:
    return f"{settings.base_url}/practices/{uid}"


def _html_type(url: str) -> str | None:
    return None if urlsplit(url).path.lower().endswith(_NOT_HTML) else "text/html"


def render(settings: Settings, page: Page) -> bytes:
    fg = FeedGenerator()
    fg.register_extension("digest", _History, _EntryLinks, atom=True, rss=False)
    fg.digest.archive = page.archive
    fg.id(tag_uri(settings, page.specific_id))
    fg.title(strip_unsafe(page.title))
    if page.subtitle:
        fg.subtitle(strip_unsafe(page.subtitle))
    if page.language:
        fg.language(page.language)
    fg.author({"name": settings.feed_author})
    fg.link(href=page.alternate, rel="alternate", type="text/html")
    fg.link(href=page.self_url, rel="self", type=ATOM_TYPE)
    for hub in page.hubs:
        fg.link(href=hub, rel="hub")
    if page.current:
        fg.link(href=page.current, rel="current", type=ATOM_TYPE)
    if page.prev_archive:
        fg.link(href=page.prev_archive, rel="prev-archive", type=ATOM_TYPE)
    fg.generator("digest", version=__version__)
    fg.updated(page.updated)
    themes = f"{settings.base_url}/themes/"
    for entry in page.entries:
        practice = entry.practice
        fe = fg.add_entry(order="append")
        fe.id(tag_uri(settings, f"practice/{practice.uid}"))
        # Stored text is clean since ingest vets it; rows from before are cleaned here, so XML never breaks.
        fe.title(strip_unsafe(practice.title) or "Untitled practice")
        updated = max(entry.added_at, practice.updated_at)
        fe.updated(updated)
        # When the source published it, when it says (an export's `published`, a feed's own date); else when it
        # was first seen here. Never after `updated` (a source's date in the future is not a promise).
        fe.published(min(practice.published_at or entry.added_at, updated))
        author = strip_unsafe(practice.submitted_by or "").strip()
        if author:
            fe.author({"name": author})
        # Every entry is a link: to the practice's own page at its source, else to ours (which every reader
        # can open); ours is also named as related when the source's is the alternate.
        ours = practice_page(settings, practice.uid)
        source = safe_link(practice.url)
        if source:
            kind = _html_type(source)
            fe.digest.links = [
                {"rel": "alternate", **({"type": kind} if kind else {}), "href": source},
                {"rel": "related", "type": "text/html", "href": ours},
            ]
        else:
            fe.digest.links = [{"rel": "alternate", "type": "text/html", "href": ours}]
        fe.digest.lang = practice.language
        for slug, name in entry.themes:
            fe.category(term=slug, scheme=themes, label=strip_unsafe(name))
        fe.content(strip_unsafe(practice.summary or practice.title) or "-", type="text")
    result: bytes = fg.atom_str(pretty=True, encoding="UTF-8")
    return result


def newest_change(entries: list[FeedEntry], fallback: datetime) -> datetime:
    """The newest addition or change among the entries."""
    return max((max(e.added_at, e.practice.updated_at) for e in entries), default=fallback)
