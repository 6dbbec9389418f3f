"""Theme listing pages as text: `Title`, `Submitted by NAME on`, summary paragraphs, `Subscribe to THEME`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from digest.errors import SourceError
from digest.ingest.items import ParsedItem, ParsedSource, Problem
from digest.text.clean import clean_line, derive_title, reads_like_sentence, repair_mojibake

SUBMITTED = re.compile(r"^Submitted by (?P<who>.*?)\s*\bon\b\s*(?P<date>.*)$")
SUBSCRIBE = re.compile(r"^Subscribe to (?P<theme>.+)$")
DATE_FORMATS = ("%Y-%m-%d", "%d %B %Y", "%B %d, %Y", "%d/%m/%Y", "%a, %m/%d/%Y - %H:%M")


def looks_like_listing(text: str) -> bool:
    """True when the text has the `Submitted by ... on` lines of a listing page."""
    return any(SUBMITTED.match(line.strip()) for line in text.splitlines()[:400])


def _date(text: str) -> datetime | None:
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _paragraphs(lines: list[str]) -> list[str]:
    """Blank-line separated paragraphs; lines inside one (a cut list) stay lines."""
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line:
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    return ["\n".join(p) for p in paragraphs if p]


@dataclass
class _Slot:
    submitted: int  # index of the `Submitted by` line
    title_index: int | None  # index of the title line, None when the slot is empty


def parse_listing(text: str, source: str, repair: bool = True) -> ParsedSource:
    """Parse a listing page; raise SourceError when it has no practices at all.

    ``repair``: undo Windows-1252-read-as-Mac-Roman mojibake (only for text that came as Unicode).
    """
    lines = [clean_line(line) for line in text.splitlines()]
    if repair:
        lines = [repair_mojibake(line) for line in lines]
    theme = None
    end = len(lines)
    for i in range(len(lines) - 1, -1, -1):
        if not lines[i]:
            continue
        match = SUBSCRIBE.match(lines[i])
        if match:
            theme, end = match.group("theme").strip(), i
        break

    slots: list[_Slot] = []
    for i, line in enumerate(lines[:end]):
        if SUBMITTED.match(line):
            # The title stands right above, with at most one blank line between; two blanks = no title.
            j = i - 1 if i > 0 and lines[i - 1] else i - 2
            floor = slots[-1].submitted if slots else -1
            has_title = j > floor and bool(lines[j]) and not SUBMITTED.match(lines[j])
            slots.append(_Slot(i, j if has_title else None))
    if not slots:
        raise SourceError(
            f"{source}: no practices found (no 'Submitted by NAME on' line)",
            "check that this is a theme listing page, or give --format",
        )

    items: list[ParsedItem] = []
    problems: list[Problem] = []
    first = slots[0].title_index if slots[0].title_index is not None else slots[0].submitted
    if any(lines[:first]):
        problems.append(Problem("line 1", "", "text before the first practice was ignored"))
    for k, slot in enumerate(slots):
        stop = end
        if k + 1 < len(slots):
            nxt = slots[k + 1]
            stop = nxt.title_index if nxt.title_index is not None else nxt.submitted
        match = SUBMITTED.match(lines[slot.submitted])
        assert match is not None
        who = match.group("who").strip() or None
        where = f"line {(slot.title_index if slot.title_index is not None else slot.submitted) + 1}"
        paragraphs = _paragraphs(lines[slot.submitted + 1 : stop])
        title = lines[slot.title_index] if slot.title_index is not None else ""

        if title and reads_like_sentence(title):
            # The site pushed the previous practice's last sentence into this title slot.
            if items:
                items[-1].summary = "\n\n".join(p for p in (items[-1].summary, title) if p)
                moved_to = f"moved it to the end of the previous practice {items[-1].title!r}"
            else:
                paragraphs.insert(0, title)
                moved_to = "kept it as the first summary paragraph"
            problems.append(
                Problem(where, title[:60], f"title slot holds running text; {moved_to} and derived a title")
            )
            title = ""

        summary = "\n\n".join(paragraphs)
        item = ParsedItem(
            title=title,
            summary=summary,
            where=where,
            submitted_by=who,
            published_at=_date(match.group("date")),
        )
        if not title:
            item.title = derive_title(summary) if summary else f"Untitled practice ({where})"
            item.title_derived = True
            if not any(p.where == where for p in problems):
                problems.append(Problem(where, item.title, "no title; derived one from the summary"))
        if not summary:
            problems.append(Problem(where, item.title, "empty summary"))
        elif summary.endswith(":"):
            problems.append(Problem(where, item.title, "summary ends with ':' (the site cut a list)"))
        items.append(item)
    return ParsedSource(theme=theme, items=items, problems=problems)
