"""A digest's whole life in the store, in one place: planned (its content stored once, the digest inserted, the
subscriber's next due time), then claims, outcomes, hand-back, renewal, the sweep before a run, and the recorder's
grouped "sent" statements (each also counted in the `sent` tally, which the operator's figures read: by the
statement itself on PostgreSQL, by a trigger of migration 0016 elsewhere and for every other statement). Planning
(digest.mail.plan) and senders (digest.mail.send.delivery) decide; this module writes, each change in the
transaction its docstring names.

A digest is `sending` only between its claim and its outcome, held by one process (`claimed_by`); every outcome
is written only while the claim is still that process's own (an unsubscribe may have cancelled it meanwhile).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    any_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Update

from digest.store import outbox
from digest.store.bounces import at_transaction_key, count_hard_bounce, record
from digest.store.db import conflict_insert, id_array, one_of, transaction
from digest.store.models import Content, ContentPractice, Digest, Resend, Subscriber, sending, waiting
from digest.store.outbox import SentEvents
from digest.store.states import WAITING, BounceKind, DigestStatus, SubscriberStatus, UTCDateTime

# The setting of a connection whose statements add the digests they mark sent to the sent tally themselves: the
# trigger then leaves them out (migration 0028, PostgreSQL).
TALLY_SENT_BY_STATEMENT = "digest.tally_sent_by_statement"

# Planning ---------------------------------------------------------------------------------------------------------


class Planned(NamedTuple):
    """A digest as planning decided it: whose, for which slot, its fixed Message-ID and subject, its content."""

    subscriber_id: int
    period: str
    message_id: str
    subject: str
    content_hash: str


def store_planned(
    session: Session,
    contents: Mapping[str, tuple[str, Sequence[tuple[int, int, bool]]]],
    planned: Sequence[Planned],
    now: datetime,
) -> int:
    """A batch's plans, in the batch's transaction: each distinct content once with what it gives (practice,
    theme, summarised), a content already stored (an earlier batch, another planner) kept as it is; then one INSERT
    of the digests, where one some other planner already holds for that slot is passed over, never an error. How
    many digests were planned."""
    new = session.scalars(
        _insert_ignoring_conflicts(session, Content).returning(Content.hash),
        # In the order of their keys: planners inserting the same contents wait for each other in one order,
        # never in a circle.
        [{"hash": h, "body": contents[h][0], "created_at": now} for h in sorted(contents)],
    ).all()
    given = [
        {"content_hash": h, "position": n, "practice_id": p, "theme_id": t, "summarised": more}
        for h in new
        for n, (p, t, more) in enumerate(contents[h][1])
    ]
    postgresql = session.get_bind().dialect.name == "postgresql"
    if given and postgresql:
        session.execute(_UNNEST_GIVEN, {k: [g[k] for g in given] for k in given[0]})
    elif given:
        session.execute(insert(_table(ContentPractice)), given)
    if postgresql and planned:
        # One statement of five arrays, whatever the batch's size: parsed once and kept by psycopg, where a VALUES
        # list of thousands of parameters is parsed again for every batch. The ids go as an array literal, the
        # texts in PostgreSQL's binary array form (psycopg's %b): its text form quotes each element in Python.
        columns: dict[str, Any] = {name: [getattr(p, name) for p in planned] for name in Planned._fields}
        columns["subscriber_id"] = id_array(columns["subscriber_id"])
        when = UTCDateTime().process_bind_param(now, session.get_bind().dialect)
        values = columns | {"now": when, "status": DigestStatus.PLANNED.value}
        return int(session.connection().exec_driver_sql(_UNNEST_DIGESTS, values).rowcount)
    # One INSERT ... RETURNING for the batch: no flush per digest.
    rows = [p._asdict() | {"status": DigestStatus.PLANNED, "planned_at": now, "attempts": 0} for p in planned]
    return len(session.execute(_insert_ignoring_conflicts(session, Digest).returning(Digest.id), rows).all())


_UNNEST_DIGESTS = (
    "INSERT INTO digests (subscriber_id, period, message_id, subject, content_hash, status, planned_at, attempts) "
    "SELECT s, p, m, j, h, %(status)s, %(now)s, 0 FROM unnest(%(subscriber_id)s::integer[], %(period)b::text[], "
    "%(message_id)b::text[], %(subject)b::text[], %(content_hash)b::text[]) AS t(s, p, m, j, h) "
    "ON CONFLICT DO NOTHING"
)
_UNNEST_GIVEN = text(
    "INSERT INTO content_practices (content_hash, position, practice_id, theme_id, summarised) "
    "SELECT * FROM unnest(CAST(:content_hash AS text[]), CAST(:position AS integer[]), "
    "CAST(:practice_id AS integer[]), CAST(:theme_id AS integer[]), CAST(:summarised AS boolean[]))"
)


def set_next_due(session: Session, due: Mapping[int, datetime]) -> None:
    """Each subscriber's next due time: one UPDATE per distinct time (subscribers share a handful of schedules),
    not a statement per subscriber."""
    by_time: dict[datetime, list[int]] = defaultdict(list)
    for subscriber_id, when in due.items():
        by_time[when].append(subscriber_id)
    for when, ids in by_time.items():
        session.execute(
            update(Subscriber).where(one_of(session, Subscriber.id, ids)).values(next_due_at=when),
            execution_options={"synchronize_session": False},  # planning holds no Subscriber objects to refresh
        )


def refresh_statistics(factory: sessionmaker[Session]) -> None:
    """After a big planning run on PostgreSQL, ANALYZE what it grew (autovacuum would, later): the senders'
    queries are planned on fresh statistics instead of an empty-looking table."""
    with transaction(factory) as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("ANALYZE digests, contents, content_practices, subscribers, subscriptions"))


def _insert_ignoring_conflicts(session: Session, table: type[Digest] | type[Content]) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING in the session's dialect; into the table itself (a Core insert: the ORM's
    bulk machinery cost as much again as the statement)."""
    return conflict_insert(session)(_table(table)).on_conflict_do_nothing()


def _table(model: type[Digest] | type[Content] | type[ContentPractice]) -> Table:
    return cast(Table, model.__table__)


# Sending ----------------------------------------------------------------------------------------------------------

# pg_advisory_xact_lock key held while a sender reads the hourly budget and claims within it.
RATE_LOCK = 0x64696765_7376


class Claimed(NamedTuple):
    """A digest a sender has claimed, with what building its message needs (its content comes by hash). A tuple:
    a claim makes a hundred at once."""

    id: int
    subscriber_id: int
    email: str
    # The subscriber's key, which their links are signed for.
    key: str
    message_id: str
    subject: str
    period: str
    content_hash: str
    # Attempts so far, this claim included.
    attempts: int
    # The subscriber's hard bounces in a row (an accepted message clears them).
    bounces: int = 0
    # How they read their digests: "html" (with its text alternative) or "text" (MailFormat); None: html.
    format: str | None = None


def claimable(now: datetime, claim_timeout: timedelta, dead: Sequence[str]) -> ColumnElement[bool]:
    """Waiting and ready to send now: planned; deferred and its time has come; sending, but its claim was
    abandoned (older than ``claim_timeout``, or held by one of the ``dead`` processes)."""
    return _claimable(now, now - claim_timeout, list(dead) if dead else None)


def _claimable(now: Any, stale_before: Any, dead: Any | None) -> ColumnElement[bool]:
    """claimable's condition, over values or bound parameters (``dead``: None when there are none)."""
    stale = Digest.claimed_at < stale_before
    return or_(
        Digest.status == DigestStatus.PLANNED,
        and_(
            Digest.status == DigestStatus.DEFERRED,
            or_(Digest.next_attempt_at.is_(None), Digest.next_attempt_at <= now),
        ),
        and_(
            Digest.status == DigestStatus.SENDING,
            or_(stale, Digest.claimed_by.in_(dead)) if dead is not None else stale,
        ),
    )


def any_claimable(session: Session, now: datetime, claim_timeout: timedelta) -> bool:
    """Whether any digest is ready to send now (cheap: stops at the first)."""
    found = session.scalar(select(Digest.id).where(waiting(), claimable(now, claim_timeout, [])).limit(1))
    return found is not None


def claim_holders(session: Session) -> list[str]:
    """Who holds `sending` claims ("host:pid"), each once."""
    holders = (
        select(Digest.claimed_by)
        .with_hint(Digest, "INDEXED BY ix_digests_sending", "sqlite")
        .where(sending())
        .distinct()
    )
    return [holder for holder in session.scalars(holders) if holder]


def sent_since(session: Session, since: datetime) -> int:
    """Messages that went out since ``since``: digests and resends."""
    digests = session.scalar(select(func.count()).select_from(Digest).where(Digest.sent_at >= since)) or 0
    resends = session.scalar(select(func.count()).select_from(Resend).where(Resend.sent_at >= since)) or 0
    return digests + resends


def hour_budget(session: Session, per_hour: int, now: datetime) -> int:
    """How many more may be claimed this hour: ``per_hour`` less what went out in the last hour and what is in
    flight."""
    in_flight = session.scalar(
        select(func.count())
        .select_from(Digest)
        .with_hint(Digest, "INDEXED BY ix_digests_sending", "sqlite")
        .where(sending())
    )
    return per_hour - sent_since(session, now - timedelta(hours=1)) - (in_flight or 0)


def _confirmed() -> ColumnElement[bool]:
    # Correlated: each candidate looks its subscriber up by primary key, so the plan stays a walk down the
    # digests' ids however stale the table statistics are right after a big planning run.
    return (
        select(Subscriber.id)
        .where(Subscriber.id == Digest.subscriber_id, Subscriber.status == SubscriberStatus.CONFIRMED)
        .exists()
    )


def sweep(
    engine: Engine, now: datetime, claim_timeout: timedelta, dead: Sequence[str], max_attempts: int
) -> tuple[int, list[int]]:
    """Before a run, in one transaction: ready digests of subscribers no longer confirmed are cancelled, and those
    out of attempts (a process died with each of them in hand) failed, never claimed again. The number cancelled,
    and the ids failed."""
    ready = and_(waiting(), claimable(now, claim_timeout, dead))
    with engine.begin() as conn:
        cancelled = conn.execute(
            update(Digest).where(ready, ~_confirmed()).values(status=DigestStatus.CANCELLED, claimed_by=None)
        ).rowcount
        exhausted = conn.execute(
            update(Digest)
            .where(ready, _confirmed(), Digest.attempts >= max_attempts)
            .values(
                status=DigestStatus.FAILED,
                claimed_by=None,
                last_error=func.coalesce(Digest.last_error, "")
                + f" (gave up: {max_attempts} attempts, the last never finished)",
            )
            .returning(Digest.id)
        ).all()
    return cancelled, [digest_id for (digest_id,) in exhausted]


def claim(
    engine: Engine,
    holder: str,
    now: datetime,
    limit: int,
    claim_timeout: timedelta,
    dead: Sequence[str],
    max_attempts: int,
    per_hour: int = 0,
) -> list[Claimed]:
    """Mark up to ``limit`` ready digests of confirmed subscribers `sending` by ``holder``, in one committed UPDATE,
    and return them in id order; other senders skip the rows this one is claiming (PostgreSQL) or wait their turn
    (SQLite). With ``per_hour``, never past the hour's budget, on every host at once."""
    postgres = engine.dialect.name == "postgresql"
    values: dict[str, Any] = {
        "now": now,
        "stale_before": now - claim_timeout,
        "max_attempts": max_attempts,
        "limit": limit,
        "holder": holder,
    }
    if dead:
        values["dead"] = list(dead)
    with engine.begin() as conn:
        if postgres:
            conn.execute(_WALK)
        if postgres and per_hour > 0:
            # The hour's budget is read and spent by one sender at a time, on every host: never over it.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": RATE_LOCK})
            with Session(conn) as session:
                budget = hour_budget(session, per_hour, now)
            if budget <= 0:
                return []
            values["limit"] = min(limit, budget)
        rows: Sequence[Any] = [tuple(row) for row in conn.execute(_claiming(postgres, bool(dead)), values)]
        if rows and not postgres:  # SQLite's RETURNING names only the table it updates: the subscribers come after
            who = conn.execute(select(Subscriber.id, *_RECIPIENT).where(Subscriber.id.in_({r[1] for r in rows})))
            found = {sid: tuple(rest) for sid, *rest in who}
            rows = [(*row, *found[row[1]]) for row in rows]
    return sorted(
        (
            Claimed(i, s, email, key, m, subject, p, h, a, bounces, fmt)
            for i, s, m, subject, p, h, a, email, key, bounces, fmt in rows
        ),
        key=lambda c: c.id,
    )


@lru_cache(maxsize=4)
def _claiming(postgres: bool, dead: bool) -> Update:
    """The claim's UPDATE, built once (building it cost as much as running it), over bound parameters: now,
    stale_before, dead (with ``dead``), max_attempts, limit, holder."""
    # A walk down ix_digests_waiting (its predicate, word for word, lets the database use it; SQLite is told).
    candidates = (
        select(Digest.id)
        .with_hint(Digest, "INDEXED BY ix_digests_waiting", "sqlite")
        .where(
            waiting(),
            _claimable(
                bindparam("now"), bindparam("stale_before"), bindparam("dead", expanding=True) if dead else None
            ),
            _confirmed(),
            Digest.attempts < bindparam("max_attempts"),
        )
        .order_by(Digest.id)
        .limit(bindparam("limit"))
    )
    claiming = update(Digest).values(
        status=DigestStatus.SENDING,
        claimed_by=bindparam("holder"),
        claimed_at=bindparam("now"),
        attempts=Digest.attempts + 1,
    )
    if not postgres:
        return claiming.where(Digest.id.in_(candidates.scalar_subquery())).returning(*_CLAIMED)
    # Other senders' rows skipped, never waited for; the ids as an array, each row then found by its primary key
    # (`IN (subquery)` is planned as a hash join over every digest ever planned); the subscriber comes back with
    # it (UPDATE ... FROM): one statement.
    candidates = candidates.with_for_update(skip_locked=True, of=Digest)
    return claiming.where(
        Digest.id == any_(func.array(candidates.scalar_subquery())), Subscriber.id == Digest.subscriber_id
    ).returning(*_CLAIMED, *_RECIPIENT)


# A claim walks ix_digests_waiting in id order and stops after its hundred rows, whatever the statistics say. While
# a big planning run fills the table, they still describe it as it was (nearly empty), and the planner then reads
# every waiting digest through a bitmap and sorts them: 40-90 ms a claim at 50k digests instead of one or two.
_WALK = text("SELECT set_config('enable_bitmapscan', 'off', true), set_config('enable_sort', 'off', true)")

# What a claim returns of each digest, and of its subscriber.
_CLAIMED = (
    Digest.id,
    Digest.subscriber_id,
    Digest.message_id,
    Digest.subject,
    Digest.period,
    Digest.content_hash,
    Digest.attempts,
)
_RECIPIENT = (Subscriber.email, Subscriber.key, Subscriber.bounces, Subscriber.format)


def held(ids: Sequence[int], holder: str) -> ColumnElement[bool]:
    """These digests, where ``holder`` still holds them (an unsubscribe may have cancelled one meanwhile)."""
    return and_(Digest.id.in_(list(ids)), Digest.status == DigestStatus.SENDING, Digest.claimed_by == holder)


def finish(engine: Engine, digest_id: int, holder: str, status: DigestStatus, **values: object) -> None:
    """Record an outcome other than sent (deferred, failed), in a transaction of its own, if the claim is still
    ``holder``'s."""
    with engine.begin() as conn:
        done = conn.execute(
            update(Digest).where(held([digest_id], holder)).values(status=status, claimed_by=None, **values)
        ).rowcount
        if done and status == DigestStatus.FAILED:
            _failed_event(conn, digest_id, str(values.get("last_error", "")))


def _failed_event(conn: Connection, digest_id: int, error: str) -> None:
    """digest.failed into the webhooks' outbox, on ``conn``'s transaction."""

    def tell() -> tuple[dict[str, Any], str]:
        email, period = conn.execute(
            select(Subscriber.email, Digest.period).join(Subscriber).where(Digest.id == digest_id)
        ).one()
        return {"digest_id": digest_id, "email": email, "period": period, "error": error[:500]}, email

    outbox.emit(conn, "digest.failed", datetime.now(UTC), tell)


def fail_refused(conn: Connection, digest_id: int, holder: str, error: str) -> None:
    """The recipient was refused (a hard bounce): failed for good, on ``conn``'s transaction (the bounce is counted
    in the same one)."""
    done = conn.execute(
        update(Digest)
        .where(Digest.id == digest_id, Digest.claimed_by == holder)
        .values(status=DigestStatus.FAILED, claimed_by=None, last_error=error)
    ).rowcount
    if done:
        _failed_event(conn, digest_id, error)


def refused(engine: Engine, claimed: Claimed, holder: str, refusal: Refusal, limit: int, now: datetime) -> bool:
    """A recipient refused during the SMTP transaction. Hard (the address is gone): the digest failed for good,
    the bounce kept and counted, in one transaction; True when that suppressed the address (at ``limit`` bounces in
    a row). Soft (a full mailbox, a block, a policy): the digest failed for good, the bounce kept with its reason
    (digest.store.bounces.to_reconfirm counts those), the address stays."""
    with engine.begin() as conn:
        fail_refused(conn, claimed.id, holder, refusal.error)
        kind = BounceKind.HARD if refusal.hard else BounceKind.SOFT
        new = record(
            conn, at_transaction_key(claimed.id), claimed.subscriber_id, claimed.id, kind, refusal.status,
            refusal.reason, refusal.error, now,
        )  # fmt: skip
        counted = new and refusal.hard  # a soft bounce is kept, never counted; the same refusal twice counts once
        return count_hard_bounce(conn, claimed.subscriber_id, refusal.error, limit, now) if counted else False


class Refusal(NamedTuple):
    """A recipient refused during the SMTP transaction, as read (digest.mail.replies.classify)."""

    hard: bool
    status: str
    reason: str
    error: str


def renew(engine: Engine, ids: Sequence[int], holder: str, now: datetime) -> None:
    """Renew ``holder``'s claim on these digests (a batch on a slow link must not look abandoned)."""
    with engine.begin() as conn:
        conn.execute(update(Digest).where(held(ids, holder)).values(claimed_at=now))


def hand_back(engine: Engine, ids: Sequence[int], holder: str) -> None:
    """Hand claimed digests back untouched (the run stops for a reason that is not theirs): planned, or deferred
    when they were, and the claim's attempt not counted."""
    if not ids:
        return
    with engine.begin() as conn:
        conn.execute(
            update(Digest)
            .where(held(ids, holder))
            .values(
                status=case(
                    (Digest.next_attempt_at.is_(None), DigestStatus.PLANNED.value), else_=DigestStatus.DEFERRED.value
                ),
                claimed_by=None,
                attempts=Digest.attempts - 1,
            )
        )


def cancel_unsent(session: Session, subscriber_id: int) -> None:
    """Everything of this subscriber not sent yet is cancelled, a `sending` leftover too (a sender with it in flight
    still records it sent: the recorder goes by id and holder)."""
    session.execute(
        update(Digest)
        .where(Digest.subscriber_id == subscriber_id, Digest.status.in_(WAITING))
        .values(status=DigestStatus.CANCELLED)
    )


class SentRecorder:
    """Records accepted messages as sent, in groups: one short transaction for up to ``group`` of them, on a driver
    connection kept for the run (no ORM, no statement compiled per message; on PostgreSQL the group's statements go
    in one round trip, under `synchronous_commit off`). A group is written once it is full, once its first
    message is ``max_age`` seconds old (checked before each message is sent: see `flush_if_old`), and whenever the
    sender claims, hands back, waits or stops.

    What a kill -9 may cause is bounded by the group: up to ``group`` messages the server had accepted are still
    `sending` and are sent again by whoever takes the claim over, with their original Message-ID (1 records each
    message at once: only the one in flight). Never a message the server had not accepted, never a lost one. A
    crash of the database itself may forget the last few milliseconds of outcomes in the same way. By id and
    holder, not state: an unsubscribe that cancelled a digest in flight does not hide a sent message."""

    def __init__(self, engine: Engine, holder: str, group: int = 1, max_age: float = 1.0) -> None:
        dialect = engine.dialect
        self.holder = holder
        self.group = max(1, group)
        self.max_age = max_age
        # The driver's form of a time, as the ORM would bind it (SQLite: naive UTC text).
        self._when: Callable[[datetime], Any] = UTCDateTime().dialect_impl(dialect).bind_processor(dialect) or (
            lambda value: value
        )
        mark = "%s" if dialect.paramstyle in ("format", "pyformat") else "?"
        self._postgres = dialect.name == "postgresql"
        done = f"status = '{DigestStatus.SENT.value}', claimed_by = NULL, last_error = NULL, next_attempt_at = NULL"
        if self._postgres:
            # The whole group in one statement (ids and times as two arrays): one round trip, parsed once. It adds
            # what it marks sent to the sent tally itself, once (this connection tells the row trigger of migration
            # 0016 not to, see 0028).
            self._sent = (
                f"WITH done AS (UPDATE digests SET {done}, sent_at = t.at"
                " FROM unnest(%s::integer[], %s::timestamptz[]) AS t(id, at)"
                " WHERE digests.id = t.id AND digests.claimed_by = %s"
                f" AND digests.status <> '{DigestStatus.SENT.value}'"
                " RETURNING 1) UPDATE tallies SET n = n + (SELECT count(*) FROM done) WHERE name = 'sent'"
            )
        else:
            self._sent = f"UPDATE digests SET {done}, sent_at = {mark} WHERE id = {mark} AND claimed_by = {mark}"
        self._clear_bounces = f"UPDATE subscribers SET bounces = 0 WHERE id = {mark}"
        raw = engine.raw_connection()
        driver: Any = raw.driver_connection
        raw.detach()  # its settings are this run's own: closed at the end, never pooled again
        self._raw = raw
        if self._postgres:
            driver.autocommit = True
        else:
            driver.isolation_level = None  # sqlite3: autocommit; a group is one BEGIN ... COMMIT
        self._cursor = raw.cursor()
        if self._postgres:
            self._cursor.execute("SET synchronous_commit TO OFF")
            self._cursor.execute(f"SET {TALLY_SENT_BY_STATEMENT} TO on")
        self._rows: list[tuple[Any, int, str]] = []
        # digest.sent events for the webhooks' outbox, written in the same transaction as the group.
        self._outbox = SentEvents(engine)
        self._events: list[tuple[int, str, str, str]] = []
        self._last = datetime.now(UTC)
        # Subscribers whose run of hard bounces an accepted message ends (in the same transaction).
        self._cleared: list[tuple[int]] = []
        self._since = 0.0

    @property
    def waiting(self) -> int:
        """Accepted messages not yet written."""
        return len(self._rows)

    def sent(self, claimed: Claimed, now: datetime) -> None:
        if not self._rows:
            self._since = time.monotonic()
        self._rows.append((self._when(now), claimed.id, self.holder))
        self._events.append((claimed.id, claimed.email, claimed.period, claimed.message_id))
        self._last = now
        if claimed.bounces:
            self._cleared.append((claimed.subscriber_id,))
        if len(self._rows) >= self.group:
            self.flush()

    def flush_if_old(self) -> None:
        """Write the group if its first message has waited ``max_age`` (a slow link never holds outcomes long)."""
        if self._rows and time.monotonic() - self._since >= self.max_age:
            self.flush()

    def flush(self) -> None:
        """Write what is waiting, in one transaction (on PostgreSQL, with no bounces to clear and no webhook to
        tell, a single statement). If that fails, it is kept (and raised): a later flush writes it, or the claims
        run out and the messages are sent again with their Message-IDs."""
        if not self._rows:
            return
        cursor = self._cursor
        if self._postgres and not self._cleared and not self._outbox.wanted(cursor):
            self._write_sent(cursor)  # one statement: its own transaction
        else:
            cursor.execute("BEGIN")
            try:
                self._write_sent(cursor)
                if self._cleared:
                    cursor.executemany(self._clear_bounces, self._cleared)
                self._outbox.write(cursor, self._events, self._last)
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")
        self._rows.clear()
        self._cleared.clear()
        self._events.clear()

    def _write_sent(self, cursor: Any) -> None:
        """The group's digests marked sent: on PostgreSQL one statement, its ids and times as array literals
        (digits, and ISO times in UTC: nothing to quote; psycopg dumps a list element by element in Python); on
        SQLite a statement a digest."""
        if not self._postgres:
            cursor.executemany(self._sent, self._rows)
            return
        times = ",".join(r[0].isoformat() for r in self._rows)
        cursor.execute(self._sent, (id_array(r[1] for r in self._rows), f"{{{times}}}", self.holder))

    def close(self) -> None:
        self._raw.close()


def last_sent(session: Session, subscriber_id: int) -> tuple[str, str] | None:
    """The subject and frozen content (JSON) of the last digest sent to this subscriber, if any."""
    row = session.execute(
        select(Digest.subject, Digest.content_hash)
        .where(Digest.subscriber_id == subscriber_id, Digest.sent_at.is_not(None))
        .order_by(Digest.sent_at.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    digest = session.scalar(select(Digest).where(Digest.content_hash == row[1]).limit(1))
    assert digest is not None
    return row[0], digest.content
