"""RSS 2.0, RSS 1.0 and Atom feeds, parsed with feedparser: one item per entry, HTML kept clean and sanitised."""

from __future__ import annotations

import html
import io
import re
import time
import xml.sax
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import feedparser

from digest.errors import SourceError
from digest.ingest.items import ParsedItem, ParsedSource, Problem
from digest.text.clean import clean_line, clean_paragraphs, derive_title, reads_like_sentence, repair_mojibake
from digest.text.languages import language_tag
from digest.text.links import safe_link
from digest.text.markup import html_to_text, sanitize_html

_HTML_TYPES = ("text/html", "application/xhtml+xml")
# Bozo reasons that say nothing bad about the entries (a wrong charset declaration, a text/plain server).
_HARMLESS = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)


def _when(entry: Any) -> datetime | None:
    parsed: time.struct_time | None = entry.get("published_parsed") or entry.get("updated_parsed")
    if not parsed:
        return None
    return datetime(*parsed[:6], tzinfo=UTC)


def _body(entry: Any, base: str | None, fix: Callable[[str], str]) -> tuple[str, str | None]:
    """The entry's text and, when it is HTML, its sanitised HTML; full content wins over a summary.

    Links in the HTML resolve against the content's xml:base, else ``base`` (the entry's link, the feed's).
    """
    detail = None
    contents = entry.get("content") or []
    if contents and (contents[0].get("value") or "").strip():
        detail = contents[0]
    elif (entry.get("summary") or "").strip():
        detail = entry.get("summary_detail") or {"value": entry.get("summary"), "type": "text/html"}
    if detail is None:
        return "", None
    value = fix(detail.get("value") or "")
    if detail.get("type", "text/html") in _HTML_TYPES:
        value, text = _decoded_once_more(value)
        html = sanitize_html(value, _absolute(detail.get("base")) or base)
        return clean_paragraphs(text), html or None
    return clean_paragraphs(value), None


def _absolute(url: str | None, base: str | None = None) -> str | None:
    """``url`` made absolute against ``base``, if the result is an http(s) URL."""
    if not url:
        return None
    return safe_link(urljoin(base, url.strip()) if base else url.strip())


def _title(entry: Any, fix: Callable[[str], str]) -> str:
    raw = entry.get("title") or ""
    detail = entry.get("title_detail") or {}
    if detail.get("type") in _HTML_TYPES:
        raw = _decoded_once_more(raw)[1]
    return fix(clean_line(raw))


_ROOT_END = re.compile(rb"</\s*(?:[\w.-]+:)?(rss|feed|RDF)\s*>\s*$")


def _check_wellformed(parsed: Any, data: bytes, source: str) -> str | None:
    """A truncated document fails as a whole; a complete one with an XML fault (an HTML entity such as &nbsp;,
    a stray `&`) is read leniently, as feed readers do: the fault, to report (None when there is none)."""
    if not parsed.get("bozo"):
        return None
    error = parsed.get("bozo_exception")
    if isinstance(error, _HARMLESS):
        return None
    where = ""
    if isinstance(error, xml.sax.SAXParseException):
        where = f" at line {error.getLineNumber()}, column {error.getColumnNumber()}"
    if _ROOT_END.search(data[-200:]) and parsed.get("version"):
        return f"not well-formed XML{where} ({error})"
    raise SourceError(
        f"{source}: the feed is not well-formed XML{where} ({error}); it may be truncated",
        "nothing from this feed was stored; open the feed URL to check it, or try again later",
    )


# After one round of decoding, text that still carries tags or entities was encoded twice by its site.
_STILL_ENCODED = re.compile(r"<[a-zA-Z/][^>]*>|&(?:amp|lt|gt|quot|apos|nbsp|#\d+|#x[0-9a-fA-F]+);")


def _decoded_once_more(value: str) -> tuple[str, str]:
    """HTML and its text; HTML that a site escaped twice (`&amp;lt;p&amp;gt;`) is unescaped once more first.
    The text is computed once in the usual case, twice only for such HTML."""
    text = html_to_text(value)
    if _STILL_ENCODED.search(text):
        value = html.unescape(value)
        text = html_to_text(value)
    return value, text


def parse_feed(data: bytes, source: str, base: str | None = None, repair: bool = True) -> ParsedSource:
    """Parse an RSS or Atom document (UTF-8, see digest.ingest.encoding); SourceError when it is not a complete,
    well-formed feed. ``base`` is where it was fetched from: relative links resolve against it last.
    """
    # A stream, never a string: feedparser would treat a string as a URL or a file name to open.
    # Its own sanitiser is off: nh3 sanitises what is kept, and that halves the parse time of a big feed.
    # No content-location: relative links resolve against the entry's link or the feed's own link (a feed served
    # from elsewhere, FeedBurner-style, means its site), and the fetch URL only last; xml:base still counts.
    headers = {"content-type": "application/xml; charset=utf-8"}
    parsed = feedparser.parse(io.BytesIO(data), sanitize_html=False, response_headers=headers)
    lenient = _check_wellformed(parsed, data, source)
    if not parsed.get("version"):
        raise SourceError(
            f"{source}: not an RSS or Atom feed", "check the URL, or give --format for another kind of source"
        )
    fix: Callable[[str], str] = repair_mojibake if repair else str
    feed_title = fix(clean_line(parsed.feed.get("title") or "")) or None
    feed_link = _absolute(parsed.feed.get("link"), base) or (base if base and safe_link(base) else None)
    items: list[ParsedItem] = []
    problems: list[Problem] = [Problem("feed", "", f"{lenient}; read leniently, check the entries")] if lenient else []
    rejected: list[Problem] = []
    feed_language = _language(parsed.feed.get("language"), "feed", feed_title or "", problems)
    for n, entry in enumerate(parsed.entries, 1):
        where = f"entry {n}"
        title = _title(entry, fix)
        guid = (entry.get("id") or "").strip() or None
        raw_link, versions = _links(entry)
        # A relative entry link resolves against the feed's link (or where the feed came from).
        link = (_absolute(raw_link, feed_link) or raw_link) if raw_link else None
        summary, summary_html = _body(entry, _absolute(link) or feed_link, fix)
        if not title and not summary:
            rejected.append(Problem(where, guid or link or "", "no title and no description; left out"))
            continue
        item = ParsedItem(
            title=title,
            summary=summary,
            where=where,
            submitted_by=fix(clean_line(entry.get("author") or "")) or None,
            url=link,
            guid=guid,
            published_at=_when(entry),
            summary_html=summary_html,
            # dc:language, else the xml:lang in force on its title or text (the feed's, inherited, included).
            language=_language(
                entry.get("language")
                or (entry.get("title_detail") or {}).get("language")
                or (entry.get("summary_detail") or {}).get("language"),
                where,
                title,
                problems,
            ),
        )
        resolved = (_absolute(href, feed_link) for href in versions)
        item.translations = list(dict.fromkeys(href for href in resolved if href and href != link))
        if not title:
            item.title, item.title_derived = derive_title(summary), True
            problems.append(Problem(where, item.title, "no title; derived one from the description"))
        elif reads_like_sentence(title):
            problems.append(Problem(where, title[:60], "title reads like a sentence; check the entry"))
        if not summary:
            problems.append(Problem(where, item.title, "empty description"))
        if not guid and not link:
            problems.append(Problem(where, item.title, "no guid and no link; identified by its text"))
        items.append(item)
    if lenient and not items:
        # Read leniently and nothing came of it: the source is broken, not empty (a cron job must notice).
        raise SourceError(
            f"{source}: the feed is {lenient}, and no entry could be read from it",
            "nothing from this feed was stored; the feed must be fixed where it is published",
        )
    if not items and not rejected:
        problems.append(Problem("feed", feed_title or "", "the feed has no entries"))
    return ParsedSource(theme=feed_title, items=items, problems=problems, rejected=rejected, language=feed_language)


def _links(entry: Any) -> tuple[str | None, list[str]]:
    """The entry's own page and its versions in other languages, as written (unresolved). Its own: its alternate
    link in no other language (feedparser's ``link`` is the last alternate, a translation's when the entry lists
    its versions with hreflang), else its first alternate, else ``link``; its versions: the other alternates that
    name an hreflang."""
    alternates = [
        (str(other["href"]).strip(), str(other.get("hreflang") or "").lower())
        for other in entry.get("links") or []
        if other.get("rel", "alternate") == "alternate" and str(other.get("href") or "").strip()
    ]
    language = str((entry.get("title_detail") or {}).get("language") or entry.get("language") or "").lower()
    own = next((href for href, hreflang in alternates if hreflang in ("", language)), None)
    own = own or (alternates[0][0] if alternates else str(entry.get("link") or "").strip() or None)
    return own, [href for href, hreflang in alternates if hreflang and href != own]


def _language(value: object, where: str, title: str, problems: list[Problem]) -> str | None:
    """A language tag the feed gives, in its usual form; one that is not a tag is a problem, and unknown."""
    tag = language_tag(value)
    if tag is None and isinstance(value, str) and value.strip():
        problems.append(Problem(where, title, f"language {value.strip()[:40]!r} is not a language tag; left unknown"))
    return tag
