"""Planning: a digest for each subscriber who is due, its content frozen and its Message-ID fixed up front.

Each subscriber has a schedule (digest.schedules.slots) and the instant their next digest is due. A run plans
only those due (an indexed read, so its cost grows with them, not with every subscriber), in batches, one
transaction per batch: the digest (keyed by subscriber and slot, so planning twice plans once), its content (once
per distinct content, with what it gives: the ledger), the cursors moved, and the next due time set to their
first slot after now. After downtime that is one digest with everything new, never a burst. What goes in a
digest (``digest.mail.plan.compose``) is a pure function; what a run reads and composes is ``digest.mail.plan.reads``.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from digest import metrics
from digest.config import Settings
from digest.mail.plan.compose import DigestContent
from digest.mail.plan.reads import Frozen, PlanningContext, Wanted, given_to
from digest.schedules.defaults import defaults_from
from digest.schedules.slots import Choice, Defaults, Schedule, choice_of, schedule_of, slot_key
from digest.store.db import one_of, transaction
from digest.store.digests import Planned, refresh_statistics, set_next_due, store_planned
from digest.store.models import (
    Digest,
    Membership,
    Subscriber,
    Subscription,
    due,
)
from digest.store.states import WAITING, SubscriberStatus
from digest.text.i18n import DEFAULT
from digest.text.languages import parse_tags


@dataclass(frozen=True)
class PlanPolicy:
    """What planning needs from settings."""

    defaults: Defaults
    id_domain: str
    batch_size: int = 500
    cap: int = 50
    # The language of digests to subscribers who chose none.
    language: str = DEFAULT

    @classmethod
    def from_settings(cls, settings: Settings) -> PlanPolicy:
        return cls(
            defaults_from(settings),
            settings.id_domain,
            settings.batch_size,
            settings.max_practices_per_digest,
            settings.default_language,
        )

    def wanted_by(self, practice_languages: str | None, language: str | None) -> Wanted:
        """What shapes a subscriber's digest besides their themes, from their row."""
        return Wanted(self.cap, parse_tags(practice_languages), language or self.language)


@dataclass
class PlanReport:
    """What one planning run did."""

    # Subscribers due, planned (a digest with something new), and due with nothing new (no digest).
    due: int = 0
    planned: int = 0
    empty: int = 0
    # Subscribers given their first due time (newly confirmed, or stored before schedules existed).
    placed: int = 0


def new_message_id(key: str, subscriber_id: int, domain: str) -> str:
    return f"<digest.{key}.{subscriber_id}.{secrets.token_hex(8)}@{domain}>"


def _legacy_key(last_period: str, slot: datetime, schedule: Schedule) -> str:
    """The key the weekly planner of before would have given ``slot`` (a local date, or date and time)."""
    local = slot.astimezone(schedule.zone)
    return local.strftime("%Y-%m-%dT%H:%M") if "T" in last_period else local.date().isoformat()


def first_due(
    schedule: Schedule, last_period: str | None, now: datetime, confirmed_at: datetime | None = None
) -> datetime:
    """Where a subscriber with no due time yet is placed: their first slot after they confirmed (due at once if
    planning runs late), so their first digest comes when their schedule says, never once at once for a slot
    that passed before they came and again hours later. A subscriber from before per-subscriber schedules (a
    ``last_period``): their newest slot, unless that weekly digest already covered it: then their next slot.
    Those who have something waiting at once (a welcome backfill, the config's fixed subscribers) are placed
    when confirmed, not here."""
    return FirstSlots(schedule, now).first(last_period, confirmed_at)


class FirstSlots:
    """One schedule's slots around ``now``, worked out once for everyone on that schedule placed in a run (a slot
    computation costs tens of microseconds; a run may place a million subscribers)."""

    def __init__(self, schedule: Schedule, now: datetime) -> None:
        self.schedule, self.now = schedule, now
        self._last: datetime | None = None
        self._next: datetime | None = None

    @property
    def last(self) -> datetime:
        if self._last is None:
            self._last = self.schedule.last_at_or_before(self.now)
        return self._last

    @property
    def next(self) -> datetime:
        if self._next is None:
            self._next = self.schedule.next_after(self.now)
        return self._next

    def first(self, last_period: str | None, confirmed_at: datetime | None) -> datetime:
        """``first_due`` for one subscriber. Confirmed before the newest slot (or at a time the store does not
        know: rows written by hand or long ago): their first slot has passed, due at once (the newest slot says so
        as well as any); confirmed since: the next slot."""
        if last_period is None:
            if confirmed_at is not None and confirmed_at > self.now:
                return self.schedule.next_after(confirmed_at)  # a clock behind the confirmation's: rare
            if confirmed_at is None or confirmed_at < self.last:
                return self.last
            return self.next
        if last_period >= _legacy_key(last_period, self.last, self.schedule):
            return self.next
        return self.last


def first_digest_at(schedule: Schedule, subscriber: Subscriber, now: datetime) -> datetime | None:
    """When a subscriber just confirmed gets their first digest, in their zone; None when at once (a welcome
    backfill, a fixed recipient): what the confirmation page and the welcome mail promise, and planning does."""
    first = subscriber.next_due_at or first_due(schedule, None, now, subscriber.confirmed_at)
    return first.astimezone(schedule.zone) if first > now else None


def subscriber_batches(
    factory: sessionmaker[Session],
    columns: Sequence[Any],
    condition: ColumnElement[bool],
    size: int,
    first: int | None = None,
) -> Iterator[tuple[Session, Sequence[Row[Any]]]]:
    """Subscribers matching ``condition``, in id order, a batch per transaction (committed when the caller asks for
    the next); the first batch of ``first`` when given (smaller: what waits for it starts sooner). Each batch reads
    on from where the last ended, never again what was done before it; on PostgreSQL it holds its rows FOR UPDATE
    SKIP LOCKED, so several planners (senders starting together, on several hosts) share the work and no two update
    the same subscribers (in different orders: a deadlock)."""
    last_id = 0
    batch = min(size, first or size)
    while True:
        with transaction(factory) as session:
            query = select(*columns).where(condition, Subscriber.id > last_id).order_by(Subscriber.id).limit(batch)
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True, of=Subscriber)
            rows = session.execute(query).all()
            if not rows:
                return
            yield session, rows
            last_id, batch = rows[-1].id, size


# Subscribers in a run's first planning batch (then batch_size a batch).
FIRST_BATCH = 50
# A subscriber's id and schedule, as batches of subscribers are read (choice_of reads the rest).
SCHEDULE_COLUMNS = (Subscriber.id, Subscriber.frequency, Subscriber.day, Subscriber.hour, Subscriber.timezone)


def place_unscheduled(factory: sessionmaker[Session], policy: PlanPolicy, now: datetime) -> int:
    """Give every confirmed subscriber without a due time one (see ``first_due``); return how many."""
    placed = 0
    columns = (*SCHEDULE_COLUMNS, Subscriber.last_period, Subscriber.confirmed_at)
    unplaced = and_(Subscriber.status == SubscriberStatus.CONFIRMED, Subscriber.next_due_at.is_(None))
    for session, rows in subscriber_batches(factory, columns, unplaced, policy.batch_size):
        # Most subscribers share a few choices: each schedule's slots around now are worked out once.
        slots: dict[Choice, FirstSlots] = {}
        due_at = {}
        for r in rows:
            choice = choice_of(r)
            found = slots.get(choice)
            if found is None:
                found = slots[choice] = FirstSlots(schedule_of(choice, policy.defaults), now)
            due_at[r.id] = found.first(r.last_period, r.confirmed_at)
        set_next_due(session, due_at)
        placed += len(rows)
    return placed


def plan_due(factory: sessionmaker[Session], policy: PlanPolicy, now: datetime) -> PlanReport:
    """Plan a digest for every subscriber due at ``now``; a subscriber with nothing new gets none.

    One transaction per batch: a crash loses at most the batch in progress, which the next run plans again
    (its subscribers are still due, their cursors unmoved).
    """
    report = PlanReport(placed=place_unscheduled(factory, policy, now))
    now_due = due(now)
    with factory() as session:
        report.due = session.scalar(select(func.count()).select_from(Subscriber).where(now_due)) or 0
        if not report.due:
            return report
        context = PlanningContext.for_run(session, now_due)
    columns = (*SCHEDULE_COLUMNS, Subscriber.practice_languages, Subscriber.language)
    # The first batch small: senders forked beside this run (digest send --processes N) wait for what it commits.
    batches = subscriber_batches(factory, columns, now_due, policy.batch_size, first=FIRST_BATCH)
    for session, rows in batches:
        with metrics.PLAN_BATCH_SECONDS.time():
            _plan_batch(session, rows, context, policy, now, report)
    if report.planned >= 1000:
        refresh_statistics(factory)
    return report


def _plan_batch(
    session: Session,
    rows: Sequence[Any],
    context: PlanningContext,
    policy: PlanPolicy,
    now: datetime,
    report: PlanReport,
) -> None:
    ids = [r.id for r in rows]
    subscriptions: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for sub_id, theme_id, cursor in session.execute(
        select(Subscription.subscriber_id, Subscription.theme_id, Subscription.cursor).where(
            one_of(session, Subscription.subscriber_id, ids)
        )
    ):
        subscriptions[sub_id].append((theme_id, cursor))
    sent = given_to(session, ids, list(context.practices)) if context.practices else defaultdict(set)
    planned: list[tuple[int, str, Frozen]] = []
    next_due: dict[int, datetime] = {}
    for row in rows:
        key, due_next = context.slots(choice_of(row), policy.defaults, now)
        next_due[row.id] = due_next
        wanted = policy.wanted_by(row.practice_languages, row.language)
        frozen = context.frozen_for(key, subscriptions[row.id], sent[row.id], wanted)
        if frozen is None:
            report.empty += 1
        else:
            planned.append((row.id, key, frozen))
    if planned:
        contents = {f.hash: (f.body, f.rows) for _, _, f in planned}
        digests = [
            Planned(subscriber_id, key, new_message_id(key, subscriber_id, policy.id_domain), f.content.subject, f.hash)
            for subscriber_id, key, f in planned
        ]
        count = store_planned(session, contents, digests, now)
        report.planned += count
        metrics.PLANNED.inc(count)
    set_next_due(session, next_due)
    session.execute(
        update(Subscription)
        .where(one_of(session, Subscription.subscriber_id, ids), Subscription.cursor < context.hwm)
        .values(cursor=context.hwm),
        execution_options={"synchronize_session": False},  # the batch read columns, not Subscription objects
    )


def preview_content(
    session: Session, subscriber: Subscriber, policy: PlanPolicy, now: datetime
) -> DigestContent | None:
    """What the subscriber's next digest holds: the planned one not yet sent, else what planning would give."""
    pending = session.scalar(
        select(Digest).where(Digest.subscriber_id == subscriber.id, Digest.status.in_(WAITING)).order_by(Digest.id)
    )
    if pending is not None:
        return DigestContent.from_json(pending.content)
    hwm = session.scalar(select(func.max(Membership.id))) or 0
    subscriptions = [(s.theme_id, s.cursor) for s in subscriber.subscriptions]
    context = PlanningContext(session, min((c for _, c in subscriptions), default=hwm), hwm)
    sent = given_to(session, [subscriber.id])[subscriber.id]
    schedule = schedule_of(choice_of(subscriber), policy.defaults)
    wanted = policy.wanted_by(subscriber.practice_languages, subscriber.language)
    result = context.compose_for(slot_key(schedule.next_after(now)), subscriptions, sent, wanted)
    return result[0] if result else None
