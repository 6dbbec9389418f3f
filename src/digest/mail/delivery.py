"""Delivery: claim a due digest, send it with retries, record the outcome; every state change committed.

States: planned -> sending -> sent. A 4xx, a drop or a timeout is retried within the run (with backoff);
after that the digest is `deferred` until `next_attempt_at`, and `failed` once out of attempts. A 5xx for
the recipient fails it for good and counts a hard bounce (the address is suppressed at the limit). A server
that cannot be reached stops the run and puts the digest in hand back: nothing is lost, nothing skipped.

A digest is `sending` only between its claim and its outcome. If the process dies there, the claim is taken
over (at once when its holder on this host is dead, else after `claim_timeout`) and the digest is sent again
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
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection, Engine, and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from digest import clock, logs
from digest.config import Settings
from digest.mail.transport import (
    MessageRejected,
    RecipientRefused,
    ServerUnavailable,
    TemporaryFailure,
    Transport,
)
from digest.store.models import Digest, Resend, Subscriber
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
    for holder in session.scalars(select(Digest.claimed_by).where(Digest.status == DigestStatus.SENDING).distinct()):
        name, _, pid = (holder or "").rpartition(":")
        if name != host or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            dead.append(holder or "")
        except PermissionError:
            pass  # alive, someone else's
    return dead


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


class RateLimiter:
    """Spaces sends to `per_second` and stops at `per_hour`, counting what the store says went out."""

    def __init__(self, policy: DeliveryPolicy, sent_last_hour: int) -> None:
        self.interval = 1.0 / policy.per_second if policy.per_second > 0 else 0.0
        self.per_hour = policy.per_hour
        self.sent = sent_last_hour
        self._last = 0.0

    @property
    def hour_full(self) -> bool:
        return self.per_hour > 0 and self.sent >= self.per_hour

    def wait(self) -> None:
        if self.interval:
            delay = self._last + self.interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
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


@dataclass(frozen=True)
class Pending:
    """A due digest as read before its claim (the claim decides whether this run sends it).

    Its frozen content is read with the batch: nothing a claim changes is needed to build the message.
    """

    digest: Digest
    email: str
    # The subscriber's key, which their links are signed for.
    key: str

    @property
    def id(self) -> int:
        return self.digest.id

    @property
    def subscriber_id(self) -> int:
        return self.digest.subscriber_id

    @property
    def status(self) -> str:
        return self.digest.status


class Deliverer:
    """Sends the due digests of one run through one transport, recording every outcome."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        transport: Transport,
        policy: DeliveryPolicy,
        build: Callable[[Digest, str, str, datetime], bytes],
        return_path: Callable[[int], str],
        report: SendReport,
        batch_size: int = 500,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.factory = factory
        self.transport = transport
        self.policy = policy
        self.build = build
        # The envelope sender of each digest (VERP: bounces name the digest they are about).
        self.return_path = return_path
        self.report = report
        self.batch_size = batch_size
        # Asked before each claim: a stopping worker finishes the message in flight and claims no more.
        self.should_stop = should_stop
        self.holder = holder_id()
        with factory() as session:
            engine = session.get_bind()
        assert isinstance(engine, Engine)
        self.engine = engine

    def run(self) -> None:
        """Deliver every due digest (any period), in id order, until none is left or the run must stop."""
        now = clock.now()
        with self.factory() as session:
            dead = _dead_local_holders(session)
            limiter = RateLimiter(self.policy, sent_since(session, now - timedelta(hours=1)))
        last_id = 0
        while True:
            with self.factory() as session:
                rows = session.execute(
                    select(Digest, Subscriber.email, Subscriber.key)
                    .join(Subscriber, Subscriber.id == Digest.subscriber_id)
                    .where(Digest.id > last_id, _due(clock.now(), self.policy, dead))
                    .order_by(Digest.id)
                    .limit(self.batch_size)
                ).all()
            if not rows:
                return
            for digest, email, key in rows:
                last_id = digest.id
                if self.should_stop():
                    return
                if limiter.hour_full:
                    self.report.rate_limited = True
                    return
                pending = Pending(digest, email, key)
                if not self._claim(pending, dead):
                    continue
                try:
                    self._deliver(pending, limiter)
                except ServerUnavailable as e:
                    self._release(pending)
                    self.report.error, self.report.hint = str(e), e.hint
                    return
                except Exception as e:  # a poison message: this digest fails, the run goes on
                    self._poisoned(pending, e)
            del rows, digest, pending  # let this batch go before the next one is read: one batch in memory

    def _claim(self, pending: Pending, dead: list[str]) -> bool:
        """Mark the digest `sending` by this process (committed) if still due and its subscriber confirmed."""
        now = clock.now()
        # Correlated, so each claim looks up one subscriber (an IN over all confirmed ones grows with the list).
        confirmed = (
            select(Subscriber.id)
            .where(Subscriber.id == Digest.subscriber_id, Subscriber.status == SubscriberStatus.CONFIRMED)
            .exists()
        )
        due = _due(now, self.policy, dead)
        with self.engine.begin() as conn:
            claimed = conn.execute(
                update(Digest)
                .where(Digest.id == pending.id, due, confirmed, Digest.attempts < self.policy.max_attempts)
                .values(
                    status=DigestStatus.SENDING, claimed_by=self.holder, claimed_at=now, attempts=Digest.attempts + 1
                )
            ).rowcount
            if claimed:
                return True
            cancelled = conn.execute(
                update(Digest)
                .where(Digest.id == pending.id, due, ~confirmed)
                .values(status=DigestStatus.CANCELLED, claimed_by=None)
            ).rowcount
            # Out of attempts (a process died with it in hand each time): failed, never claimed again.
            exhausted = conn.execute(
                update(Digest)
                .where(Digest.id == pending.id, due, Digest.attempts >= self.policy.max_attempts)
                .values(
                    status=DigestStatus.FAILED,
                    claimed_by=None,
                    last_error=func.coalesce(Digest.last_error, "")
                    + f" (gave up: {self.policy.max_attempts} attempts, the last never finished)",
                )
            ).rowcount
        self.report.cancelled += cancelled
        if exhausted:
            self.report.failed += 1
            self.report.errors.append(f"{pending.email}: gave up after {self.policy.max_attempts} attempts")
            events("digest.failed", logging.ERROR, digest_id=pending.id, email=pending.email, reason="out of attempts")
        return False

    def _deliver(self, pending: Pending, limiter: RateLimiter) -> None:
        message = self.build(pending.digest, pending.email, pending.key, clock.now())
        last: TemporaryFailure | None = None
        for attempt in range(1, max(1, self.policy.tries) + 1):
            if attempt > 1:
                time.sleep(self.policy.backoff * 2 ** (attempt - 2))
            limiter.wait()
            try:
                self.transport.send(self.return_path(pending.id), pending.email, message)
            except TemporaryFailure as e:
                last = e
                continue
            except RecipientRefused as e:
                self._bounce(pending, str(e))
                return
            except MessageRejected as e:
                self._fail(pending, str(e))
                return
            limiter.sent += 1
            self._sent(pending)
            return
        assert last is not None
        self._defer(pending, pending.digest.attempts + 1, str(last))  # read before the claim, which counts one

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
        now = clock.now()
        with self.engine.begin() as conn:
            # By id and holder, not state: an unsubscribe that cancelled it in flight does not hide a sent message.
            conn.execute(
                update(Digest)
                .where(Digest.id == pending.id, Digest.claimed_by == self.holder)
                .values(status=DigestStatus.SENT, sent_at=now, claimed_by=None, last_error=None, next_attempt_at=None)
            )
            conn.execute(
                update(Subscriber)
                .where(Subscriber.id == pending.subscriber_id, Subscriber.bounces > 0)
                .values(bounces=0)  # bounces count in a row: an accepted message clears them
            )
        self.report.sent += 1

    def _defer(self, pending: Pending, attempts: int, error: str) -> None:
        if attempts >= self.policy.max_attempts:
            self._fail(pending, f"gave up after {attempts} attempts; last: {error}")
            return
        wait = self.policy.retry_delay * 2 ** (attempts - 1)
        self._finish(pending.id, DigestStatus.DEFERRED, last_error=error, next_attempt_at=clock.now() + wait)
        self.report.deferred += 1
        self.report.errors.append(f"{pending.email}: deferred for {wait}: {error}")
        events("digest.deferred", logging.WARNING, digest_id=pending.id, email=pending.email, wait=str(wait),
               error=error)  # fmt: skip

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
        events("digest.bounced", logging.WARNING, digest_id=pending.id, email=pending.email, error=error,
               suppressed=bool(suppressed))  # fmt: skip
        self.report.errors.append(error + (" (address suppressed)" if suppressed else ""))

    def _release(self, pending: Pending) -> None:
        """Hand a claimed digest back untouched: the run stops for a reason that is not this digest's."""
        back = DigestStatus.DEFERRED if pending.status == DigestStatus.DEFERRED else DigestStatus.PLANNED
        self._finish(pending.id, back, attempts=Digest.attempts - 1)
