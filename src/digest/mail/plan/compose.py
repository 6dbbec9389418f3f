"""What a digest says: the frozen content and the pure choice of what goes in it. No I/O, no store.

Planning (``digest.mail.plan.planner``) feeds ``compose`` from the store; rendering reads only ``DigestContent``.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property

from digest.text.clean import header_safe
from digest.text.i18n import DEFAULT, ngettext, using
from digest.text.languages import wanted
from digest.text.links import safe_link


@dataclass(frozen=True)
class Version:
    """The same practice in another language, as its source links them: what "Also in: Español" names."""

    uid: str
    url: str | None
    title: str
    language: str | None


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
    # Its versions in other languages (linked by the source) and the group they share (the least uid among them):
    # a digest lists one version of a group, the reader's language's when there is one, and names the others.
    group: str | None = None
    versions: tuple[Version, ...] = ()


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
    # The language the digest is written in (digest.text.i18n): its subject, headings and links' words. The
    # practices keep their own (PracticeEntry.language).
    language: str = DEFAULT

    @property
    def count(self) -> int:
        """Every new practice, listed or counted past the cap."""
        return sum(len(s.practices) + s.more for s in self.sections)

    @property
    def more(self) -> int:
        """New practices past the cap: counted, not listed."""
        return sum(s.more for s in self.sections)

    @cached_property
    def subject(self) -> str:
        """The theme with most news first, with its own count, then the rest: "3 new practices in Connectivity and
        Migration", "2 new practices in Decent Work and 1 in Urban Resilience", "2 new practices in Decent Work and
        4 more in 3 other themes". Every number is that of the sections it names."""
        counts = [len(s.practices) + s.more for s in self.sections]
        lead = max(range(len(self.sections)), key=lambda i: (counts[i], -i))
        others = [i for i in range(len(self.sections)) if i != lead]
        lead_name = self.sections[lead].name
        with using(self.language):
            if len(others) == 1:
                subject = ngettext(
                    "%(num)d new practice in %(theme)s and %(other)d in %(other_theme)s",
                    "%(num)d new practices in %(theme)s and %(other)d in %(other_theme)s",
                    counts[lead],
                    theme=lead_name,
                    other=counts[others[0]],
                    other_theme=self.sections[others[0]].name,
                )
            elif others:
                subject = ngettext(
                    "%(num)d new practice in %(theme)s and %(more)d more in %(themes)d other themes",
                    "%(num)d new practices in %(theme)s and %(more)d more in %(themes)d other themes",
                    counts[lead],
                    theme=lead_name,
                    more=sum(counts[i] for i in others),
                    themes=len(others),
                )
            else:
                subject = ngettext(
                    "%(num)d new practice in %(theme)s",
                    "%(num)d new practices in %(theme)s",
                    counts[lead],
                    theme=lead_name,
                )
        return header_safe(subject)

    @property
    def preheader(self) -> str:
        """The line mail clients show after the subject: the count per theme."""
        parts = ", ".join(f"{s.name} ({len(s.practices) + s.more})" for s in self.sections)
        with using(self.language):
            line = ngettext("%(num)d new: %(themes)s", "%(num)d new: %(themes)s", self.count, themes=parts)
        return header_safe(line, limit=300)

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
                    PracticeEntry(
                        **dict(
                            p,
                            url=safe_link(p["url"]),
                            themes=tuple(p.get("themes", ())),
                            versions=tuple(Version(**v) for v in p.get("versions", ())),
                        )
                    )
                    for p in s["practices"]
                ),
                s.get("more", 0),
            )
            for s in data["sections"]
        )
        return cls(period=data["period"], sections=sections, language=data.get("language", DEFAULT))


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
    language: str = DEFAULT,
) -> tuple[DigestContent, list[tuple[int, int, bool]]] | None:
    """The digest for one subscriber, written in ``language``: (theme_id, cursor) subscriptions -> content and the
    ledger's (practice, theme, summarised) rows.

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
    _one_version_each(chosen, practices, language)
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
    return DigestContent(period=period, sections=sections, language=language), rows


def _one_version_each(chosen: dict[int, NewMembership], practices: Mapping[int, PracticeEntry], language: str) -> None:
    """Of versions of one practice in several languages, keep the one in ``language`` (else the first to come);
    it names the others. A version whose language is unknown is never left out: it could not be named."""
    groups: dict[str, list[NewMembership]] = defaultdict(list)
    for membership in chosen.values():
        practice = practices[membership.practice_id]
        if practice.group is not None and practice.language:
            groups[practice.group].append(membership)
    mine = frozenset({language})
    for members in groups.values():
        if len(members) > 1:
            keep = min(members, key=lambda m: (not wanted(practices[m.practice_id].language or "", mine), m.id))
            for membership in members:
                if membership is not keep:
                    del chosen[membership.practice_id]
