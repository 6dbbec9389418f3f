"""Digests people can read and filters let through: size, text wrapping, subject, headers, DKIM, SpamAssassin,
late bounces (VERP + RFC 3464 notifications), and templates that fail with their name and line."""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
import shutil
import subprocess
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.config import Settings
from digest.mail.build.render import HTML_BUDGET, Links, render_digest
from digest.mail.build.verp import digest_of, return_path
from digest.mail.plan.compose import DigestContent, PracticeEntry, ThemeSection
from digest.mail.replies.bounces import read_bounces
from digest.store.models import Bounce, Digest, Subscriber
from tests.conftest import Cli, RecordingHandler, at
from tests.test_send import GOAL6, WATER, add, ingest, send

LINKS = Links(
    "https://digest.test",
    "https://digest.test/unsubscribe/T",
    "https://digest.test/manage/M",
    "https://digest.test/digests/V",
)
WORDS = "Community water kiosks sell clean water at a fair price and train local women to run them well. "


def content(practices: int, themes: int = 3, summary_words: int = 150) -> DigestContent:
    per = -(-practices // themes)
    sections = []
    for t in range(themes):
        entries = tuple(
            PracticeEntry(
                t * per + i,
                f"uid{t}-{i}",
                f"Practice {i} of theme {t}: a rather long title about water",
                (WORDS * (summary_words // 18 + 1))[: summary_words * 6],
                f"https://x.test/p/{t}/{i}",
                "Submitted by someone",
                "2026-11-16T08:00:00+00:00",
                None,
                (f"Theme {t}", "Other theme"),
            )
            for i in range(min(per, practices - t * per))
        )
        sections.append(ThemeSection(f"Theme {t}", f"theme-{t}", entries))
    return DigestContent("2026-11-16T0800Z", tuple(sections))


# Size, layout, text --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("practices", [15, 2000])
def test_html_stays_under_the_clipping_size_whatever_the_count(practices: int) -> None:
    rendered = render_digest(content(practices), LINKS, postal_address="1 Rue de la Paix, Paris")
    size = len(rendered.html.encode())
    print(f"\nHTML part for {practices} practices: {size} bytes; text part {len(rendered.text.encode())} bytes")
    assert size <= HTML_BUDGET < 102 * 1024
    # What clipping would hide is there: the footer with the unsubscribe link and the postal address.
    assert LINKS.unsubscribe in rendered.html and "1 Rue de la Paix" in rendered.html
    if practices == 2000:
        assert "see them all" in rendered.html and 'href="https://digest.test/themes/theme-0?lang=en"' in rendered.html
        # Counted past the cap too, each theme's count its own.
        assert rendered.subject == "667 new practices in Theme 0 and 1333 more in 2 other themes"
    else:
        assert rendered.html.count("Read more") == 15
    # A table layout no wider than 640 px, styles inlined (no class left to a stylesheet mail clients drop).
    assert 'role="presentation"' in rendered.html and 'width="640"' in rendered.html
    assert "max-width: 640px" in rendered.html
    assert re.search(r'<h2 style="[^"]*color: #0b4f79', rendered.html)
    assert "prefers-color-scheme: dark" in rendered.html  # kept in <style> for the clients that read it


def test_text_part_is_wrapped_at_72_with_links_on_their_own_lines() -> None:
    text = render_digest(content(15), LINKS).text
    for line in text.splitlines():
        if not re.fullmatch(r"\s*https?://\S+", line):
            assert len(line) <= 72, line
    # Each item ends with its link, on its own line.
    assert "\n  https://x.test/p/0/0\n" in text
    assert "Read more" not in text


def test_trimmed_summary_and_other_themes() -> None:
    rendered = render_digest(content(3, themes=1, summary_words=400), LINKS)
    assert "…" in rendered.html and "Read more" in rendered.html
    assert "Also in Other theme" in rendered.html and "Also in Other theme" in rendered.text
    first = re.search(r'<p class="summary"[^>]*><span[^>]*>(.*?)</span> <a', rendered.html, re.S)
    assert first and len(first.group(1)) <= 290


@pytest.mark.parametrize(
    ("sizes", "subject"),
    [
        ((1,), "1 new practice in Theme 0"),
        ((3, 1), "3 new practices in Theme 0 and 1 in Theme 1"),
        ((1, 1), "1 new practice in Theme 0 and 1 in Theme 1"),
        ((1, 3, 2), "3 new practices in Theme 1 and 3 more in 2 other themes"),
    ],
)
def test_subject_names_the_busiest_theme_and_counts_the_rest(sizes: tuple[int, ...], subject: str) -> None:
    sections = tuple(
        ThemeSection(
            f"Theme {t}",
            f"t{t}",
            tuple(PracticeEntry(i, f"u{t}{i}", "T", "", None, None, "2026-11-16") for i in range(n)),
        )
        for t, n in enumerate(sizes)
    )
    assert DigestContent("p", sections).subject == subject


# Headers and DKIM ----------------------------------------------------------------------------------------------


def a_week_of_news(
    sessions: sessionmaker[Session],
    settings: Settings,
    people: tuple[str, ...] = ("ada@example.org",),
    themes: tuple[str, ...] = (WATER,),
    first: tuple[str, ...] = ("listing-water.txt",),
    then: tuple[str, ...] = ("listing-water-week2.txt",),
) -> None:
    """Subscribers of ``themes`` who get one digest on Monday 16 Nov with what ``then`` added."""
    at("2026-11-09T10:00:00Z")
    ingest(sessions, *first)
    for who in people:
        add(sessions, who, *themes)
    at("2026-11-11T10:00:00Z")
    ingest(sessions, *then)
    at("2026-11-16T09:00:00Z")
    send(sessions, settings)


def _received(handler: RecordingHandler, address: str) -> tuple[bytes, EmailMessage, str]:
    (got,) = handler.to(address)
    return got.data, got.message, got.sender


def test_reply_to_non_ascii_sender_name_and_no_header_injection(
    sessions: sessionmaker[Session], smtp_settings: Settings, smtp_server: tuple[RecordingHandler, str]
) -> None:
    settings = replace(
        smtp_settings, mail_from="Équipe Pratiques <digest@digest.test>", reply_to="Help <help@digest.test>"
    )
    a_week_of_news(sessions, settings)
    raw, message, _ = _received(smtp_server[0], "ada@example.org")
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("ascii")
    assert "From: =?utf-8?" in head  # RFC 2047
    assert str(message["From"]) == "Équipe Pratiques <digest@digest.test>"
    assert str(message["Reply-To"]) == "Help <help@digest.test>"
    assert re.search(r"^Message-ID: <[^>]+@digest\.test>$", head, re.M)
    for name in ("List-Id", "List-Unsubscribe", "List-Unsubscribe-Post"):
        (line,) = [x for x in head.splitlines() if x.startswith(name + ":")]
        assert "=?" not in line  # one unfolded, unencoded line


@pytest.fixture
def dkim_key(tmp_path: Path) -> tuple[Path, bytes]:
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test key")
    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True, timeout=120)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True, capture_output=True, timeout=60
    ).stdout
    import base64

    return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def test_dkim_signature_verifies_against_the_public_key(
    sessions: sessionmaker[Session],
    smtp_settings: Settings,
    smtp_server: tuple[RecordingHandler, str],
    dkim_key: tuple[Path, bytes],
) -> None:
    import dkim

    key, record = dkim_key
    settings = replace(
        smtp_settings,
        dkim_private_key=str(key),
        dkim_selector="mail2026",
        dkim_domain="digest.test",
        reply_to="help@digest.test",
    )
    a_week_of_news(sessions, settings)
    raw, message, _ = _received(smtp_server[0], "ada@example.org")
    asked: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return record if name == b"mail2026._domainkey.digest.test." else b""

    assert dkim.verify(raw, dnsfunc=dns)
    assert asked == [b"mail2026._domainkey.digest.test."]
    signature = str(message["DKIM-Signature"]).replace("\r", "").replace("\n", "").replace(" ", "").replace("\t", "")
    signed = {h.lower() for h in re.search(r"h=([^;]+)", signature).group(1).split(":")}  # type: ignore[union-attr]
    assert {
        "from",
        "subject",
        "date",
        "message-id",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "reply-to",
        "to",
    } <= signed
    tampered = raw.replace(b"Subject: ", b"Subject: Re: ", 1)
    assert not dkim.verify(tampered, dnsfunc=dns)


# SpamAssassin -------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not shutil.which("spamassassin"), reason="spamassassin is not installed (.ci/run installs it)")
def test_spamassassin_scores_a_digest_of_every_theme_at_most_half_a_point(
    sessions: sessionmaker[Session], smtp_settings: Settings, smtp_server: tuple[RecordingHandler, str]
) -> None:
    a_week_of_news(
        sessions,
        replace(smtp_settings, postal_address="1 Rue de la Paix, 75002 Paris, France"),
        themes=(WATER, GOAL6),
        first=("listing-water.txt", "listing-goal6.txt"),
        then=("listing-water-week2.txt", "listing-hostile.txt"),
    )
    raw, message, _ = _received(smtp_server[0], "ada@example.org")
    # As the receiving MTA would: one Received header, from a routable address, at the message's own Date.
    received = (
        f"Received: from mail.digest.test (mail.digest.test [93.184.216.34])\n\tby mx.example.org "
        f"(Postfix) with ESMTPS id 4XyZ1\n\tfor <ada@example.org>; {message['Date']}\n"
    ).encode()
    scored = subprocess.run(["spamassassin", "-L", "-t"], input=received + raw, capture_output=True, timeout=300)
    report = scored.stdout.decode("utf-8", "replace")
    score = float(re.search(r"X-Spam-Status: \w+, score=(-?[\d.]+)", report).group(1))  # type: ignore[union-attr]
    print(f"\nSpamAssassin (local rules) score: {score}")
    assert score <= 0.5, report[report.find("Content analysis") :]


# Late bounces -------------------------------------------------------------------------------------------------


def dsn(to: str, recipient: str, action: str, status: str, returned_id: str, diagnostic: str) -> bytes:
    return f"""From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
Date: Mon, 16 Nov 2026 09:05:00 +0000
Message-ID: <dsn.{abs(hash((to, status)))}@mx.example.org>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

This is the mail system at host mx.example.org. I'm sorry to have to inform you that your message could not be
delivered to one or more recipients.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
Arrival-Date: Mon, 16 Nov 2026 09:04:58 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {diagnostic}

--B
Content-Type: text/rfc822-headers

From: digest@digest.example.org
To: {recipient}
Message-ID: {returned_id}
Subject: 3 new practices

--B--
""".encode()


def test_late_bounces_are_read_from_a_maildir_and_an_mbox_once(
    sessions: sessionmaker[Session],
    smtp_settings: Settings,
    smtp_server: tuple[RecordingHandler, str],
    tmp_path: Path,
    run_cli: Cli,
) -> None:
    handler = smtp_server[0]
    settings = replace(smtp_settings, bounce_address="bounces@digest.test")
    a_week_of_news(sessions, settings, people=tuple(f"{who}@example.org" for who in ("ada", "bob", "carol", "dan")))
    with sessions() as session:
        rows = session.execute(
            select(Subscriber.email, Digest.id, Digest.message_id).join(Digest, Digest.subscriber_id == Subscriber.id)
        )
        digests = {address: (digest_id, message_id) for address, digest_id, message_id in rows}
    # Every digest left with its own return path, which names it (and only with our HMAC).
    for who in ("ada", "bob"):
        (got,) = handler.to(f"{who}@example.org")
        digest_id = digests[f"{who}@example.org"][0]
        assert got.sender == return_path(settings, digest_id) and got.sender.startswith("bounces+")
        assert digest_of(settings, got.sender.upper()) == digest_id  # an MTA that folds case keeps it
    assert digest_of(settings, "bounces+1-000000000000@digest.test") is None

    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    box.add(
        dsn(
            return_path(settings, digests["ada@example.org"][0]),
            "ada@example.org",
            "failed",
            "5.1.1",
            digests["ada@example.org"][1],
            "550 5.1.1 <ada@example.org>: Recipient address rejected",
        )
    )
    box.add(
        dsn(
            return_path(settings, digests["bob@example.org"][0]),
            "bob@example.org",
            "delayed",
            "4.4.1",
            digests["bob@example.org"][1],
            "451 4.4.1 mailbox busy, will retry",
        )
    )
    box.add(b"From: friend@example.org\nTo: bounces@digest.test\nSubject: Thanks for the digest!\n\nLovely.\n")
    box.add(dsn("bounces@digest.test", "zed@example.org", "failed", "5.1.1", "<elsewhere@x.test>", "550 no such user"))
    # A forged token: a DSN to a made-up VERP address, naming dan's digest id, is not believed on the token.
    box.add(
        dsn(
            f"bounces+{digests['dan@example.org'][0]:x}-abcdefabcdef@digest.test",
            "dan@example.org",
            "failed",
            "5.1.1",
            "<not-a-digest@x.test>",
            "550 forged",
        )
    )
    box.close()

    now = at("2026-11-16T10:00:00Z")
    report = read_bounces(sessions, settings, tmp_path / "bounces", now)
    assert (report.read, report.hard, report.soft, report.suppressed) == (5, 1, 1, 1)
    assert len(report.skipped) == 3 and any("not a delivery failure" in why for _, why in report.skipped)
    with sessions() as session:
        status = dict(session.execute(select(Subscriber.email, Subscriber.status)).all())
        assert status == {
            "ada@example.org": "suppressed",
            "bob@example.org": "confirmed",
            "carol@example.org": "confirmed",
            "dan@example.org": "confirmed",
        }
        kinds = sorted((b.kind, b.status) for b in session.scalars(select(Bounce)))
        assert kinds == [("hard", "5.1.1"), ("soft", "4.4.1")]

    again = read_bounces(sessions, settings, tmp_path / "bounces", now)
    assert (again.hard, again.soft, again.already) == (0, 0, 2)

    # An mbox, and a notification whose recipient was rewritten: matched by the returned Message-ID.
    mbox = mailbox.mbox(tmp_path / "bounces.mbox", create=True)
    mbox.add(
        dsn(
            "postmaster@digest.test",
            "carol@example.org",
            "failed",
            "5.1.1",
            digests["carol@example.org"][1],
            "550 5.1.1 <carol@example.org>: user unknown",
        )
    )
    mbox.close()
    clock.set_fixed_now(None)
    out = read_bounces(sessions, settings, tmp_path / "bounces.mbox", now)
    assert (out.hard, out.suppressed) == (1, 1)

    missing = run_cli("bounces", str(tmp_path / "nowhere"))
    assert missing.exit_code == 1 and "no such Maildir or mbox" in missing.output


@pytest.mark.probe
def test_a_replayed_bounce_counts_once_and_odd_mailboxes_are_read_or_named(
    sessions: sessionmaker[Session], smtp_settings: Settings, tmp_path: Path, run_cli: Cli
) -> None:
    """The same report relayed again with one more Received: line is one bounce (two would suppress at 2); a
    Maildir with only new/ is read; random bytes given as an mbox are named as not one, not read as empty."""
    settings = replace(smtp_settings, bounce_address="bounces@digest.test", suppress_after_bounces=2)
    a_week_of_news(sessions, settings, people=("ada@example.org",))
    with sessions() as session:
        digest_id, message_id = session.execute(select(Digest.id, Digest.message_id)).one()
    report = dsn(return_path(settings, digest_id), "ada@example.org", "failed", "5.1.1", message_id, "550 no such user")
    replayed = b"Received: from relay.example.net by mx.digest.test; Mon, 16 Nov 2026 09:06:00 +0000\n" + report
    half_built = tmp_path / "half"
    (half_built / "new").mkdir(parents=True)  # an MTA that has delivered once has made new/ only
    (half_built / "new" / "1.eml").write_bytes(report)
    (half_built / "new" / "2.eml").write_bytes(replayed)
    now = at("2026-11-16T10:00:00Z")
    got = read_bounces(sessions, settings, half_built, now)
    assert (got.read, got.hard, got.already, got.suppressed) == (2, 1, 1, 0)
    with sessions() as session:
        assert session.scalar(select(Subscriber.status)) == "confirmed"
        assert session.scalar(select(Subscriber.bounces)) == 1

    noise = tmp_path / "noise.mbox"
    noise.write_bytes(bytes(range(256)) * 4)
    refused = run_cli("bounces", str(noise))
    assert refused.exit_code == 1 and "not an mbox file" in refused.output and "Traceback" not in refused.output


def test_a_dsn_parses_like_postfix_writes_it() -> None:
    from digest.mail.replies.reader import read_bytes, returned_message_id

    raw = dsn("bounces+1f-aaaaaaaaaaaa@d.test", "x@example.org", "failed", "5.7.1", "<m@d.test>", "550 5.7.1 spam")
    (reading,) = read_bytes(raw)
    # 5.7.1 is the receiver refusing this message (spam), not the address gone: soft (RFC 3463's class is not its
    # meaning), so no reader is dropped for it.
    assert (reading.kind, reading.status, reading.recipient, reading.reason) == (
        "soft",
        "5.7.1",
        "x@example.org",
        "spam",
    )
    assert "spam" in reading.diagnostic
    assert returned_message_id(email.message_from_bytes(raw, policy=email.policy.default)) == "<m@d.test>"


# Templates ----------------------------------------------------------------------------------------------------


def test_a_broken_template_is_named_with_its_line_before_anything_is_sent(
    run_cli: Cli, tmp_path: Path, smtp_server: tuple[RecordingHandler, str]
) -> None:
    from tests.conftest import fixture_path

    templates = tmp_path / "templates"
    shutil.copytree(Path(__file__).resolve().parents[1] / "templates" / "email", templates)
    html = (templates / "digest.html").read_text().splitlines()
    html[12] = "{% for x in %}"
    (templates / "digest.html").write_text("\n".join(html))
    run_cli("ingest", fixture_path("listing-water.txt"), now="2026-11-09T10:00:00Z")
    run_cli("subscribe", "ada@example.org", "--theme", WATER, "--confirmed", now="2026-11-10T10:00:00Z")
    run_cli("ingest", fixture_path("listing-water-week2.txt"), now="2026-11-12T10:00:00Z")

    env = {"DIGEST_TEMPLATES_DIR": str(templates)}
    preview = run_cli("preview", "ada@example.org", now="2026-11-16T09:00:00Z", **env)
    assert preview.exit_code == 1
    assert "digest.html, line 13" in preview.output and "TemplateSyntaxError" in preview.output
    sent = run_cli("send", now="2026-11-16T09:00:00Z", DIGEST_SMTP_URL=smtp_server[1], **env)
    assert sent.exit_code == 1 and "digest.html, line 13" in sent.output
    assert smtp_server[0].received == []

    # A template that compiles but fails when rendered (an unknown variable) is named with its line too.
    html[12] = "{{ no_such_variable }}"
    (templates / "digest.html").write_text("\n".join(html))
    preview = run_cli("preview", "ada@example.org", now="2026-11-16T09:00:00Z", **env)
    assert preview.exit_code == 1 and "digest.html, line 13" in preview.output and "no_such_variable" in preview.output


def test_the_worker_job_reads_the_configured_bounce_maildir(
    sessions: sessionmaker[Session], smtp_settings: Settings, smtp_server: tuple[RecordingHandler, str], tmp_path: Path
) -> None:
    from types import SimpleNamespace

    from digest.worker.jobs import BOUNCES, JOBS

    settings = replace(smtp_settings, bounce_maildir=str(tmp_path / "bounces"))
    a_week_of_news(sessions, settings)
    (got,) = smtp_server[0].to("ada@example.org")
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    box.add(dsn(got.sender, "ada@example.org", "failed", "5.1.1", "<x@y>", "550 5.1.1 unknown user"))
    box.close()
    counts, error = JOBS[BOUNCES](SimpleNamespace(factory=sessions, settings=settings))  # type: ignore[arg-type]
    assert error is None and (counts["hard"], counts["suppressed"], counts["skipped"]) == (1, 1, 0)


def test_a_shared_encoded_body_decodes_to_each_recipients_text() -> None:
    """Render once: the body is encoded once with slots; each recipient's values go in between soft line breaks.
    Whatever the text and the values, lines stay within 76 characters and the body decodes to the filled text."""
    import quopri
    import random

    from digest.mail.build.mime import EncodedBody

    slots = {"unsubscribe": "@@u@@", "manage": "@@m@@", "view": "@@v@@"}
    rng = random.Random(7)
    printable = [chr(c) for c in range(32, 127)]
    for _ in range(600):
        pieces = ["".join(rng.choice('ab =é.\t\n<>"x') for _ in range(rng.randint(0, 200))) for _ in range(8)]
        text = "".join(p + rng.choice(["@@u@@", "@@m@@", "@@v@@", ""]) for p in pieces[: rng.randint(1, 8)])
        # Links (printable ASCII, encoded as themselves and cut by soft breaks), and values that need encoding:
        # "=", a space at the end, a tab, non-ASCII.
        anything = "".join(rng.choice(printable) for _ in range(rng.randint(0, 180))) + rng.choice(["", " ", "\t"])
        values = {
            "unsubscribe": "https://d.test/unsubscribe/" + "A" * rng.randint(0, 200),
            "manage": "https://d.test/m/B=C é",
            "view": anything,
        }
        encoded = EncodedBody(text, slots).fill(values)
        assert max(len(line) for line in encoded.split(b"\n")) <= 76
        expected = text.replace("@@u@@", values["unsubscribe"]).replace("@@m@@", values["manage"])
        assert quopri.decodestring(encoded).decode() == expected.replace("@@v@@", values["view"])


def test_a_message_laid_out_for_smtp_once_is_the_message_as_data_carries_it() -> None:
    """The send run's messages come in DATA's form from their template (CRLF, a dot doubled wherever a line begins
    with one): byte for byte what converting the plain message gives (RFC 5321 4.5.2, done the obvious way here), and
    back again for a Maildir. Dots at the start of the text, after a slot, inside values cut across lines."""
    import random
    from datetime import UTC, datetime

    from digest.mail.build.mime import DataForm, EncodedBody, Envelope, MessageTemplate

    slots = {"unsubscribe": "@@u@@", "manage": "@@m@@", "view": "@@v@@"}
    rng = random.Random(11)
    envelope = Envelope("Digest <d@x.test>", "", "Subject", "", datetime(2026, 12, 7, tzinfo=UTC), "l.x.test", "")
    for n in range(300):
        pieces = ["".join(rng.choice("ab .\n.é=") for _ in range(rng.randint(0, 160))) for _ in range(6)]
        text = "".join(p + rng.choice(["@@u@@", "@@m@@", "@@v@@", ""]) for p in pieces)
        html = rng.choice([None, "." + text.replace("\n", "\n.")])
        values = {
            "unsubscribe": "https://d.test/u/" + "." * rng.randint(0, 120),
            "manage": "." + "x" * rng.randint(60, 90) + "." * 20,
            "view": rng.choice(["", ".", "https://d.test/v/.."]),
        }
        bodies = (EncodedBody(text, slots), EncodedBody(html, slots) if html is not None else None)
        plain = MessageTemplate(envelope, *bodies)
        data = MessageTemplate(envelope, *bodies, data=True)
        args = ("ada@example.org", f"<{n}@x.test>", envelope.date, "https://d.test/u/1", values)
        message = plain.fill(*args)
        laid_out = data.fill(*args)
        assert isinstance(laid_out, DataForm)
        boundary = re.search(rb'boundary="([^"]+)"', message)
        if boundary:  # each template draws its own boundary
            laid_out = DataForm(laid_out.replace(re.search(rb'boundary="([^"]+)"', laid_out)[1], boundary[1]))
        expected = re.sub(rb"(?m)^\.", b"..", message.replace(b"\n", b"\r\n"))
        assert bytes(laid_out) == expected
        assert laid_out.message() == message
