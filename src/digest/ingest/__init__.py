"""Ingest: read a source, parse it by kind, and store one practice per identity with its theme memberships."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest.errors import DigestError, SourceError
from digest.ingest.items import ParsedItem, ParsedSource, Problem
from digest.ingest.listing import looks_like_listing, parse_listing
from digest.models import Membership, Practice, Theme
from digest.text import clean_line, fingerprint, sha, slugify

FORMATS = ("listing",)


@dataclass
class IngestReport:
    """What one source did to the store."""

    source: str
    themes: list[str] = field(default_factory=list)
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    # Practices already stored that joined one more theme (they are new in that theme).
    joined: int = 0
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None
    hint: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "themes": self.themes,
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "joined": self.joined,
            "problems": [{"where": p.where, "title": p.title, "reason": p.reason} for p in self.problems],
            "error": self.error,
        }


def decode(data: bytes, source: str) -> str:
    """UTF-8 (with or without BOM); else Windows-1252; else a SourceError naming the byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as utf8_error:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError as e:
            raise SourceError(
                f"{source}: not UTF-8 (byte {utf8_error.start}) nor Windows-1252 (byte {e.start})",
                "convert the file to UTF-8",
            ) from e


def parse_text(text: str, source: str, fmt: str | None = None) -> ParsedSource:
    """Parse text of the given kind, or of the kind it looks like."""
    if fmt not in (None, *FORMATS):
        raise SourceError(f"{source}: unknown format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    if fmt == "listing" or looks_like_listing(text):
        return parse_listing(text, source)
    raise SourceError(f"{source}: cannot tell what kind of source this is", f"give --format ({', '.join(FORMATS)})")


def read_source(location: str, fmt: str | None = None) -> ParsedSource:
    """Read and parse a source file."""
    path = Path(location)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SourceError(f"{location}: cannot read: {e.strerror}", "check the path") from e
    return parse_text(decode(data, location), location, fmt)


def identity_of(item: ParsedItem) -> str:
    """What makes a practice itself: its guid, else its URL, else a fingerprint of its text."""
    if item.guid:
        return f"guid:{item.guid.strip()}"
    if item.url:
        return f"url:{item.url.strip()}"
    first_paragraph = item.summary.split("\n\n", 1)[0]
    return "text:" + fingerprint("" if item.title_derived else item.title, first_paragraph)


class ThemeCache:
    """Themes by slug for one unit of work; creates the ones that do not exist yet."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.by_slug: dict[str, Theme] = {}

    def get(self, name: str, now: datetime) -> Theme:
        name = clean_line(name)
        if not name:
            raise SourceError("a theme name is empty", "name the theme with --theme")
        slug = slugify(name)
        theme = self.by_slug.get(slug)
        if theme is None:
            theme = self.session.scalar(select(Theme).where(Theme.slug == slug))
            if theme is None:
                theme = Theme(name=name[:300], slug=slug, created_at=now)
                self.session.add(theme)
                self.session.flush()
            self.by_slug[slug] = theme
        return theme


def store_parsed(
    session: Session, parsed: ParsedSource, source: str, now: datetime, theme: str | None = None
) -> IngestReport:
    """Store parsed items in the session's transaction: new practices, updates, and theme memberships."""
    report = IngestReport(source=source, problems=list(parsed.problems))
    themes = ThemeCache(session)
    named = theme or parsed.theme
    default_themes = [named] if named else []

    keyed = [(sha(identity_of(item))[:40], item) for item in parsed.items]
    existing: dict[str, Practice] = {}
    uids = [uid for uid, _ in keyed]
    for start in range(0, len(uids), 500):
        chunk = uids[start : start + 500]
        existing.update((p.uid, p) for p in session.scalars(select(Practice).where(Practice.uid.in_(chunk))))
    memberships: set[tuple[int, int]] = set()
    if existing:
        ids = [p.id for p in existing.values()]
        for start in range(0, len(ids), 500):
            rows = session.execute(
                select(Membership.practice_id, Membership.theme_id).where(
                    Membership.practice_id.in_(ids[start : start + 500])
                )
            )
            memberships.update((row[0], row[1]) for row in rows)

    seen: dict[str, str] = {}
    for uid, item in keyed:
        names = item.themes or default_themes
        if not names:
            raise SourceError(
                f"{source}: no theme for {item.where} ({item.title!r})",
                "name the theme with --theme, or in the source's config entry",
            )
        content_hash = sha(item.title + "\n" + item.summary)
        if uid in seen:
            if seen[uid] != content_hash:
                report.problems.append(
                    Problem(
                        item.where, item.title, "same identity as an earlier item, with different text; kept the first"
                    )
                )
            continue
        seen[uid] = content_hash
        practice = existing.get(uid)
        created = practice is None
        if practice is None:
            practice = Practice(
                uid=uid,
                identity=identity_of(item),
                title=item.title,
                title_derived=item.title_derived,
                summary=item.summary,
                url=item.url,
                submitted_by=item.submitted_by,
                published_at=item.published_at,
                first_seen_at=now,
                updated_at=now,
                content_hash=content_hash,
            )
            session.add(practice)
            session.flush()
            existing[uid] = practice
            report.new += 1
        elif practice.content_hash != content_hash:
            practice.title, practice.title_derived = item.title, item.title_derived
            practice.summary, practice.content_hash, practice.updated_at = item.summary, content_hash, now
            practice.url = item.url or practice.url
            practice.submitted_by = item.submitted_by or practice.submitted_by
            report.updated += 1
        else:
            report.unchanged += 1
        joined_any = False
        for name in names:
            theme_row = themes.get(name, now)
            if theme_row.name not in report.themes:
                report.themes.append(theme_row.name)
            if (practice.id, theme_row.id) not in memberships:
                session.add(Membership(practice_id=practice.id, theme_id=theme_row.id, added_at=now))
                memberships.add((practice.id, theme_row.id))
                joined_any = True
        if joined_any and not created:
            report.joined += 1
    session.flush()
    return report


def ingest_sources(
    session_factory: sessionmaker[Session],
    sources: list[tuple[str, str | None, str | None]],
    now: datetime,
) -> list[IngestReport]:
    """Ingest (location, theme, format) sources, each in its own transaction; one failing stops no other."""
    reports = []
    for location, theme, fmt in sources:
        try:
            parsed = read_source(location, fmt)
            with session_factory() as session, session.begin():
                reports.append(store_parsed(session, parsed, location, now, theme))
        except DigestError as e:
            reports.append(IngestReport(source=location, error=str(e), hint=e.hint))
    return reports
