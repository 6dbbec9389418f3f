"""What a refusal means, read from its status and its words the way the best classifiers read them: the address
gone (hard) only for an unknown user, an unknown host or a moved address; a full mailbox, a block, a policy, spam,
an authentication failure, a size limit, a rate limit, an expired queue or a network fault is soft, whatever the
class of its code. Written from each format's documented shape (Postfix, Sendmail, Exim, qmail, Exchange and Office
365, Gmail, Yahoo, Amazon SES, Courier, OpenSMTPD ...)."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.mail.replies.classify import classify
from tests.webapp import WATER, Web, confirmed

CASES = [
    # (status field, diagnostic or prose, permanent?, kind, reason)
    (
        "5.1.1",
        "smtp; 550 5.1.1 <a@x.org>: Recipient address rejected: User unknown in virtual mailbox table",
        True,
        "hard",
        "user-unknown",
    ),  # Postfix
    ("5.0.0", "smtp; 550 5.1.1 <a@x.org>... User unknown", True, "hard", "user-unknown"),  # Sendmail
    ("", "Sorry, no mailbox here by that name. (#5.1.1)", True, "hard", "user-unknown"),  # qmail, no DSN
    (
        "",
        "SMTP error from remote mail server after RCPT TO:<a@x.org>: 550 No such user here",
        True,
        "hard",
        "user-unknown",
    ),  # Exim without DSN
    (
        "5.1.10",
        "smtp; 550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        True,
        "hard",
        "user-unknown",
    ),  # Office 365
    (
        "5.4.1",
        "smtp; 550 5.4.1 Recipient address rejected: Access denied. AS(201806281)",
        True,
        "hard",
        "user-unknown",
    ),  # Exchange Online directory-based edge blocking
    (
        "5.1.1",
        "smtp; 550-5.1.1 The email account that you tried to reach does not exist.",
        True,
        "hard",
        "user-unknown",
    ),  # Gmail
    (
        "5.0.0",
        "smtp; 554 delivery error: dd This user doesn't have a yahoo.com account (a@yahoo.com) [0]",
        True,
        "hard",
        "user-unknown",
    ),  # Yahoo
    (
        "5.1.2",
        "X-Postfix; Host or domain name not found. Name service error for name=nowhere.example",
        True,
        "hard",
        "host-unknown",
    ),
    (
        "",
        "all relevant MX records point to non-existent hosts / Unrouteable address",
        True,
        "hard",
        "host-unknown",
    ),  # Exim
    ("5.1.6", "smtp; 550 5.1.6 Recipient addresses has moved", True, "hard", "has-moved"),
    ("5.2.2", "smtp; 552 5.2.2 Mailbox full", True, "soft", "mailbox-full"),
    ("5.0.0", "smtp; 552 RCPT TO:<a@x.org> Mailbox disk quota exceeded", True, "soft", "mailbox-full"),
    ("", "The user's mailbox is over quota. (#5.2.2)", True, "soft", "mailbox-full"),  # qmail clones
    (
        "5.2.1",
        "smtp; 550 5.2.1 The email account that you tried to reach is disabled.",
        True,
        "soft",
        "suspended",
    ),  # Gmail
    ("5.7.1", "smtp; 550 5.7.1 Message rejected as spam by Content Filtering.", True, "soft", "spam"),  # SES
    (
        "5.7.1",
        "smtp; 554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
        True,
        "soft",
        "blocked",  # a DNSBL: the sending IP's reputation, not this message
    ),
    ("5.7.1", "smtp; 550 5.7.1 Our system has detected an unusual rate of unsolicited mail", True, "soft", "policy"),
    (
        "5.7.26",
        "smtp; 550-5.7.26 Unauthenticated email from example.org is not accepted due to domain's DMARC policy.",
        True,
        "soft",
        "auth-failure",
    ),  # Gmail 2024
    ("5.7.1", "smtp; 550 5.7.1 SPF check failed", True, "soft", "auth-failure"),
    ("5.3.4", "smtp; 552 5.3.4 Message size exceeds fixed limit", True, "soft", "too-big"),
    ("5.7.0", "smtp; 554 5.7.0 Reject, id=12345 - VIRUS: Eicar-Test-Signature", True, "soft", "virus"),
    (
        "4.7.0",
        "smtp; 421 4.7.0 Try again later, closing connection. (rate limit exceeded)",
        False,
        "soft",
        "rate-limited",
    ),
    ("4.2.0", "smtp; 450 4.2.0 <a@x.org>: Recipient address rejected: Greylisted", False, "soft", "greylisted"),
    # A 4xx never drops anyone, whatever its words.
    ("4.1.1", "smtp; 450 4.1.1 <a@x.org>: Recipient address rejected: User unknown", False, "soft", "user-unknown"),
    (
        "4.4.7",
        "X-Postfix; delivery temporarily suspended: connect to mx.x.org: Connection timed out",
        False,
        "soft",
        "expired",
    ),
    ("", "retry timeout exceeded", True, "soft", "expired"),  # Exim giving up
    ("5.4.7", "X-Postfix; message expired after 5 days", True, "soft", "expired"),
    ("5.4.4", "X-Postfix; Host not found, try again", True, "soft", "network"),
    ("5.3.0", "smtp; 554 5.3.0 Internal server error", True, "soft", "system"),
    ("5.0.0", "smtp; 550 Administrative prohibition", True, "soft", "policy"),
    ("", "", True, "soft", "undetermined"),  # nothing to go by: never a reason to drop a reader
]


@pytest.mark.parametrize(("status", "text", "permanent", "kind", "reason"), CASES)
def test_a_refusal_is_read_as_the_classifiers_read_it(
    status: str, text: str, permanent: bool, kind: str, reason: str
) -> None:
    verdict = classify(status, text, permanent)
    assert (verdict.kind, verdict.reason) == (kind, reason), (status, text, verdict)


def test_the_status_found_is_the_specific_one() -> None:
    # A generic code in the status field gives way to the specific one the words quote.
    assert classify("5.0.0", "Sorry, no mailbox here by that name. (#5.1.1)").status == "5.1.1"
    assert classify("", "554 delivery error: dd This user doesn't have a yahoo.com account").status == "554"


def test_no_permanent_refusal_of_this_message_is_hard() -> None:
    """The measured defect: of permanent failures that are not the address gone, none may read as hard."""
    soft = [c for c in CASES if c[3] == "soft" and c[2]]
    assert soft and all(classify(s, t, True).kind == "soft" for s, t, _, _, _ in soft)


# Whole messages, as `digest bounces explain` reads them ----------------------------------------------------------

REPLIES = Path(__file__).parent / "fixtures" / "replies"
EXPECTED = {
    # file: [(kind, recipient, status, reason)] — one per recipient a report names. Written from each format's
    # documented shape (none copied from a real mailbox): RFC 3464 from Postfix, Sendmail, Office 365 and Exchange
    # Online, Gmail, Amazon SES; prose bounces from qmail, Exim (plain, quoted-printable, base64), Yahoo, Lotus
    # Domino, Mail.ru, Google Groups and Japanese carriers (ISO-2022-JP, Shift_JIS); LF, CRLF and CR-only lines.
    "postfix-user-unknown.eml": [
        ("hard", "ana@example.net", "5.1.1", "user-unknown"),
        ("soft", "bo@example.net", "5.2.2", "mailbox-full"),
    ],
    "qmail-no-mailbox.eml": [("hard", "cy@example.org", "5.1.1", "user-unknown")],
    "exim-retry.eml": [("soft", "dee@example.com", "", "expired")],  # Auto-Submitted, yet a bounce
    "arf-abuse.eml": [("complaint", "eve@example.com", "", "feedback")],
    "vacation.eml": [("auto-reply", "", "", "vacation")],
    "challenge-response.eml": [("auto-reply", "", "", "challenge-response")],
    "delivered.eml": [("delivered", "gus@example.net", "2.0.0", "delivered")],
    "thanks.eml": [("not-a-report", "", "", "not a report")],
    "garbage.eml": [("not-a-report", "", "", "not a report")],
    "cr-only.eml": [("hard", "hana@example.jp", "5.1.1", "user-unknown")],
    "crlf-dsn.eml": [("hard", "xena@gone.example", "5.1.2", "host-unknown")],
    "sendmail-user-unknown.eml": [("hard", "ivan@example.com", "5.1.1", "user-unknown")],
    "office365-recipient-not-found.eml": [("hard", "julia@contoso.example", "5.1.10", "user-unknown")],
    "office365-ip-blocked.eml": [("soft", "karl@contoso.example", "5.7.708", "blocked")],
    "gmail-over-quota.eml": [("soft", "lena@gmail.example", "5.2.2", "mailbox-full")],
    "ses-user-unknown.eml": [("hard", "mia@example.org", "5.1.1", "user-unknown")],
    "postfix-delayed-timeout.eml": [("soft", "nils@example.net", "4.4.1", "network")],
    "postfix-greylisted.eml": [("soft", "olga@example.net", "4.2.0", "greylisted")],
    "multi-recipient-mixed.eml": [
        ("hard", "pia@example.net", "5.1.1", "user-unknown"),
        ("soft", "quinn@example.net", "5.7.1", "blocked"),
        ("delivered", "rita@example.net", "2.0.0", "delivered"),
    ],
    "exim-user-unknown.eml": [("hard", "sam@example.com", "5.1.1", "user-unknown")],
    "yahoo-no-account.eml": [("hard", "tom@yahoo.example", "554", "user-unknown")],
    "exim-quota-qp.eml": [("soft", "uwe@example.de", "5.2.2", "mailbox-full")],
    "lotus-domino.eml": [("hard", "vera@notes.example.com", "", "user-unknown")],
    "mailru-user-unknown-base64.eml": [("hard", "walt@mail.example", "550", "user-unknown")],
    "docomo-iso-2022-jp.eml": [("hard", "taro@docomo.example", "550", "user-unknown")],
    "au-shift-jis.eml": [("hard", "hanako@ezweb.example", "550", "user-unknown")],
    "google-groups-not-found.eml": [("hard", "team-x@groups.example", "", "user-unknown")],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_kind_of_reply_is_read(name: str) -> None:
    from digest.mail.replies.reader import read_bytes

    got = [(r.kind, r.recipient, r.status, r.reason) for r in read_bytes((REPLIES / name).read_bytes())]
    assert got == EXPECTED[name]


def test_an_unparsable_message_is_a_not_a_report_never_a_traceback() -> None:
    from digest.mail.replies.reader import read_bytes

    (reading,) = read_bytes((REPLIES / "garbage.eml").read_bytes())
    assert reading.kind == "not-a-report"


def test_digest_bounces_explain_reads_files_and_maildirs_and_changes_nothing(tmp_path: Path) -> None:
    import json
    import mailbox

    from click.testing import CliRunner

    from digest.cli import cli

    box = mailbox.Maildir(tmp_path / "box", create=True)
    box.add((REPLIES / "qmail-no-mailbox.eml").read_bytes())
    box.close()
    runner = CliRunner()
    # No config and no store at all: DIGEST_CONFIG names nothing there is.
    env = {"DIGEST_CONFIG": str(tmp_path / "absent.toml")}
    done = runner.invoke(cli, ["bounces", "explain", str(REPLIES / "postfix-user-unknown.eml"), str(tmp_path / "box"),
                               "--json"], env=env)  # fmt: skip
    assert done.exit_code == 0, done.output
    lines = [json.loads(line) for line in done.output.splitlines()]
    assert [(d["kind"], d["recipient"], d["reason"]) for d in lines] == [
        ("hard", "ana@example.net", "user-unknown"),
        ("soft", "bo@example.net", "mailbox-full"),
        ("hard", "cy@example.org", "user-unknown"),
    ]
    assert set(lines[0]) == {"message", "kind", "recipient", "status", "reason", "diagnostic"}
    assert not (tmp_path / "var").exists()  # no store made
    text = runner.invoke(cli, ["bounces", "explain", str(REPLIES / "arf-abuse.eml")], env=env)
    assert text.exit_code == 0 and "\tcomplaint\teve@example.com\t" in text.output


def test_a_complaint_suppresses_its_subscriber_at_once_matched_by_our_return_path_only(
    web: Web, tmp_path: Path
) -> None:
    """An ARF report whose Original-Mail-From is a digest's return path suppresses that digest's subscriber at once
    (reason kept); one that only quotes an address (no return path or Message-ID of ours) suppresses nobody;
    reading the mailbox again counts nothing twice."""
    import mailbox

    from sqlalchemy import select

    from digest import clock
    from digest.config import SourceConfig
    from digest.ingest import ingest_sources
    from digest.mail.build.verp import return_path
    from digest.mail.replies.bounces import read_bounces
    from digest.store.models import Digest, Subscriber
    from tests.conftest import at, fixture_path

    confirmed(web, "ada@example.org", WATER)
    confirmed(web, "bo@example.org", WATER)
    at("2026-11-20T10:00:00Z")
    ingest_sources(web.sessions, [SourceConfig(fixture_path("listing-water-week2.txt"))], clock.now())
    at("2026-11-23T09:00:00Z")
    web.send()
    with web.sessions() as session:
        ada = session.scalars(select(Digest.id).join(Subscriber).where(Subscriber.email == "ada@example.org")).one()
    arf = (REPLIES / "arf-abuse.eml").read_text()
    box = mailbox.Maildir(tmp_path / "box", create=True)
    box.add(arf.replace("bounces+1d-0123456789ab@digest.test", return_path(web.settings, ada)).encode())
    # Quoting bo's address but carrying no return path or Message-ID of ours: believed for nobody.
    box.add(arf.replace("eve@example.com", "bo@example.org").encode())
    box.close()
    report = read_bounces(web.sessions, web.settings, tmp_path / "box", clock.now())
    assert (report.complaints, report.suppressed, len(report.skipped)) == (1, 1, 1), report
    assert web.status("ada@example.org") == "suppressed" and web.status("bo@example.org") == "confirmed"
    with web.sessions() as session:
        reason = session.scalars(select(Subscriber.last_bounce).where(Subscriber.email == "ada@example.org")).one()
    assert reason == "complaint: abuse"
    again = read_bounces(web.sessions, web.settings, tmp_path / "box", clock.now())
    assert (again.complaints, again.already) == (0, 1)
    clock.set_fixed_now(None)


def test_a_bounce_without_a_dsn_is_acted_on_like_a_report(web: Web, tmp_path: Path) -> None:
    """qmail's prose bounce (no multipart/report) to a digest's return path: read as hard/user-unknown, kept with
    its reason, the address suppressed; a prose bounce quoting only a returned Message-ID of ours is matched by it;
    an Exim "retry timeout" (soft) keeps the reader."""
    import mailbox

    from sqlalchemy import select

    from digest import clock
    from digest.config import SourceConfig
    from digest.ingest import ingest_sources
    from digest.mail.build.verp import return_path
    from digest.mail.replies.bounces import read_bounces
    from digest.store.models import Bounce, Digest, Subscriber
    from tests.conftest import at, fixture_path

    for address in ("cy@example.org", "dee@example.org"):
        confirmed(web, address, WATER)
    at("2026-11-20T10:00:00Z")
    ingest_sources(web.sessions, [SourceConfig(fixture_path("listing-water-week2.txt"))], clock.now())
    at("2026-11-23T09:00:00Z")
    web.send()
    with web.sessions() as session:
        ids = {e: i for e, i in session.execute(select(Subscriber.email, Digest.id).join(Digest))}
        dee_message_id = session.scalars(select(Digest.message_id).where(Digest.id == ids["dee@example.org"])).one()
    qmail = (REPLIES / "qmail-no-mailbox.eml").read_text()
    box = mailbox.Maildir(tmp_path / "box", create=True)
    box.add(qmail.replace("bounces+1b-0123456789ab@digest.test", return_path(web.settings, ids["cy@example.org"])))
    # Sent to the plain bounce address (the return path rewritten on the way): the quoted Message-ID names dee's.
    by_id = qmail.replace("bounces+1b-0123456789ab@digest.test", "bounces@digest.test").replace("cy@", "dee@")
    box.add(by_id.replace("To: dee@example.org", f"To: dee@example.org\nMessage-ID: {dee_message_id}"))
    box.close()
    report = read_bounces(web.sessions, web.settings, tmp_path / "box", clock.now())
    assert (report.hard, report.suppressed, report.skipped) == (2, 2, []), report
    assert web.status("cy@example.org") == "suppressed" and web.status("dee@example.org") == "suppressed"
    with web.sessions() as session:
        kept = session.execute(select(Bounce.kind, Bounce.reason, Bounce.status)).all()
    assert sorted(tuple(row) for row in kept) == [("hard", "user-unknown", "5.1.1")] * 2
    clock.set_fixed_now(None)


def test_a_mail_to_the_list_unsubscribe_mailto_unsubscribes_its_reader_and_nobody_else(
    web: Web, tmp_path: Path
) -> None:
    """Each digest's List-Unsubscribe has a mailto: beside its https URL (RFC 2369; one click stays the https one).
    A mail to that address, read from the bounce mailbox, unsubscribes the reader of that digest; one to an address
    with a forged token, or with another digest's number and this one's token, unsubscribes nobody."""
    import mailbox
    import re

    from sqlalchemy import select

    from digest import clock
    from digest.config import SourceConfig
    from digest.ingest import ingest_sources
    from digest.mail.replies.bounces import read_bounces
    from digest.store.models import Digest, Subscriber
    from tests.conftest import at, fixture_path

    confirmed(web, "ada@example.org", WATER)
    confirmed(web, "bo@example.org", WATER)
    at("2026-11-20T10:00:00Z")
    ingest_sources(web.sessions, [SourceConfig(fixture_path("listing-water-week2.txt"))], clock.now())
    at("2026-11-23T09:00:00Z")
    web.send()
    (digest,) = [m for m in web.mails_to("ada@example.org") if m["List-Unsubscribe"]]
    https, mailto = re.findall(r"<([^>]+)>", digest["List-Unsubscribe"])
    assert https.startswith("http://digest.localhost/unsubscribe/") and digest["List-Unsubscribe-Post"]
    address = mailto.removeprefix("mailto:").split("?")[0]
    with web.sessions() as session:
        bo_digest = session.scalars(
            select(Digest.id).join(Subscriber).where(Subscriber.email == "bo@example.org")
        ).one()
    token = re.search(r"\+u([0-9a-f]+)-([0-9a-f]{12})@", address)
    assert token is not None
    box = mailbox.Maildir(tmp_path / "box", create=True)

    def mail_to(to: str) -> bytes:
        return f"From: Ada <ada@example.org>\nTo: {to}\nSubject: unsubscribe\n\nunsubscribe\n".encode()

    # Forged: bo's digest number with ada's token, and a made-up token: nobody leaves.
    box.add(mail_to(address.replace(f"+u{token.group(1)}-", f"+u{bo_digest:x}-")))
    box.add(mail_to(address.replace(token.group(2), "0123456789ab")))
    box.close()
    report = read_bounces(web.sessions, web.settings, tmp_path / "box", clock.now())
    assert report.unsubscribed == 0
    assert web.status("ada@example.org") == "confirmed" and web.status("bo@example.org") == "confirmed"

    box = mailbox.Maildir(tmp_path / "box2", create=True)
    box.add(mail_to(address))
    box.close()
    report = read_bounces(web.sessions, web.settings, tmp_path / "box2", clock.now())
    assert report.unsubscribed == 1, report
    assert web.status("ada@example.org") == "unsubscribed" and web.status("bo@example.org") == "confirmed"
    again = read_bounces(web.sessions, web.settings, tmp_path / "box2", clock.now())
    assert (again.unsubscribed, again.already) == (0, 1)
    clock.set_fixed_now(None)


def test_every_message_of_the_corpus_has_its_expected_reading() -> None:
    """A message added to tests/fixtures/replies/ without its expected reading would be checked by nothing."""
    assert sorted(p.name for p in REPLIES.glob("*.eml")) == sorted(EXPECTED)
