"""What every source parser produces: items with their themes, and the problems found on the way."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class ParsedItem:
    """One practice as a source describes it, text already repaired."""

    title: str
    summary: str
    # Where the item starts in the source, for messages: "line 12", "entry 3", "row 7".
    where: str
    title_derived: bool = False
    submitted_by: str | None = None
    url: str | None = None
    guid: str | None = None
    published_at: datetime | None = None
    # Sanitised HTML of the summary when the source gave HTML (feeds); the HTML digest shows it.
    summary_html: str | None = None
    # Theme names this item carries itself (exports); listing pages and feeds name the theme once.
    themes: list[str] = field(default_factory=list)
    # The language it is written in (a BCP 47 tag: xml:lang, a `language` field), None when it does not say.
    language: str | None = None
    # The same practice in other languages, as the source links them: the other versions' URLs or ids (a feed's
    # <link rel="alternate" hreflang>, a `translation_of` field).
    translations: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Problem:
    """Something about one item an operator should look at (stored anyway), or why it was left out."""

    where: str
    title: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where} ({self.title!r}): {self.reason}"


@dataclass
class ParsedSource:
    """A parsed source: the theme it names (if any), its items, the problems found, and the items left out."""

    theme: str | None
    items: list[ParsedItem]
    problems: list[Problem] = field(default_factory=list)
    # The language the source says it is written in (RSS <language>, dc:language, the feed's xml:lang): the
    # language of each item that names none.
    language: str | None = None
    # Items that could not be stored (no title, not an object...): errors, and the source did not fully succeed.
    rejected: list[Problem] = field(default_factory=list)
