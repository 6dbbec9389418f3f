"""Storing parsed items: one practice per identity, whichever source names it, with its theme memberships."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from digest.errors import SourceError
from digest.ingest.items import ParsedItem, ParsedSource, Problem
from digest.ingest.vet import vet
from digest.store import outbox, translations
from digest.store.models import Membership, Practice, PracticeKey, Theme
from digest.store.themes import ThemeCache, touch
from digest.text.clean import fingerprint, sha, title_form
from digest.text.links import redact_url

CHUNK = 500


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
    # Items left out (no title, bad themes...): the source is stored, but not all of it.
    rejected: list[Problem] = field(default_factory=list)
    # True when the server said nothing changed since the last fetch (HTTP 304): nothing was parsed.
    not_modified: bool = False
    error: str | None = None
    hint: str = ""
    # The source is gone for good (HTTP 410): no run fetches it again.
    gone: bool = False
    # The practices its items are stored as, in item order (a new one, or the one it matched).
    practice_ids: list[int] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """The whole source is in the store: it was read and no item was left out."""
        return self.error is None and not self.rejected

    def as_dict(self) -> dict[str, object]:
        def listed(problems: list[Problem]) -> list[dict[str, str]]:
            return [{"where": p.where, "title": p.title, "reason": p.reason} for p in problems]

        return {
            "source": self.source,
            "ok": self.ok,
            "not_modified": self.not_modified,
            "themes": self.themes,
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "joined": self.joined,
            "problems": listed(self.problems),
            "rejected": listed(self.rejected),
            "error": self.error,
            "hint": self.hint or None,
        }


def identity_keys(item: ParsedItem) -> list[str]:
    """Every identity an item can be known by, strongest first: guid, URL, fingerprint of its text with the
    exact form of its title, fingerprint of its text.

    The fingerprint ignores punctuation and symbols, so two titles may share one ("C++ in schools", "C in
    schools"); the titled key tells them apart, the plain one still finds practices stored before it existed.
    """
    keys = []
    if item.guid:
        keys.append(f"guid:{item.guid.strip()}")
    if item.url:
        keys.append(f"url:{item.url.strip()}")
    first_paragraph = item.summary.split("\n\n", 1)[0]
    text = "text:" + fingerprint("" if item.title_derived else item.title, first_paragraph)
    if not item.title_derived:
        keys.append(f"{text}/{sha(title_form(item.title))[:16]}")
    keys.append(text)
    return keys


def identity_of(item: ParsedItem) -> str:
    """What makes a practice itself: its guid, else its URL, else a fingerprint of its text."""
    return identity_keys(item)[0]


def key_of(identity: str) -> str:
    """The stored form of an identity (also the uid of the practice first known by it)."""
    return sha(identity)[:40]


def _reference_keys(references: list[str]) -> set[str]:
    """The keys a practice named by URL or id (a feed's guid, an export's id) is stored under."""
    return {key_of(f"{kind}:{ref.strip()}") for ref in references for kind in ("guid", "url")}


def _known(session: Session, keys: list[str]) -> dict[str, int]:
    """Practice ids by stored key, for the keys already in the store."""
    found: dict[str, int] = {}
    for start in range(0, len(keys), CHUNK):
        rows = session.execute(
            select(PracticeKey.key, PracticeKey.practice_id).where(PracticeKey.key.in_(keys[start : start + CHUNK]))
        )
        found.update((row[0], row[1]) for row in rows)
    return found


def _load(session: Session, ids: list[int]) -> tuple[dict[int, Practice], set[tuple[int, int]]]:
    practices: dict[int, Practice] = {}
    memberships: set[tuple[int, int]] = set()
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        practices.update((p.id, p) for p in session.scalars(select(Practice).where(Practice.id.in_(chunk))))
        rows = session.execute(
            select(Membership.practice_id, Membership.theme_id).where(Membership.practice_id.in_(chunk))
        )
        memberships.update((row[0], row[1]) for row in rows)
    return practices, memberships


def _match(
    keys: list[str],
    known: dict[str, int],
    practices: dict[int, Practice],
    pending: dict[str, Practice],
    item: ParsedItem,
) -> Practice | None:
    """The practice an item's keys lead to.

    Its text alone never joins it to a practice known by another guid, nor to one whose title differs in more
    than case and spacing (the fingerprint ignores punctuation and symbols: "C++ in schools" and "C in
    schools" share one).
    """
    strong = bool(item.guid or item.url)
    first_text = len(keys) - (1 if item.title_derived else 2)
    for n, k in enumerate(keys):
        found = practices[known[k]] if k in known else pending.get(k)
        if found is None:
            continue
        if n >= first_text and strong and not found.identity.startswith("text:"):
            continue
        if n == len(keys) - 1:
            both_titled = not item.title_derived and not found.title_derived
            if both_titled and title_form(found.title) != title_form(item.title):
                return None
        return found
    return None


def _new_practice(item: ParsedItem, identity: str, content_hash: str, now: datetime) -> Practice:
    return Practice(
        uid=key_of(identity),
        identity=identity,
        title=item.title,
        title_derived=item.title_derived,
        summary=item.summary,
        summary_html=item.summary_html,
        url=item.url,
        submitted_by=item.submitted_by,
        published_at=item.published_at,
        language=item.language,
        first_seen_at=now,
        updated_at=now,
        content_hash=content_hash,
    )


def _update(practice: Practice, item: ParsedItem, content_hash: str, now: datetime) -> None:
    practice.title, practice.title_derived = item.title, item.title_derived
    practice.summary, practice.summary_html = item.summary, item.summary_html
    practice.content_hash, practice.updated_at = content_hash, now
    practice.url = item.url or practice.url
    practice.submitted_by = item.submitted_by or practice.submitted_by
    practice.published_at = item.published_at or practice.published_at
    practice.language = item.language or practice.language


def store_parsed(
    session: Session,
    parsed: ParsedSource,
    source: str,
    now: datetime,
    theme: str | None = None,
    advance: Callable[[int], None] | None = None,
) -> IngestReport:
    """Store parsed items in the session's transaction: new practices, updates, and theme memberships.

    An item is the practice stored under any of its keys (guid, URL, text), so a listing page and the feed of
    the same theme give one practice. An item seen again with new text updates it without making it new.
    """
    report = IngestReport(source=source, problems=list(parsed.problems), rejected=list(parsed.rejected))
    themes = ThemeCache(session)
    named = theme or parsed.theme
    default_themes = [named] if named else []

    if not default_themes and parsed.items and not any(item.themes for item in parsed.items):
        raise SourceError(
            f"{source}: no theme for its items (first: {parsed.items[0].where}, {parsed.items[0].title!r})",
            "name the theme with --theme, or in the source's config entry",
        )
    for item in parsed.items:
        report.problems.extend(vet(item))
    # Each item's identities (strongest first) and their stored keys, computed once.
    keyed = [(ids, [key_of(k) for k in ids], item) for item, ids in ((i, identity_keys(i)) for i in parsed.items)]
    known = _known(session, sorted({k for _, keys, _ in keyed for k in keys}))
    practices, memberships = _load(session, sorted(set(known.values())))

    # First pass: find or create each item's practice; new ones are inserted in one flush.
    seen: dict[int, str] = {}
    placed: list[tuple[Practice, ParsedItem, bool]] = []
    pending: dict[str, Practice] = {}
    changed: set[int] = set()
    for identities, keys, item in keyed:
        names = item.themes or default_themes
        if not names:
            report.rejected.append(
                Problem(item.where, item.title, "no theme; name it with --theme or in the source's config entry")
            )
            continue
        content_hash = sha(item.title + "\n" + item.summary + "\n" + (item.summary_html or ""))
        practice = _match(keys, known, practices, pending, item)
        if practice is not None and id(practice) in seen:
            if seen[id(practice)] != content_hash:
                report.problems.append(
                    Problem(
                        item.where, item.title, "same identity as an earlier item, with different text; kept the first"
                    )
                )
            continue
        created = practice is None
        if practice is None:
            practice = _new_practice(item, identities[0], content_hash, now)
            session.add(practice)
            report.new += 1
        elif not (item.guid or item.url) and not practice.identity.startswith("text:"):
            # A text-only view (a listing page) of a practice its feed describes better: it only adds themes.
            report.unchanged += 1
        elif practice.content_hash != content_hash:
            if (item.guid or item.url) and practice.identity.startswith("text:"):
                practice.identity = identities[0]  # the feed found it: known by its guid from now on
            _update(practice, item, content_hash, now)
            changed.add(practice.id)
            report.updated += 1
        else:
            report.unchanged += 1
            if item.language and practice.language != item.language:
                practice.language = item.language  # the source now says (or corrects) its language: feeds show it
                changed.add(practice.id)
        seen[id(practice)] = content_hash
        for k in keys:
            if k not in known:
                pending.setdefault(k, practice)
        placed.append((practice, item, created))
    session.flush()

    # Second pass: keys and memberships, now that every practice has an id; plain INSERTs in item order.
    if pending:
        session.execute(insert(PracticeKey), [{"key": k, "practice_id": p.id} for k, p in pending.items()])
    added: list[dict[str, object]] = []
    # The feeds of every theme a practice joined, and of every theme of a practice that changed, are new.
    touched: set[int] = set()
    # Items this run left as they were: what was said of them was said when they came (a cron job's mail).
    quiet: set[str] = set()
    for n, (practice, item, created) in enumerate(placed, 1):
        joined_any = False
        for name in item.themes or default_themes:
            theme_row = themes.get(name, now)
            if theme_row.name not in report.themes:
                report.themes.append(theme_row.name)
            if (practice.id, theme_row.id) not in memberships:
                added.append({"practice_id": practice.id, "theme_id": theme_row.id, "added_at": now})
                touched.add(theme_row.id)
                memberships.add((practice.id, theme_row.id))
                joined_any = True
        if joined_any and not created:
            report.joined += 1
        if not (created or joined_any or practice.id in changed):
            quiet.add(item.where)
        if advance is not None and n % 100 == 0:
            advance(100)
    if added:
        session.execute(insert(Membership), added)
    report.problems = [p for p in report.problems if p.where not in quiet]
    # Versions in other languages the source links (by URL or id): kept as the keys those are known by.
    translations.link(session, {p.id: _reference_keys(i.translations) for p, i, _ in placed if i.translations})
    ordered = sorted(changed)
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        touched.update(session.scalars(select(Membership.theme_id).where(Membership.practice_id.in_(chunk))))
    touch(session, touched, now)
    report.practice_ids = [practice.id for practice, _, _ in placed]
    # practice.added for the webhooks, in this same transaction (digest.store.outbox): each new practice, its themes.
    new = [practice for practice, _, created in placed if created]
    if new and outbox.wanted(session.connection(), "practice.added"):
        joined: dict[int, set[int]] = {}
        for row in added:
            joined.setdefault(int(str(row["practice_id"])), set()).add(int(str(row["theme_id"])))
        slugs = {theme_id: slug for theme_id, slug in session.execute(select(Theme.id, Theme.slug))}
        for practice in new:
            data = {
                "practice_id": practice.id,
                "title": practice.title,
                "url": practice.url,
                "language": practice.language,
                "themes": sorted(slugs[t] for t in joined.get(practice.id, set())),
                "source": redact_url(source),
            }
            outbox.emit(session.connection(), "practice.added", now, partial(_untied, data))
    if advance is not None:
        advance(len(placed) % 100)
    return report


def _untied(data: dict[str, object]) -> tuple[dict[str, object], str]:
    """An event's data about no subscriber (digest.store.outbox)."""
    return data, ""
