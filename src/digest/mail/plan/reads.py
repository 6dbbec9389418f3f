"""What one planning run reads and composes: the new memberships, their practices (with their versions in other
languages), what each subscriber was given already (the ledger), and each distinct digest composed once
(``PlanningContext``). ``digest.mail.plan.planner`` runs the batches; ``digest.mail.plan.compose`` is the pure
choice."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import ColumnElement, func, select, text
from sqlalchemy.orm import Session

from digest.mail.plan.compose import (
    DigestContent,
    NewMembership,
    NewMemberships,
    PracticeEntry,
    ThemeInfo,
    Version,
    compose,
)
from digest.schedules.slots import Choice, Defaults, schedule_of, slot_key
from digest.store import translations
from digest.store.db import MEMBERSHIP_LOCK, one_of
from digest.store.models import ContentPractice, Digest, Membership, Practice, Subscriber, Subscription, Theme
from digest.store.states import SubscriberStatus
from digest.text.i18n import DEFAULT
from digest.text.links import safe_link


def load_new_memberships(session: Session, after: int, upto: int) -> NewMemberships:
    new = NewMemberships()
    rows = session.execute(
        select(Membership.id, Membership.practice_id, Membership.theme_id)
        .where(Membership.id > after, Membership.id <= upto)
        .order_by(Membership.id)
    )
    for row in rows:
        new.by_theme.setdefault(row.theme_id, []).append(NewMembership(row.id, row.practice_id, row.theme_id))
        new.ids_by_theme.setdefault(row.theme_id, []).append(row.id)
    return new


def load_practices(session: Session, ids: set[int], added: Mapping[int, datetime]) -> dict[int, PracticeEntry]:
    out: dict[int, PracticeEntry] = {}
    id_list = sorted(ids)
    for start in range(0, len(id_list), 500):
        chunk = id_list[start : start + 500]
        names: dict[int, list[str]] = defaultdict(list)
        for practice_id, name in session.execute(
            select(Membership.practice_id, Theme.name)
            .join(Theme, Theme.id == Membership.theme_id)
            .where(Membership.practice_id.in_(chunk))
            .order_by(Membership.id)
        ):
            names[practice_id].append(name)
        for p in session.scalars(select(Practice).where(Practice.id.in_(chunk))):
            out[p.id] = PracticeEntry(
                p.id,
                p.uid,
                p.title,
                p.summary,
                safe_link(p.url),
                p.submitted_by,
                added[p.id].isoformat(),
                p.summary_html,
                tuple(names[p.id]),
                p.language,
            )
    return with_versions(session, out)


def with_versions(session: Session, practices: dict[int, PracticeEntry]) -> dict[int, PracticeEntry]:
    """Each practice its source links to versions in other languages, with those versions (their language, page and
    title) and the group they share: a digest lists one version and names the others."""
    groups = translations.versions(session, list(practices))
    members = sorted({m for group in groups.values() for m in group})
    known: dict[int, Version] = {}
    for start in range(0, len(members), 500):
        chunk = members[start : start + 500]
        for row in session.execute(
            select(Practice.id, Practice.uid, Practice.url, Practice.title, Practice.language).where(
                Practice.id.in_(chunk)
            )
        ):
            known[row.id] = Version(row.uid, safe_link(row.url), row.title, row.language)
    for practice_id, group in groups.items():
        others = tuple(known[m] for m in sorted(group - {practice_id}) if m in known and known[m].language)
        practices[practice_id] = replace(
            practices[practice_id], group=min(known[m].uid for m in group if m in known), versions=others
        )
    return practices


@dataclass(frozen=True)
class Frozen:
    """A digest's content, its JSON (stored once in `contents`), its key (content_key) and what it gives: the
    (practice, theme, summarised) rows of the ledger."""

    content: DigestContent
    body: str
    hash: str
    rows: list[tuple[int, int, bool]]


def content_key(body: str, rows: Sequence[tuple[int, int, bool]]) -> str:
    """A content's key: the SHA-256 of its JSON and of what it gives. Two digests with the same JSON may have
    counted different practices past the cap; with the rows in the key, everyone carrying one content was
    given the same practices (migration 0011 keeps its own copy of this)."""
    given = json.dumps([[p, t, bool(s)] for p, t, s in rows], separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8") + b"\n" + given.encode()).hexdigest()


def given_to(
    session: Session, subscriber_ids: Sequence[int], practices: Sequence[int] | None = None
) -> dict[int, set[int]]:
    """The practices each subscriber was given (of ``practices``, when named), in any digest planned for them:
    the ledger, read through their digests' contents. In two steps, the contents of their digests and then what
    those give, rather than one join a database may start from the practice's side (every digest of a popular
    content)."""
    carried: dict[str, list[int]] = defaultdict(list)
    for subscriber_id, content_hash in session.execute(
        select(Digest.subscriber_id, Digest.content_hash).where(one_of(session, Digest.subscriber_id, subscriber_ids))
    ):
        carried[content_hash].append(subscriber_id)
    given: dict[int, set[int]] = defaultdict(set)
    hashes = list(carried)
    for start in range(0, len(hashes), 500):
        query = select(ContentPractice.content_hash, ContentPractice.practice_id).where(
            one_of(session, ContentPractice.content_hash, hashes[start : start + 500])
        )
        if practices is not None:
            query = query.where(one_of(session, ContentPractice.practice_id, practices))
        for content_hash, practice_id in session.execute(query):
            for subscriber_id in carried[content_hash]:
                given[subscriber_id].add(practice_id)
    return given


_MISSING = object()


@dataclass(frozen=True)
class Wanted:
    """What shapes a subscriber's digest besides their themes and ledger: the cap on practices listed, the
    languages of the practices they want (empty: all) and the language the digest is written in."""

    cap: int | None = None
    languages: frozenset[str] = frozenset()
    language: str = DEFAULT


class PlanningContext:
    """What every batch of one planning run shares: new memberships in (low, hwm], their practices, themes."""

    def __init__(self, session: Session, low: int, hwm: int) -> None:
        self.hwm = hwm
        self._slots: dict[Choice, tuple[str, datetime]] = {}
        self._frozen: dict[tuple[object, ...], Frozen | None | object] = {}
        self.new = load_new_memberships(session, low, hwm)
        added: dict[int, datetime] = {}
        for practice_id, added_at in session.execute(
            select(Membership.practice_id, Membership.added_at)
            .where(Membership.id > low, Membership.id <= hwm)
            .order_by(Membership.id)
        ):
            added.setdefault(practice_id, added_at)
        self.practices = load_practices(session, set(added), added)
        self.themes = {t.id: ThemeInfo(t.name, t.slug) for t in session.scalars(select(Theme))}

    @classmethod
    def for_run(cls, session: Session, due: ColumnElement[bool] | None = None) -> PlanningContext:
        """From the lowest cursor of the subscribers ``due`` (default: every confirmed one) to the newest
        membership now.

        On PostgreSQL the newest id is read once every ingest in progress has committed (they hold the shared
        form of this lock): ids come from a sequence before commit, so a cursor moved past an uncommitted
        membership would skip it for good. SQLite has one writer at a time, and no such gap.
        """
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MEMBERSHIP_LOCK})
        hwm = session.scalar(select(func.max(Membership.id))) or 0
        low = session.scalar(
            select(func.min(Subscription.cursor))
            .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
            .where(due if due is not None else Subscriber.status == SubscriberStatus.CONFIRMED)
        )
        return cls(session, low if low is not None else hwm, hwm)

    def slots(self, choice: Choice, defaults: Defaults, now: datetime) -> tuple[str, datetime]:
        """The key of the newest slot at or before ``now`` and the next slot after it, for a schedule; computed
        once per distinct schedule in a run (most subscribers share a handful)."""
        found = self._slots.get(choice)
        if found is None:
            schedule = schedule_of(choice, defaults)
            found = self._slots[choice] = (slot_key(schedule.last_at_or_before(now)), schedule.next_after(now))
        return found

    def compose_for(
        self, key: str, subscriptions: Sequence[tuple[int, int]], already_sent: set[int], wanted: Wanted
    ) -> tuple[DigestContent, list[tuple[int, int, bool]]] | None:
        return compose(
            key,
            subscriptions,
            self.new,
            already_sent,
            self.practices,
            self.themes,
            wanted.cap,
            wanted.languages,
            wanted.language,
        )

    def frozen_for(
        self, key: str, subscriptions: Sequence[tuple[int, int]], already_sent: set[int], wanted: Wanted
    ) -> Frozen | None:
        """compose_for, frozen (JSON and its hash), computed once for everyone with the same themes, cursors,
        ledger and wants in a slot: most subscribers share a handful of digests. The memo is bounded."""
        memo_key = (key, tuple(sorted(subscriptions)), frozenset(already_sent), wanted)
        found = self._frozen.get(memo_key, _MISSING)
        if found is _MISSING:
            result = self.compose_for(key, subscriptions, already_sent, wanted)
            if result is None:
                found = None
            else:
                body = result[0].to_json()
                found = Frozen(result[0], body, content_key(body, result[1]), result[1])
            if len(self._frozen) >= 4096:
                self._frozen.pop(next(iter(self._frozen)))
            self._frozen[memo_key] = found
        return found  # type: ignore[return-value]
