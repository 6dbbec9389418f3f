"""Delivery: claim a due digest, send it with retries, record the outcome; every state change committed.

States: planned -> sending -> sent. A 4xx, a drop or a timeout is retried within the run (with backoff);
after that the digest is `deferred` until `next_attempt_at`, and `failed` once out of attempts. A 5xx for
the recipient fails it for good and counts a hard bounce (the address is suppressed at the limit). A server
that cannot be reached stops the run and puts the digest in hand back: nothing is lost, nothing skipped.

A digest is `sending` only between its claim and its outcome. If the process dies there, the claim is taken
over (within a second when its holder on this host is dead, else after `claim_timeout`) and the digest is sent again
with the same Message-ID: the only way a message can go out twice is when the server had accepted it.

One digest that cannot be built or sent (a bad address, a broken template, corrupt content, anything it
raises) is marked `failed` with the error, logged, and the run goes on: a poison message fails alone. A claim
counts an attempt, and a digest out of attempts is failed instead of claimed, so none loops forever.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Connection, Engine, and_, case, func, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from digest import clock, logs
from digest.config import Settings
from digest.mail.transport import (
    Following,
    MessageRejected,
    RecipientRefused,
    ServerUnavailable,
    TemporaryFailure,
    Transport,
)
from digest.store import counters
from digest.store.models import Content, Digest, Resend, Subscriber, UTCDateTime, waiting
from digest.store.states import DigestStatus, SubscriberStatus

events = logs.EventLog(__name__)


@dataclass(frozen=True)
class DeliveryPolicy:
    """Retries, bounces and rate limits, from settings."""

    tries: int = 3
    backoff: float = 1.0
    retry_delay: timedelta = timedelta(minutes=15)
    max_attempts: int = 6
    bounce_limit: int = 1
    per_second: float = 0.0
    per_hour: int = 0
    claim_timeout: timedelta = timedelta(minutes=10)
    # Accepted messages recorded as sent per transaction (see SentRecorder).
    sent_per_commit: int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryPolicy:
        return cls(
            tries=settings.send_tries,
            backoff=settings.send_backoff,
            retry_delay=timedelta(minutes=settings.retry_delay_minutes),
            max_attempts=settings.max_attempts,
            bounce_limit=settings.suppress_after_bounces,
            per_second=settings.rate_per_second,
            per_hour=settings.rate_per_hour,
            claim_timeout=timedelta(seconds=settings.claim_timeout),
            sent_per_commit=settings.sent_per_commit,
        )


@dataclass
class SendReport:
    """What one send run did."""

    # Subscribers due in this run's planning, digests planned, and due subscribers with nothing new.
    due: int = 0
    planned: int = 0
    empty: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    bounced: int = 0
    suppressed: int = 0
    cancelled: int = 0
    # True when the hourly limit stopped the run; the rest waits for the next one.
    rate_limited: bool = False
    # Set when the run stopped early (the server is down); every digest not sent is still waiting.
    error: str | None = None
    hint: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__, ok=self.ok)


def holder_id() -> str:
    """Who claims a digest: this host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _dead_local_holders(session: Session) -> list[str]:
    """Claims held by processes of this host that no longer exist (killed, crashed)."""
    host = socket.gethostname()
    dead = []
    holders = (
        select(Digest.claimed_by)
        .with_hint(Digest, "INDEXED BY ix_digests_waiting", "sqlite")
        .where(waiting(), Digest.status == DigestStatus.SENDING)
        .distinct()
    )
    for holder in session.scalars(holders):
        name, _, pid = (holder or "").rpartition(":")
        if name != host or not pid.isdigit() or int(pid) == os.getpid():
            continue
        if not process_alive(int(pid)):
            dead.append(holder or "")
    return dead


def process_alive(pid: int) -> bool:
    """Whether the process of this host with this pid still runs. A zombie (dead, not yet reaped by its parent:
    a sender killed while `digest send` plans) does not: it will never finish what it holds."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (command) state ...": the state follows the last parenthesis (a command may hold any).
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc here: signal 0 is all there is to go by


def _due(now: datetime, policy: DeliveryPolicy, dead: list[str]) -> ColumnElement[bool]:
    """Waiting and due: planned; deferred and its time has come; sending, but its claim was abandoned."""
    stale = Digest.claimed_at < now - policy.claim_timeout
    return or_(
        Digest.status == DigestStatus.PLANNED,
        and_(
            Digest.status == DigestStatus.DEFERRED,
            or_(Digest.next_attempt_at.is_(None), Digest.next_attempt_at <= now),
        ),
        and_(Digest.status == DigestStatus.SENDING, or_(stale, Digest.claimed_by.in_(dead)) if dead else stale),
    )


def has_due(session: Session, now: datetime, policy: DeliveryPolicy) -> bool:
    """Whether any digest is waiting to be sent now (cheap: stops at the first)."""
    return session.scalar(select(Digest.id).where(waiting(), _due(now, policy, [])).limit(1)) is not None


class RateLimiter:
    """The shared limits, counted in the store so that every sender (process, host) counts together:
    `per_hour` against what went out in the last hour and what is in flight; `per_second` through a counter
    per second (digest.store.counters)."""

    def __init__(self, policy: DeliveryPolicy, engine: Engine) -> None:
        self.policy = policy
        self.engine = engine
        self._last = 0.0

    def hour_budget(self, now: datetime, conn: Connection | None = None) -> int | None:
        """How many more may be claimed this hour: the limit less what went out in the last hour and what is in
        flight (None: no hourly limit). Read on ``conn`` when given (inside the claim's transaction)."""
        if self.policy.per_hour <= 0:
            return None
        with Session(conn or self.engine) as session:
            in_flight = session.scalar(
                select(func.count()).select_from(Digest).where(waiting(), Digest.status == DigestStatus.SENDING)
            )
            return self.policy.per_hour - sent_since(session, now - timedelta(hours=1)) - (in_flight or 0)

    def wait(self) -> None:
        """Block until this message may go: spaced 1/per_second from this sender's last one, and within the
        second's budget that every sender shares."""
        if self.policy.per_second <= 0:
            return
        delay = self._last + 1.0 / self.policy.per_second - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        limit = max(1, int(self.policy.per_second))
        while True:
            with Session(self.engine) as session, session.begin():
                if counters.take(session, "smtp:per-second", limit, timedelta(seconds=1), datetime.now(UTC)):
                    break
            time.sleep(max(0.01, 1 - (time.time() % 1)))
        self._last = time.monotonic()


def sent_since(session: Session, since: datetime) -> int:
    digests = session.scalar(select(func.count()).select_from(Digest).where(Digest.sent_at >= since)) or 0
    resends = session.scalar(select(func.count()).select_from(Resend).where(Resend.sent_at >= since)) or 0
    return digests + resends


def count_hard_bounce(conn: Connection, subscriber_id: int, error: str, limit: int, now: datetime) -> bool:
    """Count a hard bounce for the subscriber; at ``limit`` in a row they are suppressed and their digests not yet
    sent are cancelled. True when this bounce suppressed them."""
    conn.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .values(bounces=Subscriber.bounces + 1, last_bounce=error)
    )
    suppressed = conn.execute(
        update(Subscriber)
        .where(
            Subscriber.id == subscriber_id,
            Subscriber.bounces >= limit,
            Subscriber.status == SubscriberStatus.CONFIRMED,
        )
        .values(status=SubscriberStatus.SUPPRESSED, suppressed_at=now)
    ).rowcount
    if suppressed:
        conn.execute(
            update(Digest)
            .where(
                Digest.subscriber_id == subscriber_id,
                Digest.status.in_((DigestStatus.PLANNED, DigestStatus.DEFERRED)),
            )
            .values(status=DigestStatus.CANCELLED)
        )
    return bool(suppressed)


class Pending(NamedTuple):
    """A digest this process has claimed, with what building its message needs (its content comes by hash). A
    tuple: a claim makes a hundred at once."""

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


# Seconds between looks for claims left by dead processes of this host (taken over at the next claim after that).
DEAD_LOOK = 1.0
# pg_advisory_xact_lock key held while a sender reads the hourly budget and claims within it.
RATE_LOCK = 0x64696765_7376
# Digests claimed at once: one UPDATE ... RETURNING for them all. Small enough that several senders share a run
# evenly and a dead sender's claims are few; large enough that claiming costs little per message.
CLAIM_BATCH = 100


class SentRecorder:
    """Records accepted messages as sent, in groups: one short transaction for up to ``group`` of them, on a driver
    connection kept for the run (no ORM, no statement compiled per message; on PostgreSQL the group's statements go
    in one round trip, under `synchronous_commit off`). A group is written once it is full, once its first
    message is ``max_age`` seconds old (checked before each message is sent: see `due`), and whenever the sender
    claims, hands back, waits or stops.

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
        self._sent = (
            f"UPDATE digests SET status = 'sent', sent_at = {mark}, claimed_by = NULL, last_error = NULL, "
            f"next_attempt_at = NULL WHERE id = {mark} AND claimed_by = {mark}"
        )
        self._clear_bounces = f"UPDATE subscribers SET bounces = 0 WHERE id = {mark}"
        raw = engine.raw_connection()
        driver: Any = raw.driver_connection
        raw.detach()  # its settings are this run's own: closed at the end, never pooled again
        self._raw = raw
        if dialect.name == "postgresql":
            driver.autocommit = True
        else:
            driver.isolation_level = None  # sqlite3: autocommit; a group is one BEGIN ... COMMIT
        self._cursor = raw.cursor()
        if dialect.name == "postgresql":
            self._cursor.execute("SET synchronous_commit TO OFF")
        self._rows: list[tuple[Any, int, str]] = []
        # Subscribers whose run of hard bounces an accepted message ends (in the same transaction).
        self._cleared: list[tuple[int]] = []
        self._since = 0.0

    @property
    def waiting(self) -> int:
        """Accepted messages not yet written."""
        return len(self._rows)

    def sent(self, pending: Pending, now: datetime) -> None:
        if not self._rows:
            self._since = time.monotonic()
        self._rows.append((self._when(now), pending.id, self.holder))
        if pending.bounces:
            self._cleared.append((pending.subscriber_id,))
        if len(self._rows) >= self.group:
            self.flush()

    def due(self) -> None:
        """Write the group if its first message has waited ``max_age`` (a slow link never holds outcomes long)."""
        if self._rows and time.monotonic() - self._since >= self.max_age:
            self.flush()

    def flush(self) -> None:
        """Write what is waiting, in one transaction. If that fails, it is kept (and raised): a later flush writes
        it, or the claims run out and the messages are sent again with their Message-IDs."""
        if not self._rows:
            return
        if len(self._rows) == 1 and not self._cleared:
            self._cursor.execute(self._sent, self._rows[0])  # one autocommitted statement
        else:
            self._cursor.execute("BEGIN")
            try:
                self._cursor.executemany(self._sent, self._rows)
                if self._cleared:
                    self._cursor.executemany(self._clear_bounces, self._cleared)
            except BaseException:
                self._cursor.execute("ROLLBACK")
                raise
            self._cursor.execute("COMMIT")
        self._rows.clear()
        self._cleared.clear()

    def close(self) -> None:
        self._raw.close()


class Deliverer:
    """Sends the due digests of one run through one transport, recording every outcome.

    Any number of Deliverers (processes, hosts) may run on one store: each claims batches of due digests
    (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so they never wait for each other; one writer at a time on SQLite),
    sends them, and records the outcomes; a digest is claimed by one of them only.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        transport: Transport,
        policy: DeliveryPolicy,
        build: Callable[[Pending, str, datetime], bytes],
        return_path: Callable[[int], str],
        report: SendReport,
        batch_size: int = 500,
        should_stop: Callable[[], bool] = lambda: False,
        more_coming: Callable[[], bool] | None = None,
    ) -> None:
        self.factory = factory
        self.transport = transport
        self.policy = policy
        self.build = build
        # The envelope sender of each digest (VERP: bounces name the digest they are about).
        self.return_path = return_path
        self.report = report
        self.claim_size = max(1, min(batch_size, CLAIM_BATCH))
        # Asked before each message: a stopping worker finishes the message in flight and hands the rest back.
        self.should_stop = should_stop
        # Asked when nothing is left to claim: True (after a short wait) while digests are still being planned
        # elsewhere, to claim again instead of ending the run.
        self.more_coming = more_coming
        self.holder = holder_id()
        with factory() as session:
            engine = session.get_bind()
        assert isinstance(engine, Engine)
        self.engine = engine
        self.limiter = RateLimiter(policy, engine)
        self._bodies: dict[str, str] = {}
        # Messages of the batch built ahead, while the server took the ones before (or what building raised), and
        # the batch's envelope senders (each is named twice: to begin its transaction, and to send it).
        self._built: dict[int, bytes | Exception] = {}
        self._paths: dict[int, str] = {}
        self._recorder: SentRecorder | None = None
        self._dead: list[str] = []
        self._dead_at = float("-inf")

    def run(self) -> None:
        """Deliver every due digest (any period) until none is left, the hour's limit is reached, or the run must
        stop; whatever this run claimed and did not send is handed back."""
        self._sweep(clock.now())
        self._recorder = SentRecorder(self.engine, self.holder, self.policy.sent_per_commit)
        try:
            self._run()
        finally:
            try:
                self._recorder.flush()
            finally:
                self._recorder.close()
                self._recorder = None

    def _run(self) -> None:
        while not self.should_stop():
            self._flush()
            budget = self.limiter.hour_budget(clock.now())
            if budget is not None and budget <= 0:
                self.report.rate_limited = True
                return
            limit = self.claim_size if budget is None else min(self.claim_size, budget)
            dead = self._dead_holders()
            batch = self._claim_batch(limit, dead)
            if not batch:
                # Nothing left to claim: a holder that died since the last look may have left some.
                again = self._dead_holders(fresh=True)
                batch = self._claim_batch(limit, again) if again != dead else []
            if not batch:
                if self.more_coming is None:
                    return
                if not self.more_coming():
                    self.more_coming = None  # planning is over: one more claim sees everything it committed
                continue
            if not self._send_batch(batch):
                return

    def _dead_holders(self, fresh: bool = False) -> list[str]:
        """The dead local processes that hold claims, looked up at most once a `DEAD_LOOK` (the lookup reads every
        waiting digest's row: before each claim, it cost more than the claim)."""
        if fresh or time.monotonic() - self._dead_at >= DEAD_LOOK:
            with self.factory() as session:
                self._dead = _dead_local_holders(session)
            self._dead_at = time.monotonic()
        return self._dead

    def _send_batch(self, batch: list[Pending]) -> bool:
        """Send a claimed batch; False when the run must stop (what is left of the batch is handed back)."""
        self._load_bodies({p.content_hash for p in batch})
        self._built.clear()  # what an earlier batch built and never sent (it stopped) is not needed
        self._paths = {p.id: self.return_path(p.id) for p in batch}
        claimed = clock.now()
        for n, pending in enumerate(batch):
            if self.should_stop():
                self._release(batch[n:])
                return False
            if clock.now() - claimed >= self.policy.claim_timeout / 3:
                claimed = self._renew(batch[n:])
            try:
                self._deliver(pending, *batch[n + 1 : n + 3])
            except ServerUnavailable as e:
                self._release(batch[n:])
                self.report.error, self.report.hint = str(e), e.hint
                return False
            except Exception as e:  # a poison message: this digest fails, the run goes on
                self._poisoned(pending, e)
        return True

    def _load_bodies(self, hashes: set[str]) -> None:
        """The frozen contents of a batch, read once each (a run sees a handful of distinct digests)."""
        if len(self._bodies) > 256:
            self._bodies.clear()
        missing = hashes - set(self._bodies)
        if missing:
            with self.factory() as session:
                rows = session.execute(select(Content.hash, Content.body).where(Content.hash.in_(missing)))
                self._bodies.update({h: b for h, b in rows})

    def _sweep(self, now: datetime) -> None:
        """Before claiming: due digests of subscribers no longer confirmed are cancelled, and digests out of
        attempts (a process died with each of them in hand) are failed, never claimed again."""
        due = and_(waiting(), _due(now, self.policy, self._dead_holders(fresh=True)))
        confirmed = (
            select(Subscriber.id)
            .where(Subscriber.id == Digest.subscriber_id, Subscriber.status == SubscriberStatus.CONFIRMED)
            .exists()
        )
        with self.engine.begin() as conn:
            self.report.cancelled += conn.execute(
                update(Digest).where(due, ~confirmed).values(status=DigestStatus.CANCELLED, claimed_by=None)
            ).rowcount
            exhausted = conn.execute(
                update(Digest)
                .where(due, confirmed, Digest.attempts >= self.policy.max_attempts)
                .values(
                    status=DigestStatus.FAILED,
                    claimed_by=None,
                    last_error=func.coalesce(Digest.last_error, "")
                    + f" (gave up: {self.policy.max_attempts} attempts, the last never finished)",
                )
                .returning(Digest.id)
            ).all()
        for (digest_id,) in exhausted:
            self.report.failed += 1
            self.report.errors.append(f"digest {digest_id}: gave up after {self.policy.max_attempts} attempts")
            events("digest.failed", logging.ERROR, digest_id=digest_id, reason="out of attempts")

    def _claim_batch(self, limit: int, dead: list[str]) -> list[Pending]:
        """Mark up to ``limit`` due digests of confirmed subscribers `sending` by this process, in one committed
        UPDATE; other senders skip the rows this one is claiming (PostgreSQL) or wait their turn (SQLite)."""
        now = clock.now()
        # Correlated: each candidate looks its subscriber up by primary key, so the plan stays a walk down the
        # digests' ids however stale the table statistics are right after a big planning run.
        confirmed = (
            select(Subscriber.id)
            .where(Subscriber.id == Digest.subscriber_id, Subscriber.status == SubscriberStatus.CONFIRMED)
            .exists()
        )
        # A walk down ix_digests_waiting (its predicate, word for word, lets the database use it; SQLite is told).
        candidates = (
            select(Digest.id)
            .with_hint(Digest, "INDEXED BY ix_digests_waiting", "sqlite")
            .where(waiting(), _due(now, self.policy, dead), confirmed, Digest.attempts < self.policy.max_attempts)
            .order_by(Digest.id)
            .limit(limit)
        )
        postgres = self.engine.dialect.name == "postgresql"
        if postgres:
            candidates = candidates.with_for_update(skip_locked=True, of=Digest)
        with self.engine.begin() as conn:
            if postgres and self.policy.per_hour > 0:
                # The hour's budget is read and spent by one sender at a time, on every host: never over it.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": RATE_LOCK})
                budget = self.limiter.hour_budget(now, conn) or 0
                if budget <= 0:
                    return []
                candidates = candidates.limit(min(limit, budget))
            claimed = conn.execute(
                update(Digest)
                .where(Digest.id.in_(candidates.scalar_subquery()))
                .values(
                    status=DigestStatus.SENDING, claimed_by=self.holder, claimed_at=now, attempts=Digest.attempts + 1
                )
                .returning(
                    Digest.id,
                    Digest.subscriber_id,
                    Digest.message_id,
                    Digest.subject,
                    Digest.period,
                    Digest.content_hash,
                    Digest.attempts,
                )
            ).all()
            if not claimed:
                return []
            rows = conn.execute(
                select(Subscriber.id, Subscriber.email, Subscriber.key, Subscriber.bounces).where(
                    Subscriber.id.in_({row.subscriber_id for row in claimed})
                )
            )
            who = {sid: (email, key, bounces) for sid, email, key, bounces in rows}
        return sorted(
            (
                Pending(
                    row.id,
                    row.subscriber_id,
                    *who[row.subscriber_id][:2],
                    row.message_id,
                    row.subject,
                    row.period,
                    row.content_hash,
                    row.attempts,
                    who[row.subscriber_id][2],
                )
                for row in claimed
            ),
            key=lambda p: p.id,
        )

    def _message(self, pending: Pending) -> bytes:
        """The message of ``pending``: built ahead while the server took one before, else now. What building
        raised is raised here, for this digest (a poison message fails alone)."""
        built = self._built.pop(pending.id, None)
        if built is None:
            return self.build(pending, self._bodies[pending.content_hash], clock.now())
        if isinstance(built, Exception):
            raise built
        return built

    def _build_ahead(self, pending: Pending) -> bytes | Exception:
        """Build a message of the batch ahead of its turn (kept until then); never raises (see _message)."""
        built = self._built.get(pending.id)
        if built is None:  # else built already, on an earlier try of the message before
            try:
                built = self.build(pending, self._bodies[pending.content_hash], clock.now())
            except Exception as e:
                built = e
            self._built[pending.id] = built
        return built

    def _deliver(self, pending: Pending, following: Pending | None = None, after: Pending | None = None) -> None:
        """Send one message with its tries. The next message (``following``) is built by now and goes with it as
        the transaction to begin next (see SmtpTransport); the one after it is built while the server takes
        this one."""
        assert self._recorder is not None
        self._recorder.due()
        message = self._message(pending)
        begin: Following | None = None
        if following is not None:
            next_message = self._build_ahead(following)
            if isinstance(next_message, bytes):
                begin = (self._paths[following.id], following.email, next_message)
        meanwhile = partial(self._build_ahead, after) if after is not None else None
        last: TemporaryFailure | None = None
        for attempt in range(1, max(1, self.policy.tries) + 1):
            if attempt > 1:
                self._flush()  # nothing accepted waits on a backoff
                time.sleep(self.policy.backoff * 2 ** (attempt - 2))
            self.limiter.wait()
            try:
                self.transport.send(self._paths[pending.id], pending.email, message, meanwhile, begin)
            except TemporaryFailure as e:
                last = e
                continue
            except RecipientRefused as e:
                self._bounce(pending, str(e))
                return
            except MessageRejected as e:
                self._fail(pending, str(e))
                return
            self._sent(pending)
            return
        assert last is not None
        self._defer(pending, pending.attempts, str(last))

    def _finish(self, digest_id: int, status: DigestStatus, **values: object) -> None:
        """Record an outcome other than sent, if the claim is still ours (an unsubscribe may have cancelled it)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(Digest)
                .where(Digest.id == digest_id, Digest.status == DigestStatus.SENDING, Digest.claimed_by == self.holder)
                .values(status=status, claimed_by=None, **values)
            )

    def _fail(self, pending: Pending, error: str) -> None:
        self._finish(pending.id, DigestStatus.FAILED, last_error=error)
        self.report.failed += 1
        self.report.errors.append(f"{pending.email}: {error}")
        events("digest.failed", logging.ERROR, digest_id=pending.id, email=pending.email, error=error)

    def _poisoned(self, pending: Pending, error: Exception) -> None:
        """Anything unforeseen while building or sending one digest: that digest fails with the error, logged."""
        events("digest.crashed", logging.ERROR, exc_info=True, digest_id=pending.id, email=pending.email)
        self._fail(pending, f"could not build or send this digest: {type(error).__name__}: {error}")

    def _sent(self, pending: Pending) -> None:
        assert self._recorder is not None
        self._recorder.sent(pending, clock.now())
        self.report.sent += 1

    def _flush(self) -> None:
        """Write the accepted messages still waiting in the recorder's group."""
        if self._recorder is not None:
            self._recorder.flush()

    def _renew(self, pending: list[Pending]) -> datetime:
        """Renew the claim on what is left of a batch that has taken a third of `claim_timeout` so far (a slow
        link): another host must not take over digests this sender still holds and is sending. The time renewed."""
        self._flush()
        now = clock.now()
        with self.engine.begin() as conn:
            conn.execute(update(Digest).where(self._held(pending)).values(claimed_at=now))
        return now

    def _held(self, pending: list[Pending]) -> ColumnElement[bool]:
        """These digests, where this sender still holds them (an unsubscribe may have cancelled one meanwhile)."""
        return and_(
            Digest.id.in_([p.id for p in pending]),
            Digest.status == DigestStatus.SENDING,
            Digest.claimed_by == self.holder,
        )

    def _defer(self, pending: Pending, attempts: int, error: str) -> None:
        if attempts >= self.policy.max_attempts:
            self._fail(pending, f"gave up after {attempts} attempts; last: {error}")
            return
        wait = self.policy.retry_delay * 2 ** (attempts - 1)
        self._finish(pending.id, DigestStatus.DEFERRED, last_error=error, next_attempt_at=clock.now() + wait)
        self.report.deferred += 1
        self.report.errors.append(f"{pending.email}: deferred for {wait}: {error}")
        events(
            "digest.deferred", logging.WARNING, digest_id=pending.id, email=pending.email, wait=str(wait), error=error
        )

    def _bounce(self, pending: Pending, error: str) -> None:
        """A hard bounce: the digest fails for good; at the limit the address is suppressed."""
        now = clock.now()
        with self.engine.begin() as conn:
            conn.execute(
                update(Digest)
                .where(Digest.id == pending.id, Digest.claimed_by == self.holder)
                .values(status=DigestStatus.FAILED, claimed_by=None, last_error=error)
            )
            suppressed = count_hard_bounce(conn, pending.subscriber_id, error, self.policy.bounce_limit, now)
        self.report.bounced += 1
        self.report.suppressed += suppressed
        events(
            "digest.bounced",
            logging.WARNING,
            digest_id=pending.id,
            email=pending.email,
            error=error,
            suppressed=bool(suppressed),
        )
        self.report.errors.append(error + (" (address suppressed)" if suppressed else ""))

    def _release(self, pending: list[Pending]) -> None:
        """Hand claimed digests back untouched (the run stops for a reason that is not theirs): planned, or
        deferred when they were, and the claim's attempt not counted."""
        self._flush()
        if not pending:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(Digest)
                .where(self._held(pending))
                .values(
                    status=case(
                        (Digest.next_attempt_at.is_(None), DigestStatus.PLANNED.value),
                        else_=DigestStatus.DEFERRED.value,
                    ),
                    claimed_by=None,
                    attempts=Digest.attempts - 1,
                )
            )
