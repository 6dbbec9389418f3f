"""What a digest says: the frozen content and the pure choice of what goes in it. No I/O, no store.

Planning (``digest.mail.plan``) feeds ``compose`` from the store; rendering reads only ``DigestContent``.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

from digest.text.clean import header_safe
from digest.text.languages import wanted
from digest.text.links import safe_link


@dataclass(frozen=True)
class PracticeEntry:
    """A practice as frozen into a digest."""

    id: int
    uid: str
    title: str
    summary: str
    url: str | None
    submitted_by: str | None
    added_at: str
    # Sanitised HTML of the summary (feeds); digests planned before it existed have none.
    summary_html: str | None = None
    # Every theme that lists the practice, in the order it joined them (digests planned before: none).
    themes: tuple[str, ...] = ()
    # The language it is written in (BCP 47), when its source says: the HTML marks it (lang) for screen readers.
    language: str | None = None


@dataclass(frozen=True)
class ThemeInfo:
    """A theme as a digest names it."""

    name: str
    slug: str


@dataclass(frozen=True)
class ThemeSection:
    name: str
    slug: str
    practices: tuple[PracticeEntry, ...]
    # New practices of this theme past the digest's cap: counted, not listed (the theme page lists them).
    more: int = 0


@dataclass(frozen=True)
class DigestContent:
    """Everything a digest says; rendering reads nothing else."""

    period: str
    sections: tuple[ThemeSection, ...]

    @property
    def count(self) -> int:
        """Every new practice, listed or counted past the cap."""
        return sum(len(s.practices) + s.more for s in self.sections)

    @property
    def more(self) -> int:
        """New practices past the cap: counted, not listed."""
        return sum(s.more for s in self.sections)

    @property
    def subject(self) -> str:
        """The theme with most news first, with its own count, then the rest: "3 new practices in Connectivity and
        Migration", "2 new practices in Decent Work and 1 in Urban Resilience", "2 new practices in Decent Work and
        4 more in 3 other themes". Every number is that of the sections it names."""
        counts = [len(s.practices) + s.more for s in self.sections]
        lead = max(range(len(self.sections)), key=lambda i: (counts[i], -i))
        noun = "practice" if counts[lead] == 1 else "practices"
        subject = f"{counts[lead]} new {noun} in {self.sections[lead].name}"
        others = [i for i in range(len(self.sections)) if i != lead]
        if len(others) == 1:
            subject += f" and {counts[others[0]]} in {self.sections[others[0]].name}"
        elif others:
            subject += f" and {sum(counts[i] for i in others)} more in {len(others)} other themes"
        return header_safe(subject)

    @property
    def preheader(self) -> str:
        """The line mail clients show after the subject: the count per theme."""
        parts = [f"{s.name} ({len(s.practices) + s.more})" for s in self.sections]
        return header_safe(f"{self.count} new: " + ", ".join(parts), limit=300)

    def listing_at_most(self, per_section: int) -> DigestContent:
        """The same digest listing at most ``per_section`` practices of each theme; the rest are counted."""
        return replace(
            self,
            sections=tuple(
                replace(s, practices=s.practices[:per_section], more=s.more + max(0, len(s.practices) - per_section))
                for s in self.sections
            ),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> DigestContent:
        """The frozen content; a link frozen before links were checked at ingest is checked again here."""
        data = json.loads(text)
        sections = tuple(
            ThemeSection(
                s["name"],
                s["slug"],
                tuple(
                    PracticeEntry(**dict(p, url=safe_link(p["url"]), themes=tuple(p.get("themes", ()))))
                    for p in s["practices"]
                ),
                s.get("more", 0),
            )
            for s in data["sections"]
        )
        return cls(period=data["period"], sections=sections)


@dataclass(frozen=True)
class NewMembership:
    id: int
    practice_id: int
    theme_id: int


@dataclass
class NewMemberships:
    """The memberships a run may hand out, by theme, in store order."""

    by_theme: dict[int, list[NewMembership]] = field(default_factory=dict)
    ids_by_theme: dict[int, list[int]] = field(default_factory=dict)

    def after(self, theme_id: int, cursor: int) -> list[NewMembership]:
        ids = self.ids_by_theme.get(theme_id, [])
        return self.by_theme.get(theme_id, [])[bisect_right(ids, cursor) :]


def compose(
    period: str,
    subscriptions: Sequence[tuple[int, int]],
    new: NewMemberships,
    already_sent: set[int],
    practices: Mapping[int, PracticeEntry],
    themes: Mapping[int, ThemeInfo],
    cap: int | None = None,
    languages: frozenset[str] = frozenset(),
) -> tuple[DigestContent, list[tuple[int, int, bool]]] | None:
    """The digest for one subscriber: (theme_id, cursor) subscriptions -> content and the ledger's
    (practice, theme, summarised) rows.

    Each practice once, under the theme it joined first among the subscriber's; none already sent; only those in
    ``languages`` when they chose some (a practice of unknown language always). Past ``cap`` the newest are listed
    and the others counted per theme ("summarised": delivered, never again).
    """
    chosen: dict[int, NewMembership] = {}
    for theme_id, cursor in subscriptions:
        for membership in new.after(theme_id, cursor):
            if membership.practice_id in already_sent:
                continue
            if languages and not wanted(practices[membership.practice_id].language, languages):
                continue
            current = chosen.get(membership.practice_id)
            if current is None or membership.id < current.id:
                chosen[membership.practice_id] = membership
    if not chosen:
        return None
    ordered = sorted(chosen.values(), key=lambda m: m.id)
    listed = ordered if cap is None or len(ordered) <= cap else ordered[len(ordered) - cap :]
    listed_ids = {m.id for m in listed}
    grouped: dict[int, list[NewMembership]] = defaultdict(list)
    more: dict[int, int] = defaultdict(int)
    for membership in ordered:
        if membership.id in listed_ids:
            grouped[membership.theme_id].append(membership)
        else:
            more[membership.theme_id] += 1
    sections = tuple(
        ThemeSection(
            name=themes[theme_id].name,
            slug=themes[theme_id].slug,
            practices=tuple(practices[m.practice_id] for m in grouped[theme_id]),
            more=more[theme_id],
        )
        for theme_id in sorted(set(grouped) | set(more), key=lambda t: themes[t].name.lower())
    )
    rows = [(m.practice_id, m.theme_id, m.id not in listed_ids) for m in ordered]
    return DigestContent(period=period, sections=sections), rows
