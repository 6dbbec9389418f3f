"""Delivery: the claim loop. Claim ready digests, send each with retries, record the outcome (the writes are
digest.store.digests'); every state change committed.

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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache, partial
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from digest import clock, logs, metrics
from digest.config import Settings
from digest.mail.plan.planner import PlanReport
from digest.mail.replies.classify import HARD, classify
from digest.mail.send.holders import dead_local_holders, holder_id
from digest.mail.send.ratelimit import RateLimiter
from digest.mail.send.transport import (
    Following,
    MessageRejected,
    RecipientRefused,
    ServerUnavailable,
    TemporaryFailure,
    Transport,
)
from digest.store import digests
from digest.store.digests import Claimed, SentRecorder
from digest.store.models import Content
from digest.store.states import BounceKind, Delivery, DigestStatus

events = logs.EventLog(__name__)

# Seconds between looks for claims left by dead processes of this host (taken over at the next claim after that).
DEAD_LOOK = 1.0
# Digests claimed at once: one UPDATE ... RETURNING for them all. Small enough that several senders share a run
# evenly and a dead sender's claims are few; large enough that claiming costs little per message.
CLAIM_BATCH = 100


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
class SendReport(PlanReport):
    """What one send run did: its planning (PlanReport's counts), then its deliveries."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    bounced: int = 0
    suppressed: int = 0
    cancelled: int = 0
    # The sunset after the run (digest.mail.send.sunset): asked "do you still want these?", and gone unanswered.
    reconfirm_asked: int = 0
    stopped_receiving: int = 0
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


def _answered(reply: str, started: float) -> None:
    """One SMTP transaction's answer class and time, in this process's metrics."""
    _replies(reply).inc()
    metrics.SMTP_SECONDS.observe(time.perf_counter() - started)


@cache
def _replies(reply: str) -> Any:
    """The counter of one answer class (prometheus_client's labels() takes a lock and builds a key each time)."""
    return metrics.SMTP_REPLIES.labels(reply)


@cache
def _deliveries(relay: str, outcome: Delivery) -> Any:
    """The counter of one relay's outcome (see _replies)."""
    return metrics.DELIVERIES.labels(relay, outcome)


class Deliverer:
    """Sends the claimable digests of one run through one transport, recording every outcome.

    Any number of Deliverers (processes, hosts) may run on one store: each claims batches of due digests
    (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so they never wait for each other; one writer at a time on SQLite),
    sends them, and records the outcomes; a digest is claimed by one of them only.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        transport: Transport,
        policy: DeliveryPolicy,
        build: Callable[[Claimed, str, datetime], bytes],
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
        self.limiter = RateLimiter(factory, policy.per_second, policy.per_hour)
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
        """The dead local processes that hold claims, looked up at most once a `DEAD_LOOK` (ix_digests_sending makes
        a look cheap, but it still opens a session and reads /proc for each holder: not before every claim)."""
        if fresh or time.monotonic() - self._dead_at >= DEAD_LOOK:
            with self.factory() as session:
                self._dead = dead_local_holders(session)
            self._dead_at = time.monotonic()
        return self._dead

    def _send_batch(self, batch: list[Claimed]) -> bool:
        """Send a claimed batch; False when the run must stop (what is left of the batch is handed back)."""
        self._load_bodies({p.content_hash for p in batch})
        self._built.clear()  # what an earlier batch built and never sent (it stopped) is not needed
        self._paths = {p.id: self.return_path(p.id) for p in batch}
        claimed_at = clock.now()
        for n, claimed in enumerate(batch):
            if self.should_stop():
                self._release(batch[n:])
                return False
            if clock.now() - claimed_at >= self.policy.claim_timeout / 3:
                claimed_at = self._renew(batch[n:])
            try:
                self._deliver(claimed, *batch[n + 1 : n + 3])
            except ServerUnavailable as e:
                self._release(batch[n:])
                self.report.error, self.report.hint = str(e), e.hint
                return False
            except Exception as e:  # a poison message: this digest fails, the run goes on
                self._poisoned(claimed, e)
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
        """Before claiming: ready digests of subscribers no longer confirmed are cancelled, and digests out of
        attempts (a process died with each of them in hand) are failed, never claimed again."""
        dead = self._dead_holders(fresh=True)
        cancelled, exhausted = digests.sweep(
            self.engine, now, self.policy.claim_timeout, dead, self.policy.max_attempts
        )
        self.report.cancelled += cancelled
        self._count(Delivery.CANCELLED, cancelled)
        for digest_id in exhausted:
            self.report.failed += 1
            self._count(Delivery.FAILED)
            self.report.errors.append(f"digest {digest_id}: gave up after {self.policy.max_attempts} attempts")
            events("digest.failed", logging.ERROR, digest_id=digest_id, reason="out of attempts")

    def _claim_batch(self, limit: int, dead: list[str]) -> list[Claimed]:
        """Up to ``limit`` ready digests, now this sender's (see digest.store.digests.claim)."""
        policy = self.policy
        return digests.claim(
            self.engine,
            self.holder,
            clock.now(),
            limit,
            policy.claim_timeout,
            dead,
            policy.max_attempts,
            policy.per_hour,
        )

    def _message(self, claimed: Claimed) -> bytes:
        """The message of ``claimed``: built ahead while the server took one before, else now. What building
        raised is raised here, for this digest (a poison message fails alone)."""
        built = self._built.pop(claimed.id, None)
        if built is None:
            return self.build(claimed, self._bodies[claimed.content_hash], clock.now())
        if isinstance(built, Exception):
            raise built
        return built

    def _build_ahead(self, claimed: Claimed) -> bytes | Exception:
        """Build a message of the batch ahead of its turn (kept until then); never raises (see _message)."""
        built = self._built.get(claimed.id)
        if built is None:  # else built already, on an earlier try of the message before
            try:
                built = self.build(claimed, self._bodies[claimed.content_hash], clock.now())
            except Exception as e:
                built = e
            self._built[claimed.id] = built
        return built

    def _deliver(self, claimed: Claimed, following: Claimed | None = None, after: Claimed | None = None) -> None:
        """Send one message with its tries. The next message (``following``) is built by now and goes with it as
        the transaction to begin next (see SmtpTransport); the one after it is built while the server takes
        this one."""
        assert self._recorder is not None
        self._recorder.flush_if_old()
        message = self._message(claimed)
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
            started = time.perf_counter()
            try:
                self.transport.send(self._paths[claimed.id], claimed.email, message, meanwhile, begin)
            except TemporaryFailure as e:
                _answered("4xx", started)
                last = e
                continue
            except RecipientRefused as e:
                _answered("5xx", started)
                verdict = classify(text=str(e), permanent=True)
                hard = verdict.kind == HARD
                said = f"{e} ({verdict.reason})" if hard else f"soft bounce ({verdict.reason}): {e}"
                refusal = digests.Refusal(hard, verdict.status, verdict.reason, said)
                if refusal.hard:
                    self._bounce(claimed, refusal)
                else:
                    self._refused_softly(claimed, refusal)
                return
            except MessageRejected as e:
                _answered("5xx", started)
                self._fail(claimed, str(e))
                return
            _answered("2xx", started)
            self._sent(claimed)
            return
        assert last is not None
        self._defer(claimed, claimed.attempts, str(last))

    def _finish(self, digest_id: int, status: DigestStatus, **values: object) -> None:
        """Record an outcome other than sent, if the claim is still ours (an unsubscribe may have cancelled it)."""
        digests.finish(self.engine, digest_id, self.holder, status, **values)

    def _count(self, outcome: Delivery, n: int = 1) -> None:
        """Count outcomes in digest_deliveries_total, under the relay they went through."""
        _deliveries(self._relay(), outcome).inc(n)

    def _relay(self) -> str:
        """The relay the outcome is about (digest.mail.send.relays: its name, no credentials), or "outbox"."""
        return str(getattr(self.transport, "relay", "outbox"))

    def _fail(self, claimed: Claimed, error: str) -> None:
        self._finish(claimed.id, DigestStatus.FAILED, last_error=error)
        self.report.failed += 1
        self._count(Delivery.FAILED)
        self.report.errors.append(f"{claimed.email}: {error}")
        events("digest.failed", logging.ERROR, digest_id=claimed.id, email=claimed.email, error=error)

    def _poisoned(self, claimed: Claimed, error: Exception) -> None:
        """Anything unforeseen while building or sending one digest: that digest fails with the error, logged."""
        events("digest.crashed", logging.ERROR, exc_info=True, digest_id=claimed.id, email=claimed.email)
        self._fail(claimed, f"could not build or send this digest: {type(error).__name__}: {error}")

    def _sent(self, claimed: Claimed) -> None:
        assert self._recorder is not None
        self._recorder.sent(claimed, clock.now())
        self.report.sent += 1
        self._count(Delivery.SENT)

    def _flush(self) -> None:
        """Write the accepted messages still waiting in the recorder's group."""
        if self._recorder is not None:
            self._recorder.flush()

    def _renew(self, claimed: list[Claimed]) -> datetime:
        """Renew the claim on what is left of a batch that has taken a third of `claim_timeout` so far (a slow
        link): another host must not take over digests this sender still holds and is sending. The time renewed."""
        self._flush()
        now = clock.now()
        digests.renew(self.engine, [c.id for c in claimed], self.holder, now)
        return now

    def _defer(self, claimed: Claimed, attempts: int, error: str) -> None:
        if attempts >= self.policy.max_attempts:
            self._fail(claimed, f"gave up after {attempts} attempts; last: {error}")
            return
        wait = self.policy.retry_delay * 2 ** (attempts - 1)
        self._finish(claimed.id, DigestStatus.DEFERRED, last_error=error, next_attempt_at=clock.now() + wait)
        self.report.deferred += 1
        self._count(Delivery.DEFERRED)
        self.report.errors.append(f"{claimed.email}: deferred for {wait}: {error}")
        events(
            "digest.deferred", logging.WARNING, digest_id=claimed.id, email=claimed.email, wait=str(wait), error=error
        )

    def _bounce(self, claimed: Claimed, refusal: digests.Refusal) -> None:
        """A hard bounce: the digest fails for good; at the limit the address is suppressed (one transaction)."""
        now = clock.now()
        error = refusal.error
        suppressed = digests.refused(self.engine, claimed, self.holder, refusal, self.policy.bounce_limit, now)
        self.report.bounced += 1
        self._count(Delivery.BOUNCED)
        metrics.BOUNCES.labels(BounceKind.HARD, refusal.reason, "smtp").inc()
        self.report.suppressed += suppressed
        events(
            "digest.bounced",
            logging.WARNING,
            digest_id=claimed.id,
            email=claimed.email,
            error=error,
            suppressed=bool(suppressed),
        )
        self.report.errors.append(error + (" (address suppressed)" if suppressed else ""))

    def _refused_softly(self, claimed: Claimed, refusal: digests.Refusal) -> None:
        """The receiver refused this message, not the address (a full mailbox, a policy, a block): this digest
        fails and the soft bounce is kept with its reason (repeated ones lead to a "do you still want these?",
        digest.mail.send.sunset); the address stays, and the next digest is tried as usual."""
        digests.refused(self.engine, claimed, self.holder, refusal, self.policy.bounce_limit, clock.now())
        error = refusal.error
        self.report.failed += 1
        self._count(Delivery.FAILED)
        metrics.BOUNCES.labels(BounceKind.SOFT, refusal.reason, "smtp").inc()
        self.report.errors.append(f"{claimed.email}: {error}")
        events("digest.soft_bounced", logging.WARNING, digest_id=claimed.id, email=claimed.email, error=error)

    def _release(self, claimed: list[Claimed]) -> None:
        """Hand claimed digests back untouched: the run stops for a reason that is not theirs."""
        self._flush()
        digests.hand_back(self.engine, [c.id for c in claimed], self.holder)
