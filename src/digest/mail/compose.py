"""What a digest says: the frozen content and the pure choice of what goes in it. No I/O, no store.

Planning (``digest.mail.plan``) feeds ``compose`` from the store; rendering reads only ``DigestContent``.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from digest.text.clean import header_safe
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


@dataclass(frozen=True)
class DigestContent:
    """Everything a digest says; rendering reads nothing else."""

    period: str
    sections: tuple[ThemeSection, ...]

    @property
    def count(self) -> int:
        return sum(len(s.practices) for s in self.sections)

    @property
    def subject(self) -> str:
        noun = "practice" if self.count == 1 else "practices"
        where = self.sections[0].name if len(self.sections) == 1 else f"{len(self.sections)} of your themes"
        return header_safe(f"{self.count} new {noun} in {where}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> DigestContent:
        """The frozen content; a link frozen before links were checked at ingest is checked again here."""
        data = json.loads(text)
        sections = tuple(
            ThemeSection(
                s["name"], s["slug"], tuple(PracticeEntry(**dict(p, url=safe_link(p["url"]))) for p in s["practices"])
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
) -> tuple[DigestContent, list[tuple[int, int]]] | None:
    """The digest for one subscriber: (theme_id, cursor) subscriptions -> content and (practice, theme) pairs.

    Each practice once, under the theme it joined first among the subscriber's; none already sent.
    """
    chosen: dict[int, NewMembership] = {}
    for theme_id, cursor in subscriptions:
        for membership in new.after(theme_id, cursor):
            if membership.practice_id in already_sent:
                continue
            current = chosen.get(membership.practice_id)
            if current is None or membership.id < current.id:
                chosen[membership.practice_id] = membership
    if not chosen:
        return None
    grouped: dict[int, list[NewMembership]] = defaultdict(list)
    for membership in sorted(chosen.values(), key=lambda m: m.id):
        grouped[membership.theme_id].append(membership)
    sections = tuple(
        ThemeSection(
            name=themes[theme_id].name,
            slug=themes[theme_id].slug,
            practices=tuple(practices[m.practice_id] for m in members),
        )
        for theme_id, members in sorted(grouped.items(), key=lambda kv: themes[kv[0]].name.lower())
    )
    pairs = [(m.practice_id, m.theme_id) for m in chosen.values()]
    return DigestContent(period=period, sections=sections), pairs
