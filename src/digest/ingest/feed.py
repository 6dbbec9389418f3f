"""RSS 2.0, RSS 1.0 and Atom feeds, parsed with feedparser: one item per entry, HTML kept clean and sanitised."""

from __future__ import annotations

import io
import time
import xml.sax
from datetime import UTC, datetime
from typing import Any

import feedparser

from digest.errors import SourceError
from digest.ingest.items import ParsedItem, ParsedSource, Problem
from digest.text.clean import clean_line, clean_paragraphs, derive_title, reads_like_sentence
from digest.text.markup import html_to_text, sanitize_html

_HTML_TYPES = ("text/html", "application/xhtml+xml")
# Bozo reasons that say nothing bad about the entries (a wrong charset declaration, a text/plain server).
_HARMLESS = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)


def _when(entry: Any) -> datetime | None:
    parsed: time.struct_time | None = entry.get("published_parsed") or entry.get("updated_parsed")
    if not parsed:
        return None
    return datetime(*parsed[:6], tzinfo=UTC)


def _body(entry: Any) -> tuple[str, str | None]:
    """The entry's text and, when it is HTML, its sanitised HTML; full content wins over a summary."""
    detail = None
    contents = entry.get("content") or []
    if contents and (contents[0].get("value") or "").strip():
        detail = contents[0]
    elif (entry.get("summary") or "").strip():
        detail = entry.get("summary_detail") or {"value": entry.get("summary"), "type": "text/html"}
    if detail is None:
        return "", None
    value = detail.get("value") or ""
    if detail.get("type", "text/html") in _HTML_TYPES:
        text = html_to_text(value)
        html = sanitize_html(value)
        return clean_paragraphs(text), html or None
    return clean_paragraphs(value), None


def _title(entry: Any) -> str:
    raw = entry.get("title") or ""
    detail = entry.get("title_detail") or {}
    if detail.get("type") in _HTML_TYPES:
        raw = html_to_text(raw)
    return clean_line(" ".join(raw.split()))


def _check_wellformed(parsed: Any, source: str) -> None:
    if not parsed.get("bozo"):
        return
    error = parsed.get("bozo_exception")
    if isinstance(error, _HARMLESS):
        return
    where = ""
    if isinstance(error, xml.sax.SAXParseException):
        where = f" at line {error.getLineNumber()}, column {error.getColumnNumber()}"
    raise SourceError(
        f"{source}: the feed is not well-formed XML{where} ({error}); it may be truncated",
        "nothing from this feed was stored; open the feed URL to check it, or try again later",
    )


def parse_feed(data: bytes, source: str) -> ParsedSource:
    """Parse an RSS or Atom document; raise SourceError when it is not a complete, well-formed feed."""
    # A stream, never a string: feedparser would treat a string as a URL or a file name to open.
    # Its own sanitiser is off: nh3 sanitises what is kept, and that halves the parse time of a big feed.
    parsed = feedparser.parse(io.BytesIO(data), sanitize_html=False)
    _check_wellformed(parsed, source)
    if not parsed.get("version"):
        raise SourceError(
            f"{source}: not an RSS or Atom feed", "check the URL, or give --format for another kind of source"
        )
    feed_title = clean_line(parsed.feed.get("title") or "") or None
    items: list[ParsedItem] = []
    problems: list[Problem] = []
    rejected: list[Problem] = []
    for n, entry in enumerate(parsed.entries, 1):
        where = f"entry {n}"
        title = _title(entry)
        summary, summary_html = _body(entry)
        guid = (entry.get("id") or "").strip() or None
        link = (entry.get("link") or "").strip() or None
        if not title and not summary:
            rejected.append(Problem(where, guid or link or "", "no title and no description; left out"))
            continue
        item = ParsedItem(
            title=title,
            summary=summary,
            where=where,
            submitted_by=clean_line(entry.get("author") or "") or None,
            url=link,
            guid=guid,
            published_at=_when(entry),
            summary_html=summary_html,
        )
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
    if not items and not rejected:
        problems.append(Problem("feed", feed_title or "", "the feed has no entries"))
    return ParsedSource(theme=feed_title, items=items, problems=problems, rejected=rejected)
