"""Soft bounces ask, they do not drop: a reader whose digests bounce softly again and again (a full mailbox) is asked
"do you still want these?" once, after soft_bounce_limit bounces spanning soft_bounce_days with no digest accepted in
between; an answer (any change on their page) forgives the bounces; no answer in reconfirm_days and they leave with
the reason "stopped receiving". Driven through real runs: digests sent to a real SMTP server on loopback, reports
read from a Maildir, the answer posted on the manage page."""

from __future__ import annotations

import mailbox
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from digest import clock
from digest.config import SourceConfig
from digest.ingest import ingest_sources
from digest.mail.build.verp import return_path
from digest.mail.replies.bounces import read_bounces
from digest.store.models import Bounce, Digest, Subscriber
from tests.conftest import Cli, at
from tests.test_mail_quality import dsn
from tests.webapp import WATER, Web, confirmed, csrf

ASKED = "Do you still want your practice digests?"


def _news(web: Web, tmp_path: Path, week: int) -> None:
    """A new practice in the water theme, so the week's digest has something to carry."""
    listing = tmp_path / f"week{week}.txt"
    listing.write_text(
        f"Rain Gardens of Week {week}\n\nSubmitted by Anonymous (not verified) on\n\n"
        f"Streets of town number {week} catch their rain in gardens.\n\nSubscribe to Water and Sanitation\n"
    )
    reports = ingest_sources(web.sessions, [SourceConfig(str(listing))], clock.now())
    assert all(r.ok for r in reports) and reports[0].new == 1


def _bounce_softly(web: Web, box: Path, address: str) -> None:
    """A full-mailbox report (5.2.2) for the newest digest of ``address``, read from the bounce Maildir."""
    with web.sessions() as session:
        digest = session.scalars(
            select(Digest).join(Subscriber).where(Subscriber.email == address).order_by(Digest.id.desc())
        ).first()
        assert digest is not None and digest.status == "sent"
        report = dsn(
            return_path(web.settings, digest.id),
            address,
            "failed",
            "5.2.2",
            digest.message_id,
            "552 5.2.2 Mailbox full",
        )
    folder = mailbox.Maildir(box, create=True)
    folder.add(report)
    folder.close()
    read = read_bounces(web.sessions, web.settings, box, clock.now())
    assert read.soft == 1, read


def _subscriber(web: Web, address: str) -> Subscriber:
    with web.sessions() as session:
        found = session.scalars(select(Subscriber).where(Subscriber.email == address)).one()
        session.expunge(found)
        return found


def _asked(web: Web, address: str) -> int:
    return sum(m["Subject"] == ASKED for m in web.mails_to(address))


def test_soft_bounces_ask_once_then_an_answer_forgives_and_silence_lets_go(
    web: Web, tmp_path: Path, run_cli: Cli
) -> None:
    ada = confirmed(web, "ada@example.org", WATER)
    confirmed(web, "bo@example.org", WATER)
    confirmed(web, "cy@example.org", WATER)
    box = tmp_path / "bounces"
    for week in range(4):
        monday = at("2026-11-16T08:00:00Z") + timedelta(weeks=week)
        _news(web, tmp_path, week)
        at((monday + timedelta(hours=1)).isoformat())
        web.send()
        at((monday + timedelta(hours=2)).isoformat())
        _bounce_softly(web, box, "ada@example.org")
        _bounce_softly(web, box, "bo@example.org")
        if week != 2:  # cy's third digest is accepted: the count starts again after it
            _bounce_softly(web, box, "cy@example.org")
        web.send()  # the run after the reports: asks whoever has bounced enough, for long enough
        if week < 3:
            # Three soft bounces over 14 days is not yet "at least 15 days": nobody is asked.
            assert _asked(web, "ada@example.org") == 0, week
    assert (_asked(web, "ada@example.org"), _asked(web, "bo@example.org"), _asked(web, "cy@example.org")) == (1, 1, 0)
    (mail,) = [m for m in web.mails_to("ada@example.org") if m["Subject"] == ASKED]
    text = mail.get_body(("plain",))
    assert text is not None and "the mailbox is full" in text.get_content()
    assert "List-Unsubscribe" not in mail  # a notice to one person, not bulk mail
    with web.sessions() as session:
        reasons = session.scalars(select(Bounce.reason).where(Bounce.kind == "soft")).all()
    assert set(reasons) == {"mailbox-full"} and len(reasons) == 11

    # Asked once: the runs that follow do not ask again, however many more bounces come.
    web.send()
    assert _asked(web, "ada@example.org") == 1
    listing = run_cli("subscribers", "list")
    assert "asked 'do you still want these?'" in listing.output

    # The page shows the question and its one button; the answer clears it and forgives the bounces.
    client = web.client()
    page = client.get(ada)
    assert "Yes, keep sending" in page.text
    answer = client.post(ada, data={"csrf_token": csrf(client, ada), "action": "still"})
    assert answer.status_code == 303
    assert "Yes, keep sending" not in client.get(ada).text
    assert _subscriber(web, "ada@example.org").reconfirm_asked_at is None

    # Thirty days with no answer: bo leaves, with the reason; ada, who answered, stays and is not asked again.
    at("2027-01-06T09:00:00Z")  # asked on 7 December at 10:00, the last run of the weeks above: not yet 30 days
    web.send()
    assert _subscriber(web, "bo@example.org").status == "confirmed"
    at("2027-01-06T11:00:00Z")
    web.send()
    bo = _subscriber(web, "bo@example.org")
    assert (bo.status, bo.left_reason) == ("unsubscribed", "stopped receiving")
    assert _subscriber(web, "ada@example.org").status == "confirmed" and _asked(web, "ada@example.org") == 1
    assert "stopped receiving" in run_cli("subscribers", "list").output
    clock.set_fixed_now(None)


def test_an_ask_that_cannot_go_is_asked_again_by_the_next_run(web: Web, tmp_path: Path) -> None:
    """The mail server away when the question would go: not marked asked (so never a sunset without a question)."""
    from dataclasses import replace

    from digest.mail.send.sunset import sunset
    from digest.mail.send.transport import transport_for

    confirmed(web, "ada@example.org", WATER)
    box = tmp_path / "bounces"
    for week in range(4):
        monday = at("2026-11-16T09:00:00Z") + timedelta(weeks=week)
        _news(web, tmp_path, week)
        at((monday + timedelta(minutes=5)).isoformat())
        web.send()
        _bounce_softly(web, box, "ada@example.org")
    away = replace(web.settings, smtp_url="smtp://127.0.0.1:9", smtp_timeout=2.0)
    done = sunset(web.sessions, away, transport_for(away), clock.now())
    assert (done.asked, done.not_reached) == ([], ["ada@example.org"])
    assert _subscriber(web, "ada@example.org").reconfirm_asked_at is None
    done = sunset(web.sessions, web.settings, transport_for(web.settings), clock.now())
    assert done.asked == ["ada@example.org"] and _asked(web, "ada@example.org") == 1
    clock.set_fixed_now(None)
