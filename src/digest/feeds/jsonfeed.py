"""JSON Feed 1.1 documents (https://jsonfeed.org/version/1.1), beside each Atom one: the same entries, links,
dates, authors, tags (the practice's themes) and languages, made from the same Page, so the two never disagree. A
pure function of its arguments: the same store gives the same bytes, and their validators are the Atom document's
with a suffix of their own."""

from __future__ import annotations

import json
from typing import Any

from digest.config import Settings
from digest.feeds.atom import Page, practice_page, tag_uri
from digest.text.clean import strip_unsafe
from digest.text.links import safe_link

VERSION = "https://jsonfeed.org/version/1.1"
JSON_FEED_TYPE = "application/feed+json"


def json_path(atom_path: str) -> str:
    """The JSON Feed beside an Atom document: "water.atom" -> "water.json"."""
    return atom_path.removesuffix(".atom") + ".json"


def render_json(settings: Settings, page: Page) -> bytes:
    """The JSON Feed of ``page``: its current document links its previous archive as ``next_url`` (JSON Feed pages
    from newest to oldest, as RFC 5005's prev-archive does)."""
    feed: dict[str, Any] = {
        "version": VERSION,
        "title": strip_unsafe(page.title),
        "home_page_url": page.alternate,
        "feed_url": json_path(page.self_url),
        "authors": [{"name": settings.feed_author}],
    }
    if page.subtitle:
        feed["description"] = strip_unsafe(page.subtitle)
    if page.language:
        feed["language"] = page.language
    if page.prev_archive:
        feed["next_url"] = json_path(page.prev_archive)
    if page.hubs:
        feed["hubs"] = [{"type": "WebSub", "url": hub} for hub in page.hubs]
    feed["items"] = [_item(settings, entry) for entry in page.entries]
    return json.dumps(feed, ensure_ascii=False, indent=1, sort_keys=False).encode("utf-8") + b"\n"


def _item(settings: Settings, entry: Any) -> dict[str, Any]:
    practice = entry.practice
    updated = max(entry.added_at, practice.updated_at)
    published = min(practice.published_at or entry.added_at, updated)
    ours = practice_page(settings, practice.uid)
    source = safe_link(practice.url)
    item: dict[str, Any] = {
        "id": tag_uri(settings, f"practice/{practice.uid}"),
        # Every item a link, the Atom entry's alternate: the practice at its source, else its page here.
        "url": source or ours,
        "title": strip_unsafe(practice.title) or "Untitled practice",
        "content_text": strip_unsafe(practice.summary or practice.title) or "-",
        "date_published": published.isoformat(),
        "date_modified": updated.isoformat(),
        "tags": [strip_unsafe(name) for _, name in entry.themes],
    }
    author = strip_unsafe(practice.submitted_by or "").strip()
    if author:
        item["authors"] = [{"name": author}]
    if practice.language:
        item["language"] = practice.language
    return item
