"""Delivery against a real SMTP server that fails on cue: retries, deferral, bounces, suppression, limits."""

from __future__ import annotations

import json
import re
import select as io_select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.config import Settings
from digest.mail.plan.planner import PlanPolicy, plan_due
from digest.mail.send.delivery import DeliveryPolicy, SendReport
from digest.mail.send.resend import resend
from digest.mail.send.runs import deliver_due, plan_and_send
from digest.mail.send.transport import transport_for
from digest.store.digests import any_claimable
from digest.store.models import Bounce, Digest, Subscriber
from digest.store.queries import ledger
from digest.subscriptions.subscribers import get_subscriber
from tests.conftest import Cli, at, fixture_path, free_port, smtp_controller
from tests.smtpfaults import FaultyHandler
from tests.test_send import add, create_themes, ingest

ADA, BO, CY = "ada@example.org", "bo@example.org", "cy@example.org"


@pytest.fixture
def faulty() -> Iterator[tuple[FaultyHandler, str]]:
    handler = FaultyHandler(stall=1.5)
    with smtp_controller(handler) as url:
        yield handler, url


@pytest.fixture(params=["auto", "off"])
def mail(settings: Settings, faulty: tuple[FaultyHandler, str], request: pytest.FixtureRequest) -> Settings:
    """Every test of delivery runs both ways: pipelined (smtp_pipelining = auto, the server offers PIPELINING)
    and with smtplib's own sendmail (off)."""
    return replace(
        settings, smtp_url=faulty[1], smtp_timeout=0.5, send_tries=3, send_backoff=0.01, smtp_pipelining=request.param
    )


def week_with_news(sessions: sessionmaker[Session], *emails: str) -> None:
    """Subscribers of one theme, practices added after they confirmed, the clock at the weekly slot."""
    at("2026-11-10T10:00:00Z")
    create_themes(sessions, "Water and Sanitation")
    for email in emails:
        add(sessions, email, "Water and Sanitation")
    at("2026-11-12T10:00:00Z")
    ingest(sessions, "listing-water.txt")
    at("2026-11-16T09:00:00Z")


def send(sessions: sessionmaker[Session], settings: Settings) -> SendReport:
    return plan_and_send(sessions, settings, transport_for(settings))


def retry(sessions: sessionmaker[Session], settings: Settings) -> SendReport:
    """What the worker's retry job does: deliver what is due, plan nothing."""
    return deliver_due(sessions, settings, transport_for(settings), SendReport())


def digest_of(sessions: sessionmaker[Session], email: str) -> Digest:
    with sessions() as s:
        digest = s.scalar(select(Digest).join(Subscriber).where(Subscriber.email == email))
        assert digest is not None
        return digest


def subscriber(sessions: sessionmaker[Session], email: str) -> Subscriber:
    with sessions() as s:
        found = s.scalar(select(Subscriber).where(Subscriber.email == email))
        assert found is not None
        return found


def counts(handler: FaultyHandler, *emails: str) -> list[int]:
    return [len(handler.to(e)) for e in emails]


def test_one_connection_for_many_messages(
    sessions: sessionmaker[Session], mail: Settings, faulty: tuple[FaultyHandler, str]
) -> None:
    handler = faulty[0]
    week_with_news(sessions, ADA, BO, CY, "di@example.org", "ed@example.org")
    assert send(sessions, mail).sent == 5
    assert handler.ehlo == 1 and counts(handler, ADA, BO, CY) == [1, 1, 1]


class SlowLink(FaultyHandler):
    """Each accepted message takes ``step`` on the clock; what another host would see as abandoned is noted then."""

    def __init__(self, step: timedelta, policy: DeliveryPolicy, sessions: sessionmaker[Session]) -> None:
        super().__init__()
        self.step, self.policy, self.sessions = step, policy, sessions
        self.abandoned: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        clock.set_fixed_now(clock.now() + self.step)
        with self.sessions() as s:
            self.abandoned.append(any_claimable(s, clock.now(), self.policy.claim_timeout))
        return answer


def test_a_batch_on_a_slow_link_renews_its_claim(sessions: sessionmaker[Session], mail: Settings) -> None:
    """Six messages of one claimed batch, each taking a quarter of claim_timeout: without renewal the last ones
    would look abandoned to another host (claimed longer ago than claim_timeout) and be sent twice."""
    people = [f"reader{n}@example.org" for n in range(6)]
    week_with_news(sessions, *people)
    policy = DeliveryPolicy.from_settings(mail)
    handler = SlowLink(policy.claim_timeout / 4, policy, sessions)
    with smtp_controller(handler) as url:
        report = send(sessions, replace(mail, smtp_url=url, smtp_timeout=5))
    assert report.sent == 6 and counts(handler, *people) == [1] * 6
    assert handler.abandoned == [False] * 6  # past claim_timeout since the batch was claimed, never abandoned
    with sessions() as s:
        assert set(s.scalars(select(Digest.attempts))) == {1}


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])
@pytest.mark.parametrize("fault", ["451", "451rcpt", "drop", "stall"])
def test_transient_failures_are_retried_within_the_run(
    sessions: sessionmaker[Session], mail: Settings, faulty: tuple[FaultyHandler, str], fault: str, pipelining: bool
) -> None:
    handler = faulty[0]
    handler.pipelining = pipelining
    handler.script = {BO: [fault, fault]}
    week_with_news(sessions, ADA, BO, CY)
    report = send(sessions, mail)
    assert (report.sent, report.deferred, report.failed) == (3, 0, 0)
    assert counts(handler, ADA, BO, CY) == [1, 1, 1]  # exactly once each, whatever happened on the way
    # Each message is its recipient's own: the next one, built while the server took this one, is not mixed up
    # with it on a retry.
    assert all(r.message["To"] == r.recipients[0] for r in handler.received)
    assert [r.message["Message-ID"] for r in handler.received] == [
        digest_of(sessions, e).message_id for e in (ADA, BO, CY)
    ]
    assert digest_of(sessions, BO).status == "sent" and digest_of(sessions, BO).attempts == 1
    if fault in ("drop", "stall"):
        assert handler.ehlo == 3  # reconnected after each lost connection


def test_still_failing_is_deferred_then_retried_by_a_later_run(
    sessions: sessionmaker[Session], mail: Settings, faulty: tuple[FaultyHandler, str]
) -> None:
    handler = faulty[0]
    handler.script = {BO: ["451"] * 3}
    week_with_news(sessions, ADA, BO)
    report = send(sessions, mail)
    assert (report.sent, report.deferred) == (1, 1)
    deferred = digest_of(sessions, BO)
    assert deferred.status == "deferred" and deferred.last_error and "451" in deferred.last_error
    assert deferred.next_attempt_at == clock.now() + timedelta(minutes=15)
    assert retry(sessions, mail).sent == 0  # not due yet: no burst against a struggling server
    at("2026-11-16T09:16:00Z")
    assert retry(sessions, mail).sent == 1
    assert counts(handler, ADA, BO) == [1, 1]
    assert digest_of(sessions, BO).attempts == 2 and digest_of(sessions, BO).sent_at == clock.now()


def test_out_of_attempts_fails_for_good(
    sessions: sessionmaker[Session], mail: Settings, faulty: tuple[FaultyHandler, str]
) -> None:
    handler = faulty[0]
    handler.script = {BO: ["451"] * 6}
    week_with_news(sessions, BO)
    settings = replace(mail, max_attempts=2)
    assert send(sessions, settings).deferred == 1
    at("2026-11-16T09:20:00Z")
    report = retry(sessions, settings)
    assert report.failed == 1 and "gave up after 2 attempts" in report.errors[0]
    at("2026-11-17T09:00:00Z")
    assert retry(sessions, settings).sent == 0 and handler.to(BO) == []
    assert digest_of(sessions, BO).status == "failed"


def test_hard_bounce_fails_and_suppresses(
    sessions: sessionmaker[Session], mail: Settings, faulty: tuple[FaultyHandler, str]
) -> None:
    handler = faulty[0]
    handler.script = {BO: ["550"]}
    week_with_news(sessions, ADA, BO)
    report = send(sessions, mail)
    assert (report.sent, report.bounced, report.suppressed) == (1, 1, 1)
    assert handler.transactions.count(BO) == 0  # refused at RCPT, never retried within the run
    bounced = subscriber(sessions, BO)
    assert bounced.status == "suppressed" and bounced.bounces == 1 and "550" in (bounced.last_bounce or "")
    assert digest_of(sessions, BO).status == "failed"
    # Not tried again: not by a retry, not in the next period.
    at("2026-11-19T10:00:00Z")
    ingest(sessions, "listing-water-week2.txt")
    at("2026-11-23T09:00:00Z")
    assert send(sessions, mail).sent == 1
    assert counts(handler, ADA, BO) == [2, 0]


def test_bounces_in_a_row_up_to_the_configured_limit(
    sessions: sessionmaker[Session], mail: Settings, faulty: tuple[FaultyHandler, str]
) -> None:
    handler = faulty[0]
    settings = replace(mail, suppress_after_bounces=2)
    handler.script = {BO: ["550"]}
    week_with_news(sessions, BO)
    assert send(sessions, settings).bounced == 1
    assert (subscriber(sessions, BO).status, subscriber(sessions, BO).bounces) == ("confirmed", 1)
    at("2026-11-19T10:00:00Z")
    ingest(sessions, "listing-water-week2.txt")
    at("2026-11-23T09:00:00Z")
    assert send(sessions, settings).sent == 1  # accepted: the count starts again
    assert subscriber(sessions, BO).bounces == 0


@pytest.mark.parametrize(("fault", "reason"), [("552full", "mailbox-full"), ("550block", "blocked")])
def test_a_refusal_of_this_message_at_rcpt_is_soft_and_keeps_the_reader(
    sessions: sessionmaker[Session], mail: Settings, faulty: tuple[FaultyHandler, str], fault: str, reason: str
) -> None:
    """552 5.2.2 (a full mailbox) or 550 5.7.1 (a block list) at RCPT: the receiver refused this message, the
    address is not gone. The digest fails, no hard bounce is counted, the reader stays, the next digest goes."""
    handler = faulty[0]
    handler.script = {BO: [fault]}
    week_with_news(sessions, BO)
    report = send(sessions, mail)
    assert (report.failed, report.bounced, report.suppressed) == (1, 0, 0)
    kept = subscriber(sessions, BO)
    assert kept.status == "confirmed" and kept.bounces == 0
    failed = digest_of(sessions, BO)
    assert failed.status == "failed" and f"soft bounce ({reason})" in (failed.last_error or "")
    with sessions() as session:  # kept with its reason: repeated ones lead to "do you still want these?"
        kept = session.execute(select(Bounce.kind, Bounce.reason, Bounce.digest_id)).all()
    assert [tuple(row) for row in kept] == [("soft", reason, failed.id)]
    at("2026-11-19T10:00:00Z")
    ingest(sessions, "listing-water-week2.txt")
    at("2026-11-23T09:00:00Z")
    assert send(sessions, mail).sent == 1 and len(handler.to(BO)) == 1


def test_content_refused_fails_without_counting_a_bounce(
    sessions: sessionmaker[Session], mail: Settings, faulty: tuple[FaultyHandler, str]
) -> None:
    faulty[0].script = {BO: ["554"]}
    week_with_news(sessions, BO)
    report = send(sessions, mail)
    assert (report.failed, report.bounced) == (1, 0)
    assert subscriber(sessions, BO).status == "confirmed" and digest_of(sessions, BO).status == "failed"


def test_server_down_fails_the_run_and_keeps_everything_pending(
    sessions: sessionmaker[Session], mail: Settings
) -> None:
    week_with_news(sessions, ADA, BO)
    down = replace(mail, smtp_url=f"smtp://127.0.0.1:{free_port()}")
    report = send(sessions, down)
    assert report.sent == 0 and report.error is not None
    assert report.error.startswith(f"cannot connect to the SMTP server smtp://127.0.0.1:{down.smtp().port}")  # type: ignore[union-attr]
    assert "pending" in report.hint
    for email in (ADA, BO):
        digest = digest_of(sessions, email)
        assert (digest.status, digest.attempts) == ("planned", 0)
    assert send(sessions, mail).sent == 2  # the server is back: everything goes


def test_hourly_rate_limit_spans_runs(
    sessions: sessionmaker[Session], mail: Settings, faulty: tuple[FaultyHandler, str]
) -> None:
    settings = replace(mail, rate_per_hour=2)
    week_with_news(sessions, ADA, BO, CY)
    first = send(sessions, settings)
    assert first.sent == 2 and first.rate_limited
    at("2026-11-16T09:30:00Z")
    assert retry(sessions, settings).sent == 0  # two went out within the hour
    at("2026-11-16T10:00:01Z")
    assert retry(sessions, settings).sent == 1
    assert counts(faulty[0], ADA, BO, CY) == [1, 1, 1]


def test_per_second_rate_spaces_messages(
    sessions: sessionmaker[Session], mail: Settings, faulty: tuple[FaultyHandler, str]
) -> None:
    week_with_news(sessions, ADA, BO, CY, "di@example.org")
    assert send(sessions, replace(mail, rate_per_second=10)).sent == 4
    times = faulty[0].received_at
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.09


def test_unsubscribe_between_deferral_and_retry_cancels(
    sessions: sessionmaker[Session], mail: Settings, faulty: tuple[FaultyHandler, str]
) -> None:
    from digest.store import db
    from digest.subscriptions.subscribers import unsubscribe

    faulty[0].script = {BO: ["451"] * 3}
    week_with_news(sessions, BO)
    send(sessions, mail)
    with db.transaction(sessions) as s:
        unsubscribe(s, BO, clock.now())
    at("2026-11-16T10:00:00Z")
    assert retry(sessions, mail).sent == 0 and digest_of(sessions, BO).status == "cancelled"
    assert faulty[0].to(BO) == []


def test_resend_and_ledger(sessions: sessionmaker[Session], mail: Settings, faulty: tuple[FaultyHandler, str]) -> None:
    handler = faulty[0]
    week_with_news(sessions, ADA)
    send(sessions, mail)
    at("2026-11-17T12:00:00Z")
    done = resend(sessions, mail, transport_for(mail), ADA)
    first, again = handler.to(ADA)
    assert again.message["Message-ID"] == done.message_id != first.message["Message-ID"]
    body = first.message.get_body(("plain",))
    body_again = again.message.get_body(("plain",))
    assert body is not None and body_again is not None
    # The original content, as frozen; its links are signed anew (a token carries the time it was made).
    unsigned = re.compile(r"(/(?:unsubscribe|manage|digests)/)[\w.-]+")
    assert unsigned.sub(r"\1T", body_again.get_content()) == unsigned.sub(r"\1T", body.get_content())
    assert again.message["Subject"] == first.message["Subject"]
    with sessions() as s:
        record = ledger(s, get_subscriber(s, ADA))
    (digest,) = record.digests
    assert digest.status == "sent" and digest.sent_at == "2026-11-16T09:00:00+00:00"
    assert digest.message_id == first.message["Message-ID"]
    assert [r.message_id for r in digest.resends] == [done.message_id]
    assert digest.resends[0].sent_at == "2026-11-17T12:00:00+00:00"
    assert len(digest.practices) == 5 and {p.theme for p in digest.practices} == {"Water and Sanitation"}


def test_cli_send_resend_ledger(run_cli: Cli, faulty: tuple[FaultyHandler, str]) -> None:
    handler, url = faulty
    run_cli("ingest", fixture_path("listing-water-week2.txt"), now="2026-11-09T10:00:00Z")
    run_cli("subscribe", ADA, "--theme", "water-and-sanitation", "--confirmed", now="2026-11-10T10:00:00Z")
    run_cli("ingest", fixture_path("listing-water.txt"), now="2026-11-11T10:00:00Z")
    dead = f"smtp://127.0.0.1:{free_port()}"
    down = run_cli("send", now="2026-11-16T09:00:00Z", DIGEST_SMTP_URL=dead)
    assert down.exit_code == 1 and f"error: cannot connect to the SMTP server {dead}" in down.stderr
    assert "0 sent" in down.stdout
    up = run_cli("send", "--json", now="2026-11-16T09:05:00Z", DIGEST_SMTP_URL=url)
    assert up.exit_code == 0 and json.loads(up.stdout)["sent"] == 1
    again = run_cli("resend", ADA, "--period", "2026-11-16T0700Z", now="2026-11-17T08:00:00Z", DIGEST_SMTP_URL=url)
    assert again.exit_code == 0 and "digest of 2026-11-16T0700Z sent again" in again.stdout
    assert len(handler.to(ADA)) == 2
    record = json.loads(run_cli("ledger", ADA, "--json").stdout)
    (digest,) = record["digests"]
    assert (digest["period"], digest["status"], digest["sent_at"]) == (
        "2026-11-16T0700Z",
        "sent",
        "2026-11-16T09:05:00+00:00",
    )
    assert digest["resends"][0]["sent_at"] == "2026-11-17T08:00:00+00:00"
    assert "Clean Taps Now" in {p["title"] for p in digest["practices"]}
    text = run_cli("ledger", ADA).stdout
    # Times as the subscriber reads their clock (Europe/Paris, the config's timezone): UTC+1 in November.
    assert "2026-11-16T0700Z  sent      2026-11-16 10:05" in text and "resent 2026-11-17 09:00" in text, text
    missing = run_cli("resend", ADA, "--period", "2026-11-23T0700Z", DIGEST_SMTP_URL=url)
    assert missing.exit_code == 1 and "no digest for period 2026-11-23T0700Z" in missing.stderr
    run_cli("unsubscribe", ADA)
    refused = run_cli("resend", ADA, DIGEST_SMTP_URL=url)
    assert refused.exit_code == 1 and "is unsubscribed" in refused.stderr


class WireServer:
    """A bare SMTP server on a socket that offers PIPELINING and notes, at the end of each message's data, whether
    the client had already written the next MAIL before it answered (it waits up to three seconds for one: the
    client writes it with the end of the data, in the same call, so only a client that waits for the answer first
    takes longer)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.recipients: list[str] = []
        self.next_came_first: list[bool] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with self.listener:
            conn, _ = self.listener.accept()
        with conn:
            conn.sendall(b"220 wire.test ESMTP\r\n")
            buffer = b""
            while True:
                while b"\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                line, buffer = buffer.split(b"\r\n", 1)
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250-wire.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == b"RCPT":
                    self.recipients.append(line.decode().partition("<")[2].rstrip(">"))
                    conn.sendall(b"250 OK\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    while b"\r\n.\r\n" not in buffer:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        buffer += chunk
                    buffer = buffer.split(b"\r\n.\r\n", 1)[1]
                    deadline = time.monotonic() + 3.0
                    while len(buffer) < len(b"MAIL FROM") and time.monotonic() < deadline:
                        if io_select.select([conn], [], [], 0.1)[0]:
                            chunk = conn.recv(65536)
                            if not chunk:
                                return
                            buffer += chunk
                    self.next_came_first.append(buffer.startswith(b"MAIL FROM"))
                    conn.sendall(b"250 queued\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:  # MAIL, RSET, NOOP
                    conn.sendall(b"250 OK\r\n")


def test_the_next_transaction_goes_with_the_end_of_a_message(sessions: sessionmaker[Session], mail: Settings) -> None:
    """With PIPELINING offered, the next message's MAIL, RCPT and DATA are written with the end of this one's data
    (one wait per message): seen on the wire, before the server answered the data; the last message has none
    after it."""
    people = [f"reader{n}@example.org" for n in range(4)]
    week_with_news(sessions, *people)
    server = WireServer()
    report = send(sessions, replace(mail, smtp_url=f"smtp://127.0.0.1:{server.port}", smtp_timeout=10))
    server.thread.join(10)
    assert report.sent == 4 and sorted(server.recipients) == people
    if mail.smtp_pipelining == "auto":
        assert server.next_came_first == [True, True, True, False]
    else:  # one command at a time: nothing is written before the server has answered
        assert server.next_came_first == [False] * 4


def test_a_run_that_stops_leaves_the_transaction_begun_ahead_undelivered(
    sessions: sessionmaker[Session], mail: Settings, faulty: tuple[FaultyHandler, str]
) -> None:
    """A worker asked to stop finishes the message in flight; the next one, begun ahead (the server said go ahead
    to its DATA), is abandoned with the connection: nothing of it is delivered, and the next run sends it."""
    handler = faulty[0]
    people = [f"reader{n}@example.org" for n in range(5)]
    week_with_news(sessions, *people)
    plan_due(sessions, PlanPolicy.from_settings(mail), clock.now())
    stop = lambda: len(handler.received) >= 2  # noqa: E731
    report = deliver_due(sessions, mail, transport_for(mail), SendReport(), should_stop=stop)
    assert report.sent == 2 and len(handler.received) == 2
    assert handler.transactions == people[:2]  # the third was begun, never given its data
    with sessions() as s:
        assert sorted(s.scalars(select(Digest.status))) == ["planned"] * 3 + ["sent"] * 2
    assert retry(sessions, mail).sent == 3
    assert counts(handler, *people) == [1] * 5


SMTP_SINK = Path("/usr/sbin/smtp-sink")


@pytest.mark.skipif(not SMTP_SINK.exists(), reason="Postfix's smtp-sink is not installed (make system-packages)")
@pytest.mark.parametrize("pipelining", ["auto", "off"])
def test_postfix_smtp_sink_takes_every_message_both_ways(
    sessions: sessionmaker[Session], settings: Settings, pipelining: str
) -> None:
    """A real MTA's SMTP server (Postfix's smtp-sink, which offers PIPELINING) rather than aiosmtpd: every digest
    arrives once, to its recipient, with its Message-ID, whichever way the commands go."""
    people = [f"reader{n}@example.org" for n in range(30)]
    week_with_news(sessions, *people)
    dump = Path(tempfile.mkdtemp(prefix="digest-sink-"))
    dump.chmod(0o777)  # smtp-sink writes as nobody
    port = free_port()
    sink = subprocess.Popen([str(SMTP_SINK), "-u", "nobody", "-d", f"{dump}/%M.", f"127.0.0.1:{port}", "100"])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "smtp-sink did not start"
                time.sleep(0.05)
        chosen = replace(settings, smtp_url=f"smtp://127.0.0.1:{port}", smtp_pipelining=pipelining)
        report = send(sessions, chosen)
        assert report.sent == len(people) and report.ok, report
        deadline = time.monotonic() + 30
        while len(list(dump.iterdir())) < len(people) and time.monotonic() < deadline:
            time.sleep(0.05)  # the sink writes each file as it takes the message
        messages = [f.read_text(encoding="utf-8", errors="replace") for f in dump.iterdir()]
    finally:
        sink.terminate()
        sink.wait(30)
        shutil.rmtree(dump, ignore_errors=True)
    recipients = sorted(re.search(r"^X-Rcpt-Args: <([^>]+)>", m, re.M).group(1) for m in messages)  # type: ignore[union-attr]
    assert recipients == sorted(people)
    with sessions() as s:
        ids = set(s.scalars(select(Digest.message_id)))
    assert {re.search(r"^Message-ID: (.+)$", m, re.M | re.I).group(1).strip() for m in messages} == ids  # type: ignore[union-attr]
