"""Atom feeds (RFC 4287) with feedgen: one per theme and one for all practices, byte-identical when unchanged."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

from feedgen.feed import FeedGenerator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest import __version__, logs
from digest.config import Settings
from digest.store.models import Membership, Practice, Theme
from digest.text.clean import strip_unsafe
from digest.text.links import safe_link

ALL = "all"
events = logs.EventLog(__name__)


@dataclass(frozen=True)
class FeedEntry:
    practice: Practice
    added_at: datetime


@dataclass(frozen=True)
class FeedResult:
    path: str
    entries: int
    changed: bool
    # Why this feed was not written (the others were); None when it was.
    error: str | None = None


def tag_uri(settings: Settings, specific: str) -> str:
    """A permanent id (RFC 4151) from the configured domain and date: never from a title or a URL."""
    return f"tag:{settings.id_domain},{settings.id_date}:{specific}"


def feed_filename(slug: str) -> str:
    # A theme slugged "all" must not overwrite the feed of all practices.
    return f"{slug}.atom" if slug != ALL else "theme-all.atom"


def newest_change(entries: list[FeedEntry], fallback: datetime) -> datetime:
    """The feed's updated time: its newest entry's addition or change."""
    return max((max(e.added_at, e.practice.updated_at) for e in entries), default=fallback)


@dataclass(frozen=True)
class FeedDocument:
    data: bytes
    updated: datetime


def render_feed(
    settings: Settings, specific_id: str, title: str, filename: str, entries: list[FeedEntry], fallback: datetime
) -> bytes:
    """The Atom document; a pure function of its arguments (no clock), so unchanged input gives the same bytes."""
    fg = FeedGenerator()
    fg.id(tag_uri(settings, specific_id))
    fg.title(strip_unsafe(title))
    fg.author({"name": settings.feed_author})
    fg.link(href=f"{settings.base_url}/feeds/{filename}", rel="self", type="application/atom+xml")
    fg.generator("digest", version=__version__)
    fg.language("en")
    fg.updated(newest_change(entries, fallback))
    for entry in entries:
        practice = entry.practice
        fe = fg.add_entry(order="append")
        fe.id(tag_uri(settings, f"practice/{practice.uid}"))
        # Stored text is clean since ingest vets it; rows from before are cleaned here, so XML never breaks.
        fe.title(strip_unsafe(practice.title) or "Untitled practice")
        fe.updated(max(entry.added_at, practice.updated_at))
        fe.published(entry.added_at)
        author = strip_unsafe(practice.submitted_by or "").strip()
        if author:
            fe.author({"name": author})
        link = safe_link(practice.url)
        if link:
            fe.link(href=link, rel="alternate")
        fe.content(strip_unsafe(practice.summary or practice.title) or "-", type="text")
    result: bytes = fg.atom_str(pretty=True, encoding="UTF-8")
    return result


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write atomically (temp file, fsync, rename) unless the file already holds exactly these bytes."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


def _theme_entries(session: Session, theme_id: int, limit: int) -> list[FeedEntry]:
    rows = session.execute(
        select(Practice, Membership.added_at)
        .join(Membership, Membership.practice_id == Practice.id)
        .where(Membership.theme_id == theme_id)
        .order_by(Membership.id.desc())
        .limit(limit)
    )
    return [FeedEntry(row[0], row[1]) for row in rows]


def _all_entries(session: Session, limit: int) -> list[FeedEntry]:
    first = (
        select(
            Membership.practice_id,
            func.min(Membership.id).label("first_id"),
            func.min(Membership.added_at).label("added"),
        )
        .group_by(Membership.practice_id)
        .subquery()
    )
    rows = session.execute(
        select(Practice, first.c.added)
        .join(first, first.c.practice_id == Practice.id)
        .order_by(first.c.first_id.desc())
        .limit(limit)
    )
    return [FeedEntry(row[0], row[1]) for row in rows]


def _write_feed(path: Path, entries: int, render: Callable[[], bytes]) -> FeedResult:
    """Render and write one feed; whatever fails is that feed's failure, logged, and the next feed is built."""
    try:
        return FeedResult(str(path), entries, write_if_changed(path, render()))
    except Exception as e:  # one feed that cannot be built stops no other
        events("feed.failed", logging.ERROR, exc_info=True, path=str(path))
        return FeedResult(str(path), entries, False, f"{path}: not written: {type(e).__name__}: {e}")


def feed_by_filename(session: Session, settings: Settings, filename: str) -> FeedDocument | None:
    """The feed written to ``filename`` by build_feeds, rendered from the store now (the web app serves these);
    None when no theme has that name. Same bytes as the file for the same store."""
    limit = settings.feed_max_entries
    if filename == f"{ALL}.atom":
        epoch = datetime.fromisoformat(settings.id_date + "T00:00:00+00:00")
        entries = _all_entries(session, limit)
        data = render_feed(settings, "all", "All practices", filename, entries, epoch)
        return FeedDocument(data, newest_change(entries, epoch))
    slug = ALL if filename == feed_filename(ALL) else filename.removesuffix(".atom")
    theme = session.scalar(select(Theme).where(Theme.slug == slug))
    if theme is None or feed_filename(theme.slug) != filename:
        return None
    entries = _theme_entries(session, theme.id, limit)
    data = render_feed(settings, f"theme/{theme.slug}", theme.name, filename, entries, theme.created_at)
    return FeedDocument(data, newest_change(entries, theme.created_at))


def build_feeds(session: Session, settings: Settings) -> list[FeedResult]:
    """Write every theme's feed and the feed of all practices into feeds_dir; report what changed or failed."""
    out_dir = Path(settings.feeds_dir)
    results = []
    limit = settings.feed_max_entries
    for theme in session.scalars(select(Theme).order_by(Theme.slug)):
        entries = _theme_entries(session, theme.id, limit)
        filename = feed_filename(theme.slug)
        results.append(
            _write_feed(
                out_dir / filename,
                len(entries),
                partial(render_feed, settings, f"theme/{theme.slug}", theme.name, filename, entries, theme.created_at),
            )
        )
    entries = _all_entries(session, limit)
    epoch = datetime.fromisoformat(settings.id_date + "T00:00:00+00:00")
    results.append(
        _write_feed(
            out_dir / f"{ALL}.atom",
            len(entries),
            partial(render_feed, settings, "all", "All practices", f"{ALL}.atom", entries, epoch),
        )
    )
    return results
