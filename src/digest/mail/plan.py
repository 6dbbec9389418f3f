"""Planning: one digest per subscriber per period, its content frozen and its Message-ID fixed up front.

The choice of what goes in a digest (``digest.mail.compose``) is a pure function of its inputs; ``plan_period``
feeds it from the store in batches of subscribers and records the plans, one transaction per batch.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from digest.mail.compose import DigestContent, NewMembership, NewMemberships, PracticeEntry, ThemeInfo, compose
from digest.store.db import MEMBERSHIP_LOCK
from digest.store.models import Digest, LedgerEntry, Membership, Practice, Subscriber, Subscription, Theme
from digest.store.states import WAITING, DigestStatus, SubscriberStatus
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
        for p in session.scalars(select(Practice).where(Practice.id.in_(id_list[start : start + 500]))):
            out[p.id] = PracticeEntry(
                p.id, p.uid, p.title, p.summary, safe_link(p.url), p.submitted_by, added[p.id].isoformat(),
                p.summary_html,
            )
    return out


@dataclass
class PlanReport:
    period: str
    planned: int = 0
    empty: int = 0


def new_message_id(period: str, subscriber_id: int, domain: str) -> str:
    return f"<digest.{period}.{subscriber_id}.{secrets.token_hex(8)}@{domain}>"


def _due_subscribers(session: Session, period: str, after_id: int, limit: int) -> list[int]:
    """Ids of confirmed subscribers not yet planned for ``period``, in id order (keyset pagination)."""
    query = (
        select(Subscriber.id)
        .where(
            Subscriber.id > after_id,
            Subscriber.status == SubscriberStatus.CONFIRMED,
            (Subscriber.last_period.is_(None)) | (Subscriber.last_period < period),
        )
        .order_by(Subscriber.id)
        .limit(limit)
    )
    return list(session.scalars(query))


class PlanningContext:
    """What every batch of one planning run shares: new memberships in (low, hwm], their practices, themes."""

    def __init__(self, session: Session, low: int, hwm: int) -> None:
        self.hwm = hwm
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
    def for_run(cls, session: Session) -> PlanningContext:
        """From the lowest cursor of any confirmed subscriber to the newest membership now.

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
            .where(Subscriber.status == SubscriberStatus.CONFIRMED)
        )
        return cls(session, low if low is not None else hwm, hwm)

    def compose_for(
        self, period: str, subscriptions: Sequence[tuple[int, int]], already_sent: set[int]
    ) -> tuple[DigestContent, list[tuple[int, int]]] | None:
        return compose(period, subscriptions, self.new, already_sent, self.practices, self.themes)


def plan_period(
    factory: sessionmaker[Session], period: str, now: datetime, id_domain: str, batch_size: int
) -> PlanReport:
    """Plan every due subscriber's digest for ``period``; a subscriber with nothing new gets no digest.

    One transaction per batch: a crash loses at most the batch in progress, which the next run plans again.
    """
    report = PlanReport(period=period)
    with factory() as session:
        context = PlanningContext.for_run(session)
    last_id = 0
    while True:
        with factory() as session, session.begin():
            batch = _due_subscribers(session, period, last_id, batch_size)
            if not batch:
                return report
            _plan_batch(session, batch, context, period, now, id_domain, report)
            last_id = batch[-1]


def _plan_batch(
    session: Session,
    ids: list[int],
    context: PlanningContext,
    period: str,
    now: datetime,
    id_domain: str,
    report: PlanReport,
) -> None:
    subscriptions: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for sub_id, theme_id, cursor in session.execute(
        select(Subscription.subscriber_id, Subscription.theme_id, Subscription.cursor).where(
            Subscription.subscriber_id.in_(ids)
        )
    ):
        subscriptions[sub_id].append((theme_id, cursor))
    sent: dict[int, set[int]] = defaultdict(set)
    if context.practices:
        for sub_id, practice_id in session.execute(
            select(LedgerEntry.subscriber_id, LedgerEntry.practice_id).where(
                LedgerEntry.subscriber_id.in_(ids), LedgerEntry.practice_id.in_(list(context.practices))
            )
        ):
            sent[sub_id].add(practice_id)
    planned: list[tuple[int, DigestContent, list[tuple[int, int]]]] = []
    for subscriber_id in ids:
        result = context.compose_for(period, subscriptions[subscriber_id], sent[subscriber_id])
        if result is None:
            report.empty += 1
        else:
            planned.append((subscriber_id, *result))
    if planned:
        # One INSERT ... RETURNING for the batch's digests, one for their ledger rows: no flush per digest.
        digest_ids = dict(
            session.execute(
                insert(Digest).returning(Digest.subscriber_id, Digest.id, sort_by_parameter_order=True),
                [
                    {
                        "subscriber_id": subscriber_id,
                        "period": period,
                        "status": DigestStatus.PLANNED,
                        "message_id": new_message_id(period, subscriber_id, id_domain),
                        "subject": content.subject,
                        "content": content.to_json(),
                        "planned_at": now,
                        "attempts": 0,
                    }
                    for subscriber_id, content, _ in planned
                ],
            ).all()
        )
        session.execute(
            insert(LedgerEntry),
            [
                {"subscriber_id": sid, "practice_id": p, "digest_id": digest_ids[sid], "theme_id": t}
                for sid, _, pairs in planned
                for p, t in pairs
            ],
        )
        report.planned += len(planned)
    session.execute(update(Subscriber).where(Subscriber.id.in_(ids)).values(last_period=period))
    session.execute(
        update(Subscription)
        .where(Subscription.subscriber_id.in_(ids), Subscription.cursor < context.hwm)
        .values(cursor=context.hwm)
    )


def preview_content(session: Session, subscriber: Subscriber, period: str) -> DigestContent | None:
    """What the subscriber's next digest holds: the planned one not yet sent, else what planning would give."""
    pending = session.scalar(
        select(Digest)
        .where(Digest.subscriber_id == subscriber.id, Digest.status.in_(WAITING))
        .order_by(Digest.id)
    )
    if pending is not None:
        return DigestContent.from_json(pending.content)
    hwm = session.scalar(select(func.max(Membership.id))) or 0
    subscriptions = [(s.theme_id, s.cursor) for s in subscriber.subscriptions]
    context = PlanningContext(session, min((c for _, c in subscriptions), default=hwm), hwm)
    sent = set(session.scalars(select(LedgerEntry.practice_id).where(LedgerEntry.subscriber_id == subscriber.id)))
    result = context.compose_for(period, subscriptions, sent)
    return result[0] if result else None
