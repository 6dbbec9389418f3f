"""The bounce mailbox where operators keep it: an IMAP folder over TLS on a real Dovecot (started by the test). Every
message read is acted on once and moved to `processed`, never deleted; one being acted on when the reader stopped
stays for the next read; `explain` moves nothing; the password shows nowhere (report, logs, errors)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from imapclient import IMAPClient
from sqlalchemy import select

from digest import clock
from digest.config import SourceConfig
from digest.errors import SourceError
from digest.ingest import ingest_sources
from digest.mail.build.verp import return_path
from digest.mail.replies.bounces import read_bounces
from digest.mail.replies.mailboxes import messages_of
from digest.store.models import Digest, Subscriber
from tests.conftest import at, fixture_path
from tests.dovecot import PASSWORD, USER, Imap, dovecot
from tests.test_mail_quality import dsn
from tests.webapp import WATER, Web, confirmed

REPLIES = Path(__file__).parent / "fixtures" / "replies"


@pytest.fixture
def imap(monkeypatch: pytest.MonkeyPatch) -> Iterator[Imap]:
    with dovecot() as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.certificate))  # trust its certificate, as an operator's CA
        yield server


def _client(imap: Imap) -> IMAPClient:
    import ssl

    client = IMAPClient("127.0.0.1", port=imap.port, ssl=True, ssl_context=ssl.create_default_context(), timeout=30)
    client.login(USER, PASSWORD)
    return client


def _count(imap: Imap, folder: str) -> int:
    client = _client(imap)
    try:
        if not client.folder_exists(folder):
            return 0
        return len(client.select_folder(folder, readonly=True) and client.search("ALL"))
    finally:
        client.logout()


def _deliver(imap: Imap, *messages: bytes) -> None:
    client = _client(imap)
    try:
        for message in messages:
            client.append("INBOX", message)
    finally:
        client.logout()


def test_an_imap_bounce_mailbox_is_read_once_and_moved_to_processed(
    web: Web, imap: Imap, caplog: pytest.LogCaptureFixture
) -> None:
    confirmed(web, "ada@example.org", WATER)
    confirmed(web, "bo@example.org", WATER)
    at("2026-11-20T10:00:00Z")
    ingest_sources(web.sessions, [SourceConfig(fixture_path("listing-water-week2.txt"))], clock.now())
    at("2026-11-23T09:00:00Z")
    web.send()
    with web.sessions() as session:
        ids = {
            e: (i, m)
            for e, i, m in session.execute(select(Subscriber.email, Digest.id, Digest.message_id).join(Digest))
        }
    ada_id, ada_message = ids["ada@example.org"]
    bo_id, bo_message = ids["bo@example.org"]
    _deliver(
        imap,
        dsn(return_path(web.settings, ada_id), "ada@example.org", "failed", "5.1.1", ada_message, "550 5.1.1 unknown"),
        dsn(return_path(web.settings, bo_id), "bo@example.org", "failed", "5.2.2", bo_message, "552 5.2.2 full"),
        (REPLIES / "vacation.eml").read_bytes(),
    )
    caplog.set_level(logging.DEBUG)
    report = read_bounces(web.sessions, web.settings, imap.url(), clock.now())
    assert (report.read, report.hard, report.soft, report.suppressed, len(report.skipped)) == (3, 1, 1, 1, 1), report
    assert web.status("ada@example.org") == "suppressed" and web.status("bo@example.org") == "confirmed"
    assert (_count(imap, "INBOX"), _count(imap, "processed")) == (0, 3)  # moved, none deleted
    assert PASSWORD not in report.source and PASSWORD not in str(report.as_dict()) and PASSWORD not in caplog.text

    again = read_bounces(web.sessions, web.settings, imap.url(), clock.now())
    assert again.read == 0

    # The worker's job reads the same mailbox from the setting.
    from dataclasses import replace

    from digest.worker.jobs import bounces_job

    _deliver(imap, (REPLIES / "thanks.eml").read_bytes())

    class Job:
        settings = replace(web.settings, bounce_mailbox=imap.url())
        factory = web.sessions

    counts, error = bounces_job(Job())  # type: ignore[arg-type]
    assert error is None and counts["read"] == 1 and _count(imap, "processed") == 4
    clock.set_fixed_now(None)


def test_a_message_being_acted_on_when_the_reader_stops_stays_and_explain_moves_nothing(imap: Imap) -> None:
    _deliver(imap, (REPLIES / "vacation.eml").read_bytes(), (REPLIES / "postfix-user-unknown.eml").read_bytes())
    reading = messages_of(imap.url(), single=False)
    first_key, _ = next(reading)
    next(reading)  # asking for the second: the first was acted on
    reading.close()  # stopped while acting on the second (an error, the store away)
    assert (_count(imap, "INBOX"), _count(imap, "processed")) == (1, 1)

    from digest.cli import cli

    explained = CliRunner().invoke(cli, ["bounces", "explain", imap.url(), "--json"])
    assert explained.exit_code == 0, explained.output
    assert '"kind": "hard"' in explained.output and '"reason": "user-unknown"' in explained.output
    assert (_count(imap, "INBOX"), _count(imap, "processed")) == (1, 1)
    assert PASSWORD not in explained.output
    assert first_key.startswith("INBOX/")


def test_a_wrong_password_or_an_absent_server_is_named_without_the_password(imap: Imap) -> None:
    with pytest.raises(SourceError) as refused:
        list(messages_of(imap.url(password="not-the-password"), single=False))
    said = str(refused.value) + refused.value.hint
    assert "not-the-password" not in said and f"127.0.0.1:{imap.port}" in said and "imaps://" in said
    assert "AUTHENTICATIONFAILED" in said or "failed" in said.lower()

    from tests.conftest import free_port

    with pytest.raises(SourceError) as away:
        list(messages_of(f"imaps://{USER}:{PASSWORD}@127.0.0.1:{free_port()}/INBOX", single=False, timeout=5))
    said = str(away.value) + away.value.hint
    assert "cannot reach the IMAP server" in said and PASSWORD not in said


def test_a_real_postfix_bounce_reads_hard_for_an_unknown_user_and_soft_for_a_full_mailbox(web: Web) -> None:
    """Digests handed to a real Postfix: one to a local user that does not exist (Postfix's local(8) bounces it,
    5.1.1), one to a mailbox over its quota behind LMTP (Dovecot answers 552 5.2.2). Postfix's own DSNs come back to
    the digests' return paths, in the bounce Maildir; `digest bounces` reads the first as hard/user-unknown and
    suppresses, the second as soft/mailbox-full and keeps the reader."""
    from dataclasses import replace

    from digest.mail.replies.reader import read_bytes
    from digest.mail.send.runs import plan_and_send
    from digest.mail.send.transport import transport_for
    from tests.postfix import postfix, wait_for_mail
    from tests.test_send import add

    with dovecot(quota_kb=1) as lmtp, postfix(lmtp.lmtp_port) as mta:
        settings = replace(web.settings, smtp_url=mta.url, bounce_address="bounces@bounce.example.org")
        at("2026-11-09T12:00:00Z")
        add(web.sessions, "ghost@local.example.org", "Water and Sanitation")
        add(web.sessions, "ann@full.example.org", "Water and Sanitation")
        at("2026-11-20T10:00:00Z")
        ingest_sources(web.sessions, [SourceConfig(fixture_path("listing-water-week2.txt"))], clock.now())
        at("2026-11-23T09:00:00Z")
        report = plan_and_send(web.sessions, settings, transport_for(settings))
        assert report.sent == 2, report  # Postfix took both: what happens next is its own DSNs
        reports = wait_for_mail(mta.bounces, 2, mta.log)
        readings = {r.recipient: (r.kind, r.reason, r.status) for f in reports for r in read_bytes(f.read_bytes())}
        assert readings == {
            "ghost@local.example.org": ("hard", "user-unknown", "5.1.1"),
            "ann@full.example.org": ("soft", "mailbox-full", "5.2.2"),
        }, readings
        read = read_bounces(web.sessions, settings, mta.bounces, clock.now())
        assert (read.hard, read.soft, read.suppressed, read.skipped) == (1, 1, 1, []), read
        assert web.status("ghost@local.example.org") == "suppressed"
        assert web.status("ann@full.example.org") == "confirmed"
    clock.set_fixed_now(None)
