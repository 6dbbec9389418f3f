"""The last check of every parsed item before the store sees it, the same for every kind of source.

Text is cleared of characters no XML, header or terminal can carry; fields are held to their sizes (the same
on SQLite, which would store anything, and PostgreSQL, which would refuse the whole source); a link that is
not http(s) is dropped. Each change is reported against the item, so the operator sees what was cut.
"""

from __future__ import annotations

from digest.ingest.items import ParsedItem, Problem
from digest.text.clean import strip_unsafe
from digest.text.links import MAX_URL, safe_link

MAX_TITLE = 500
MAX_SUMMARY = 50_000
MAX_SUMMARY_HTML = 200_000
MAX_SUBMITTED_BY = 300  # practices.submitted_by
MAX_GUID = MAX_URL


def _cut(text: str, limit: int) -> str:
    cut = text[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut[-80:] else cut).rstrip() + "…"


def vet(item: ParsedItem) -> list[Problem]:
    """Make the item fit to store, in place; return what was changed, as problems naming the item."""
    problems: list[Problem] = []

    def note(reason: str) -> None:
        problems.append(Problem(item.where, item.title[:80], reason))

    item.title = strip_unsafe(item.title)
    item.summary = strip_unsafe(item.summary)
    if item.summary_html is not None:
        item.summary_html = strip_unsafe(item.summary_html)
    if len(item.title) > MAX_TITLE:
        item.title = _cut(item.title, MAX_TITLE)
        note(f"title longer than {MAX_TITLE} characters; cut")
    if len(item.summary) > MAX_SUMMARY:
        item.summary = _cut(item.summary, MAX_SUMMARY)
        note(f"summary longer than {MAX_SUMMARY:,} characters; cut")
    if item.summary_html is not None and len(item.summary_html) > MAX_SUMMARY_HTML:
        item.summary_html = None
        note(f"HTML summary longer than {MAX_SUMMARY_HTML:,} characters; kept as plain text only")
    if item.submitted_by is not None:
        item.submitted_by = strip_unsafe(item.submitted_by).strip() or None
        if item.submitted_by and len(item.submitted_by) > MAX_SUBMITTED_BY:
            item.submitted_by = _cut(item.submitted_by, MAX_SUBMITTED_BY)
            note(f"submitted_by longer than {MAX_SUBMITTED_BY} characters; cut")
    if item.guid is not None:
        item.guid = strip_unsafe(item.guid).strip() or None
        if item.guid and len(item.guid) > MAX_GUID:
            item.guid = None
            note(f"id/guid longer than {MAX_GUID} characters; ignored (identified by its link or text)")
    if item.url:
        link = safe_link(item.url)
        if link is None:
            shown = strip_unsafe(item.url)[:60]
            note(f"link {shown!r} is not an absolute http(s) URL; dropped (the practice page stands in)")
        item.url = link
    else:
        item.url = None
    return problems
