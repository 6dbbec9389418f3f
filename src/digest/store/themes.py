"""Themes by name: found by slug, created on first mention (ingest, seeded subscribers)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from digest.errors import SourceError
from digest.store.models import Theme
from digest.text.clean import clean_line, slugify

# Longest theme name kept (the column holds 300): longer ones are cut at a word.
MAX_THEME_NAME = 200


class ThemeCache:
    """Themes by slug for one unit of work; creates the ones that do not exist yet."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.by_slug: dict[str, Theme] = {}

    def get(self, name: str, now: datetime) -> Theme:
        name = clean_line(name)  # line breaks and tabs from a feed title become single spaces
        if not name:
            raise SourceError("a theme name is empty once cleaned", "name the theme with --theme")
        if len(name) > MAX_THEME_NAME:
            name = name[: MAX_THEME_NAME - 1].rsplit(" ", 1)[0].rstrip() + "…"
        slug = slugify(name)
        theme = self.by_slug.get(slug)
        if theme is None:
            theme = self.session.scalar(select(Theme).where(Theme.slug == slug))
            if theme is None:
                theme = Theme(name=name, slug=slug, created_at=now, changed_at=now)
                self.session.add(theme)
                self.session.flush()
            self.by_slug[slug] = theme
        return theme


def touch(session: Session, theme_ids: set[int], now: datetime) -> None:
    """Record that these themes' feeds changed (a practice joined, or one of theirs changed): their revision goes
    up and changed_at moves to ``now``. Called in the transaction that made the change."""
    if not theme_ids:
        return
    session.execute(
        update(Theme)
        .where(Theme.id.in_(sorted(theme_ids)))
        .values(revision=Theme.revision + 1, changed_at=now)
        .execution_options(synchronize_session=False)
    )
