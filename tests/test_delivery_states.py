"""The delivery state machine, model-checked: Hypothesis drives the store's own delivery operations (what senders
do: claim, record an accepted message, defer a 4xx or a lost connection, fail a 5xx and count its bounce, hand
back, renew), interleaved with kills (a sender gone with its unrecorded group and its claims), claims timing out,
unsubscribes, erasures and new weeks planned, on a real store (SQLite and PostgreSQL).

After every step: each digest is in exactly one state and consistent with it; no digest went out under a second
Message-ID; nothing the server accepted is recorded as anything but sent (or cancelled after its person left);
repeats stay within what killed senders had not yet recorded (`sent_per_commit`); nobody who left is claimed for.

The "server" here is the test's record of what it accepted: the subject is the store's state machine, whose
transactions are all real. `make soak` runs many more examples (DIGEST_SOAK=1).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.config import Settings
from digest.errors import DigestError
from digest.mail.plan.planner import PlanPolicy, plan_due
from digest.mail.send.delivery import Deliverer, DeliveryPolicy, SendReport
from digest.mail.send.resend import resend
from digest.mail.send.transport import Following, MaildirTransport, RecipientRefused, TemporaryFailure
from digest.store import db, digests
from digest.store.bounces import count_hard_bounce
from digest.store.digests import Claimed, SentRecorder
from digest.store.models import (
    Base,
    Digest,
    Membership,
    Practice,
    Resend,
    Subscriber,
    Theme,
)
from digest.store.states import DigestStatus, SubscriberStatus
from digest.subscriptions import subscribers

PEOPLE = ("ada@example.org", "bo@example.org", "cy@example.org")
GROUP = 3  # sent_per_commit of every sender here
CLAIM_TIMEOUT = timedelta(minutes=10)
MAX_ATTEMPTS = 4
SOAK = bool(os.environ.get("DIGEST_SOAK"))
# What the server answers a message: accepted (twice as likely), a 4xx, a 5xx, or the connection lost.
OUTCOMES = st.sampled_from(["accepted", "accepted", "4xx", "5xx", "lost"])


@dataclass
class ScriptedServer:
    """The far end of a real Deliverer: answers each message as scripted (then accepts), and tells the machine what
    it accepted, by the digest the envelope sender names."""

    machine: DeliveryMachine
    answers: list[str]

    def send(
        self,
        sender: str,
        recipient: str,
        message: bytes,
        meanwhile: Callable[[], object] | None = None,
        following: Following | None = None,
    ) -> None:
        if meanwhile is not None:
            meanwhile()
        answer = self.answers.pop(0) if self.answers else "accepted"
        if answer in ("4xx", "lost"):
            raise TemporaryFailure(f"{answer} for {recipient}")
        if answer == "5xx":
            raise RecipientRefused(f"550 5.1.1 {recipient}: no such user")
        digest_id = int(sender.split("+", 1)[1].split("@", 1)[0])
        message_id = message.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
        self.machine.accepted.setdefault(digest_id, []).append(message_id)
        self.machine.unrecorded.discard(digest_id)

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "scripted"


@dataclass
class Sender:
    holder: str
    recorder: SentRecorder
    held: list[Claimed] = field(default_factory=list)


class DeliveryMachine(RuleBasedStateMachine):
    url: str = ""
    settings: Settings

    def __init__(self) -> None:
        super().__init__()
        self.engine = db.make_engine(self.url)
        self.factory: sessionmaker[Session] = db.session_factory(self.engine)
        with self.factory() as session, session.begin():
            for table in reversed(Base.metadata.sorted_tables):
                if table.name != "alembic_version":
                    session.execute(delete(table))
        self.now = datetime(2026, 11, 10, 10, tzinfo=UTC)
        self.week = 0
        self.senders: list[Sender] = []
        self.started = 0
        self.killed: list[str] = []
        # What the server accepted, per digest: the Message-IDs (a repeat is the same one, if all is well).
        self.accepted: dict[int, list[str]] = {}
        # Accepted messages that killed senders had not recorded: the repeats they may cause.
        self.repeat_budget = 0
        self.gone: set[str] = set()
        self.unrecorded: set[int] = set()
        # Resends, per digest: each under a Message-ID of its own, recorded.
        self.resent: dict[int, list[str]] = {}
        self.outbox = tempfile.mkdtemp(prefix="digest-states-outbox-")
        with self.factory() as session, session.begin():
            session.add(Theme(name="Water", slug="water", created_at=self.now, changed_at=self.now))
            for email in PEOPLE:
                subscribers.subscribe(session, email, ["water"], self.now, confirmed=True)
        self.new_week()

    def teardown(self) -> None:
        for sender in self.senders:
            sender.recorder.close()
        self.engine.dispose()
        shutil.rmtree(self.outbox, ignore_errors=True)

    # -- the world -------------------------------------------------------------------------------------------

    @rule()
    def new_week(self) -> None:
        """A practice joins the theme, a week passes, planning runs: one new digest for everyone still here."""
        self.week += 1
        with self.factory() as session, session.begin():
            theme = session.scalars(select(Theme)).one()
            uid = secrets.token_hex(8)
            practice = Practice(uid=uid, identity=f"text:{uid}", title=f"Practice {self.week}", summary="s",
                                first_seen_at=self.now, updated_at=self.now, content_hash=uid)  # fmt: skip
            session.add(practice)
            session.flush()
            session.add(Membership(practice_id=practice.id, theme_id=theme.id, added_at=self.now))
        self._advance(timedelta(days=7))
        plan_due(self.factory, PlanPolicy.from_settings(self.settings), self.now)

    @rule(minutes=st.sampled_from([1, 11, 30]))
    def time_passes(self, minutes: int) -> None:
        """Claims of dead senders time out after CLAIM_TIMEOUT; deferred digests come due again. A live sender
        renews what it holds as it goes (at a third of the timeout), so its claims never look abandoned."""
        self._advance(timedelta(minutes=minutes))

    def _advance(self, by: timedelta) -> None:
        """Time goes by for live senders as for the Deliverer: a group is written within a second, and what a
        sender still holds is renewed at a third of the timeout, long before it could look abandoned."""
        self.now += by
        for sender in self.senders:
            sender.recorder.flush()
            digests.renew(self.engine, [c.id for c in sender.held], sender.holder, self.now)

    @rule(who=st.sampled_from(PEOPLE))
    def unsubscribe(self, who: str) -> None:
        with self.factory() as session, session.begin():
            found = session.scalar(select(Subscriber).where(Subscriber.email == who))
            if found is not None and found.status != SubscriberStatus.UNSUBSCRIBED:
                subscribers.unsubscribe_subscriber(session, found, self.now)
        self.gone.add(who)

    @rule(who=st.sampled_from(PEOPLE))
    def erase(self, who: str) -> None:
        with self.factory() as session, session.begin():
            found = session.scalar(select(Subscriber).where(Subscriber.email == who))
            if found is not None:
                subscribers.erase(session, found, self.now)
        self.gone.add(who)
        self.accepted = {k: v for k, v in self.accepted.items() if self._exists(k)}

    def _exists(self, digest_id: int) -> bool:
        with self.factory() as session:
            return session.get(Digest, digest_id) is not None

    # -- senders ---------------------------------------------------------------------------------------------

    @initialize()
    def two_senders(self) -> None:
        self.start_sender()
        self.start_sender()

    @precondition(lambda self: len(self.senders) < 2)
    @rule()
    def start_sender(self) -> None:
        self.started += 1
        holder = f"test-host:{10_000 + self.started}"  # never this host: none looks dead by its pid
        self.senders.append(Sender(holder, SentRecorder(self.engine, holder, GROUP, max_age=3600)))

    @precondition(lambda self: bool(self.senders))
    @rule(n=st.integers(0, 1))
    def claim(self, n: int) -> None:
        sender = self.senders[n % len(self.senders)]
        sender.recorder.flush()  # as the Deliverer does before claiming
        digests.sweep(self.engine, self.now, CLAIM_TIMEOUT, self.killed, MAX_ATTEMPTS)
        got = digests.claim(self.engine, sender.holder, self.now, 2, CLAIM_TIMEOUT, self.killed, MAX_ATTEMPTS)
        emails = {c.email for c in got}
        assert not emails & self.gone, f"claimed for someone who left: {emails & self.gone}"
        sender.held += got

    @precondition(lambda self: any(s.held for s in self.senders))
    @rule(n=st.integers(0, 1), outcome=OUTCOMES)
    def send(self, n: int, outcome: str) -> None:
        holding = [s for s in self.senders if s.held]
        self._send(holding[n % len(holding)], outcome)

    def _send(self, sender: Sender, outcome: str) -> None:
        claimed = sender.held.pop(0)
        if outcome == "accepted":
            self.accepted.setdefault(claimed.id, []).append(claimed.message_id)
            self.unrecorded.discard(claimed.id)
            sender.recorder.sent(claimed, self.now)
        elif outcome in ("4xx", "lost"):
            if claimed.attempts >= MAX_ATTEMPTS:
                digests.finish(self.engine, claimed.id, sender.holder, DigestStatus.FAILED, last_error=outcome)
            else:
                digests.finish(self.engine, claimed.id, sender.holder, DigestStatus.DEFERRED, last_error=outcome,
                               next_attempt_at=self.now + timedelta(minutes=15))  # fmt: skip
        else:
            with self.engine.begin() as conn:
                digests.fail_refused(conn, claimed.id, sender.holder, "550 no such user")
                count_hard_bounce(conn, claimed.subscriber_id, "550 no such user", 2, self.now)

    @rule(who=st.sampled_from(PEOPLE))
    def operator_resends(self, who: str) -> None:
        """An operator resends a person's newest sent digest (digest.mail.send.resend, into a Maildir): a new
        Message-ID, recorded as a resend; refused for anyone who left."""
        clock.set_fixed_now(self.now)
        try:
            done = resend(self.factory, self.settings, MaildirTransport(Path(self.outbox) / "maildir"), who)
        except DigestError:
            return
        finally:
            clock.set_fixed_now(None)
        assert who not in self.gone, f"resent to {who}, who left"
        with self.factory() as session:
            digest_id = session.scalars(
                select(Digest.id).join(Subscriber).where(Subscriber.email == who, Digest.period == done.period)
            ).one()
        self.resent.setdefault(digest_id, []).append(done.message_id)

    @precondition(lambda self: bool(self.senders))
    @rule(n=st.integers(0, 1), outcomes=st.lists(OUTCOMES, min_size=1, max_size=4))
    def work(self, n: int, outcomes: list[str]) -> None:
        """A sender's run in one step: claim when it holds nothing, then send a few (deeper runs per example)."""
        sender = self.senders[n % len(self.senders)]
        if not sender.held:
            self.claim(n % len(self.senders))
        for outcome in outcomes:
            if sender.held:
                self._send(sender, outcome)

    @rule(answers=st.lists(OUTCOMES, max_size=6), stop_after=st.none() | st.integers(0, 3))
    def deliverer_runs(self, answers: list[str], stop_after: int | None) -> None:
        """The real Deliverer (claims, builds, sends, records, defers, bounces, hands back), beside the senders
        driven by hand: a whole run, or one told to stop after a few messages."""
        asked = 0

        def should_stop() -> bool:
            nonlocal asked
            asked += 1
            return stop_after is not None and asked > stop_after

        policy = replace(DeliveryPolicy.from_settings(self.settings), tries=1, backoff=0.0, max_attempts=MAX_ATTEMPTS,
                         claim_timeout=CLAIM_TIMEOUT, sent_per_commit=GROUP)  # fmt: skip
        clock.set_fixed_now(self.now)
        try:
            Deliverer(
                self.factory,
                ScriptedServer(self, list(answers)),
                policy,
                build=lambda claimed, body, now: f"Message-ID: {claimed.message_id}\r\n\r\n{body}".encode(),
                return_path=lambda digest_id: f"bounces+{digest_id}@example.org",
                report=SendReport(),
                batch_size=2,
                should_stop=should_stop,
            ).run()
        finally:
            clock.set_fixed_now(None)

    @precondition(lambda self: bool(self.senders))
    @rule(n=st.integers(0, 1))
    def stop(self, n: int) -> None:
        """A clean stop: the group recorded, the rest handed back."""
        sender = self.senders.pop(n % len(self.senders))
        sender.recorder.flush()
        digests.hand_back(self.engine, [c.id for c in sender.held], sender.holder)
        sender.recorder.close()

    @precondition(lambda self: bool(self.senders))
    @rule(n=st.integers(0, 1), seen_dead=st.booleans())
    def kill(self, n: int, seen_dead: bool) -> None:
        """kill -9: whatever the recorder had not written is gone, the claims stay with a dead holder: taken over at
        once when it is seen dead (a process of this host), else once they time out (another host's)."""
        sender = self.senders.pop(n % len(self.senders))
        self.repeat_budget += sender.recorder.waiting
        # Accepted, never recorded: the store cannot know; whoever takes the claim over sends it again, and that
        # try may be deferred or fail like any other (the limit the design states: such a message may go twice).
        self.unrecorded |= {row[1] for row in sender.recorder._rows}
        sender.recorder._rows.clear()  # never written: the process is gone
        sender.recorder.close()
        if seen_dead:
            self.killed.append(sender.holder)

    # -- invariants ------------------------------------------------------------------------------------------

    @invariant()
    def each_digest_in_one_consistent_state(self) -> None:
        with self.factory() as session:
            for d in session.scalars(select(Digest)):
                assert isinstance(d.status, DigestStatus)
                if d.status == DigestStatus.SENDING:
                    assert d.claimed_by and d.claimed_at is not None, d.id
                if d.status == DigestStatus.SENT:
                    assert d.sent_at is not None and d.claimed_by is None, d.id
                if d.status == DigestStatus.DEFERRED:
                    assert d.next_attempt_at is not None, d.id

    @invariant()
    def one_message_id_per_digest_and_repeats_bounded(self) -> None:
        with self.factory() as session:
            ids = {
                digest_id: message_id for digest_id, message_id in session.execute(select(Digest.id, Digest.message_id))
            }
        for digest_id, sent in self.accepted.items():
            if digest_id not in ids:
                continue  # erased with its person
            assert set(sent) == {ids[digest_id]}, f"digest {digest_id} went out as {sent}"
        with self.factory() as session:
            recorded = {(d, m) for d, m in session.execute(select(Resend.digest_id, Resend.message_id))}
        for digest_id, again in self.resent.items():
            if digest_id in ids:
                assert ids[digest_id] not in again and len(set(again)) == len(again), again
                assert {(digest_id, m) for m in again} <= recorded, f"a resend of digest {digest_id} is not recorded"
        repeats = sum(len(sent) - 1 for sent in self.accepted.values())
        assert repeats <= self.repeat_budget, f"{repeats} repeats, but killed senders held {self.repeat_budget}"

    @invariant()
    def nothing_is_sent_that_no_server_accepted(self) -> None:
        """The other way round: a digest recorded sent was accepted (a bug that records a claim as sent, or an
        outcome as the wrong digest's, shows here)."""
        with self.factory() as session:
            sent = set(session.scalars(select(Digest.id).where(Digest.status == DigestStatus.SENT)))
        assert sent <= set(self.accepted), f"recorded sent, never accepted: {sorted(sent - set(self.accepted))}"

    @invariant()
    def nothing_accepted_is_lost(self) -> None:
        """An accepted message is recorded sent once its sender has written its group; until then it waits in that
        group. Only a killed sender leaves one `sending` (whoever takes the claim over sends it again, and then the
        store knows no more of it than of any message), and only a person who left may see it cancelled."""
        live = {s.holder: {row[1] for row in s.recorder._rows} for s in self.senders}
        with self.factory() as session:
            rows = session.execute(
                select(Digest.id, Digest.status, Digest.claimed_by, Subscriber.status).join(
                    Subscriber, Subscriber.id == Digest.subscriber_id
                )
            ).all()
        for digest_id, status, holder, person in rows:
            if digest_id not in self.accepted or digest_id in self.unrecorded or status == DigestStatus.SENT:
                continue
            if status == DigestStatus.SENDING:
                if holder in live:
                    assert digest_id in live[holder], f"digest {digest_id} was accepted, written, and is not sent"
                continue
            assert status == DigestStatus.CANCELLED and person != SubscriberStatus.CONFIRMED, (
                f"digest {digest_id} was accepted but is {status}"
            )


def _run(url: str, settings_: Settings, examples: int) -> None:
    DeliveryMachine.url = url
    DeliveryMachine.settings = replace(settings_, database_url=url)
    run_state_machine_as_test(
        DeliveryMachine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=30,
            deadline=None,
            derandomize=not SOAK,  # CI: the same examples every run; a soak explores
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_delivery_state_machine_on_sqlite(settings: Settings, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'states.db'}"
    db.upgrade(db.make_engine(url))
    _run(url, settings, 2000 if SOAK else 200)


def test_delivery_state_machine_on_postgresql(settings: Settings, pg_url: str) -> None:
    engine = db.make_engine(pg_url)
    db.upgrade(engine)
    engine.dispose()
    _run(pg_url, settings, 500 if SOAK else 40)
