"""One bad digest fails alone: addresses the server cannot carry, content that cannot be built, claims that
never finished, and unsubscribes that meet a half-sent digest. Every other digest still goes, exactly once."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.config import Settings
from digest.mail.plan.planner import PlanPolicy, plan_due
from digest.mail.send.delivery import SendReport
from digest.mail.send.runs import plan_and_send
from digest.mail.send.transport import transport_for
from digest.store import db
from digest.store.models import Content, Digest, Subscriber
from digest.store.states import DigestStatus
from digest.subscriptions.subscribers import unsubscribe
from tests.conftest import RecordingHandler, smtp_controller
from tests.test_delivery import digest_of, week_with_news
from tests.test_send import add, create_themes, ingest

ADA, JOSE, BO = "ada@example.org", "josé@example.org", "bo@example.org"


@pytest.fixture
def plain_server() -> Iterator[tuple[RecordingHandler, str]]:
    """A real SMTP server that does not offer SMTPUTF8 (aiosmtpd's default)."""
    handler = RecordingHandler()
    with smtp_controller(handler) as url:
        yield handler, url


@pytest.fixture
def utf8_server() -> Iterator[tuple[RecordingHandler, str]]:
    handler = RecordingHandler()
    with smtp_controller(handler, smtputf8=True) as url:
        yield handler, url


def send(sessions: sessionmaker[Session], settings: Settings) -> SendReport:
    return plan_and_send(sessions, settings, transport_for(settings))


def statuses(sessions: sessionmaker[Session]) -> dict[str, str]:
    with sessions() as s:
        return {email: status for email, status in s.execute(select(Subscriber.email, Digest.status).join(Digest))}


def test_non_ascii_local_part_fails_alone_where_the_server_has_no_smtputf8(
    sessions: sessionmaker[Session], settings: Settings, plain_server: tuple[RecordingHandler, str]
) -> None:
    handler, url = plain_server
    week_with_news(sessions, ADA, JOSE, BO)
    report = send(sessions, replace(settings, smtp_url=url))
    assert report.ok and (report.sent, report.failed) == (2, 1)
    assert [len(handler.to(a)) for a in (ADA, BO)] == [1, 1]
    assert statuses(sessions) == {ADA: "sent", JOSE: "failed", BO: "sent"}
    error = digest_of(sessions, JOSE).last_error or ""
    assert "SMTPUTF8" in error and JOSE in error
    # Failed for good: the next run leaves it alone and sends nobody anything twice.
    again = send(sessions, replace(settings, smtp_url=url))
    assert (again.sent, again.failed) == (0, 0) and len(handler.received) == 2


def test_non_ascii_local_part_goes_with_smtputf8(
    sessions: sessionmaker[Session], settings: Settings, utf8_server: tuple[RecordingHandler, str]
) -> None:
    handler, url = utf8_server
    week_with_news(sessions, ADA, JOSE)
    report = send(sessions, replace(settings, smtp_url=url))
    assert (report.sent, report.failed) == (2, 0)
    (received,) = handler.to(JOSE)
    assert received.message["To"] == JOSE


def test_idn_domain_goes_as_punycode(
    sessions: sessionmaker[Session], settings: Settings, plain_server: tuple[RecordingHandler, str]
) -> None:
    handler, url = plain_server
    week_with_news(sessions, "ada@bücher.example")
    assert send(sessions, replace(settings, smtp_url=url)).sent == 1
    (received,) = handler.received
    assert received.recipients == ["ada@xn--bcher-kva.example"]
    assert received.message["To"] == "ada@xn--bcher-kva.example"


# The first digest of a batch is built when its turn comes; the others while the server takes the one before.
@pytest.mark.parametrize("broken", [ADA, BO])
def test_a_digest_that_cannot_be_built_fails_alone_and_is_logged(
    sessions: sessionmaker[Session],
    settings: Settings,
    plain_server: tuple[RecordingHandler, str],
    caplog: pytest.LogCaptureFixture,
    broken: str,
) -> None:
    handler, url = plain_server
    week_with_news(sessions, ADA, BO)
    plan_due(sessions, PlanPolicy.from_settings(settings), clock.now())
    with db.transaction(sessions) as s:  # frozen content damaged on disk for one digest
        who = s.scalar(select(Subscriber.id).where(Subscriber.email == broken))
        s.add(Content(hash="0" * 64, body='{"period": "2026-11-16"', created_at=clock.now()))
        s.flush()
        s.execute(update(Digest).where(Digest.subscriber_id == who).values(content_hash="0" * 64))
    fine = BO if broken == ADA else ADA
    with caplog.at_level(logging.INFO, logger="digest"):
        report = send(sessions, replace(settings, smtp_url=url))
    assert report.ok and (report.sent, report.failed) == (1, 1)
    assert [len(handler.to(a)) for a in (broken, fine)] == [0, 1]
    assert statuses(sessions) == {broken: "failed", fine: "sent"}
    assert "could not build or send this digest: JSONDecodeError" in (digest_of(sessions, broken).last_error or "")
    assert digest_of(sessions, fine).last_error is None
    crashed = [r for r in caplog.records if r.getMessage() == "digest.crashed"]
    assert crashed and crashed[0].name == "digest.mail.send.delivery" and crashed[0].exc_info


def _abandoned_claim(sessions: sessionmaker[Session], email: str, attempts: int) -> None:
    """A digest left `sending` by a process that died (a pid that cannot exist), after ``attempts`` claims."""
    with db.transaction(sessions) as s:
        sid = s.scalar(select(Subscriber.id).where(Subscriber.email == email))
        s.execute(
            update(Digest)
            .where(Digest.subscriber_id == sid)
            .values(
                status=DigestStatus.SENDING,
                claimed_by=f"{os.uname().nodename}:999999999",
                claimed_at=clock.now(),
                attempts=attempts,
            )
        )


def test_max_attempts_is_enforced_at_the_claim(
    sessions: sessionmaker[Session], settings: Settings, plain_server: tuple[RecordingHandler, str]
) -> None:
    handler, url = plain_server
    week_with_news(sessions, ADA, BO)
    plan_due(sessions, PlanPolicy.from_settings(settings), clock.now())
    _abandoned_claim(sessions, ADA, attempts=settings.max_attempts)
    report = send(sessions, replace(settings, smtp_url=url))
    assert (report.sent, report.failed) == (1, 1)
    ada = digest_of(sessions, ADA)
    assert (ada.status, ada.attempts) == ("failed", settings.max_attempts)
    assert "gave up" in (ada.last_error or "") and handler.to(ADA) == []


def test_unsubscribe_cancels_a_sending_leftover(
    sessions: sessionmaker[Session], settings: Settings, plain_server: tuple[RecordingHandler, str]
) -> None:
    handler, url = plain_server
    week_with_news(sessions, ADA)
    plan_due(sessions, PlanPolicy.from_settings(settings), clock.now())
    _abandoned_claim(sessions, ADA, attempts=1)
    with db.transaction(sessions) as s:
        unsubscribe(s, ADA, clock.now())
    assert digest_of(sessions, ADA).status == "cancelled"
    assert send(sessions, replace(settings, smtp_url=url)).sent == 0 and handler.received == []


def test_cli_send_with_a_non_ascii_address_exits_cleanly(
    tmp_path: object, settings: Settings, plain_server: tuple[RecordingHandler, str]
) -> None:
    """The reported crash, end to end: `digest send` as a process, no traceback, the others mailed."""
    handler, url = plain_server
    config = f"""
database_url = "{settings.database_url}"
base_url = "https://digest.test"
id_domain = "digest.test"
secret_key = "test-secret-that-is-long-enough-0123456789"
smtp_url = "{url}"
"""
    path = os.path.join(str(tmp_path), "digest.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(config)
    env = dict(os.environ, DIGEST_CONFIG=path)

    def digest(*args: str, now: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "digest", *args],
            env=dict(env, DIGEST_NOW=now),
            capture_output=True,
            text=True,
            timeout=120,
        )

    sessions = db.session_factory(db.make_engine(settings.database_url))
    db.upgrade(sessions.kw["bind"])
    clock.set_fixed_now(clock.parse_instant("2026-11-10T10:00:00Z"))
    create_themes(sessions, "Water and Sanitation")
    for address in (ADA, JOSE, BO):
        add(sessions, address, "Water and Sanitation")
    clock.set_fixed_now(clock.parse_instant("2026-11-12T10:00:00Z"))
    ingest(sessions, "listing-water.txt")
    result = digest("send", now="2026-11-16T09:00:00Z")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    assert "2 sent" in result.stdout and "1 failed" in result.stdout
    assert [len(handler.to(a)) for a in (ADA, BO)] == [1, 1]
