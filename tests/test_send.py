"""Planning and sending over a real SMTP server on loopback: who gets what, once."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings, SourceConfig
from digest.ingest import ingest_sources
from digest.mail.send.delivery import SendReport
from digest.mail.send.runs import plan_and_send
from digest.mail.send.transport import transport_for
from digest.store import db
from digest.store.models import ContentPractice, Digest, Subscriber
from digest.store.states import SubscriberStatus
from digest.subscriptions.subscribers import subscribe, unsubscribe
from digest.subscriptions.tokens import Purpose, read_token
from tests.conftest import RecordingHandler, at, fixture_path

WATER = "water-and-sanitation"
GOAL6 = "goal-6-clean-water-and-sanitation"
WATER_TITLES = {
    "Community Water Kiosks in Kisumu, Kenya: Affordable Water for Informal Settlements",
    "Clean Taps Now",
    "Rainwater Harvesting in Chennai",
    "Water Safety Plans for Small Towns",
}
GOAL6_ONLY = {"Menstrual Health in Schools of Forlì and Zürich", "Gender Budgeting for Water Utilities"}
DHAKA = "Women-led sanitation committees in Dhaka manage shared toilet blocks, collect…"
KIOSK = "Community Water Kiosks in Kisumu, Kenya: Affordable Water for Informal Settlements"


def ingest(sessions: sessionmaker[Session], *names: str) -> None:
    from digest import clock

    reports = ingest_sources(sessions, [SourceConfig(fixture_path(n)) for n in names], clock.now())
    assert all(r.ok for r in reports), [r.error for r in reports]


def send(sessions: sessionmaker[Session], settings: Settings) -> SendReport:
    return plan_and_send(sessions, settings, transport_for(settings))


def given(subscriber_id: int | None) -> Select[Any]:
    """The ledger rows of one subscriber: their digests joined with what each digest's content gives."""
    return (
        select(Digest.id, ContentPractice.practice_id)
        .join(ContentPractice, ContentPractice.content_hash == Digest.content_hash)
        .where(Digest.subscriber_id == subscriber_id)
    )


def titles(message: EmailMessage) -> list[str]:
    """The practice titles in a digest, read off its text part (`* Title` lines)."""
    part = message.get_body(("plain",))
    assert part is not None
    out: list[str] = []
    title: list[str] | None = None
    for line in part.get_content().splitlines():
        if line.startswith("* "):
            title = [line[2:]]
            out.append("")
        elif title is not None and line.startswith("  ") and line.strip() and not line.startswith("  Submitted by"):
            title.append(line.strip())  # a long title wraps at 72 columns
        else:
            title = None
            continue
        out[-1] = " ".join(title)
    return out


def add(sessions: sessionmaker[Session], email: str, *themes: str, confirmed: bool = True) -> None:
    from digest import clock

    with db.transaction(sessions) as s:
        subscribe(s, email, themes, clock.now(), confirmed=confirmed)


def create_themes(sessions: sessionmaker[Session], *names: str) -> None:
    from digest import clock
    from digest.store.themes import ThemeCache

    with db.transaction(sessions) as s:
        cache = ThemeCache(s)
        for name in names:
            cache.get(name, clock.now())


def setup_two_themes(sessions: sessionmaker[Session]) -> None:
    """Themes exist, subscribers confirm in the week before the first slot, then practices arrive."""
    at("2026-11-09T10:00:00Z")
    create_themes(sessions, "Water and Sanitation", "Goal 6: Clean water and sanitation")
    at("2026-11-10T10:00:00Z")
    add(sessions, "alice@example.org", WATER)
    add(sessions, "bob@example.org", GOAL6)
    add(sessions, "carol@example.org", WATER, GOAL6)
    add(sessions, "dave@example.org", WATER, confirmed=False)
    at("2026-11-11T10:00:00Z")
    ingest(sessions, "listing-water.txt", "listing-goal6.txt")


def first_week_sent(sessions: sessionmaker[Session], settings: Settings) -> SendReport:
    """The two-theme setup, then the send at Monday 10:00 in Paris, after the 08:00 slot."""
    setup_two_themes(sessions)
    at("2026-11-16T09:00:00Z")
    return send(sessions, settings)


@pytest.mark.parametrize("batch_size", [1, 500])
def test_each_subscriber_gets_their_themes_once(
    sessions: sessionmaker[Session],
    smtp_settings: Settings,
    smtp_server: tuple[RecordingHandler, str],
    batch_size: int,
) -> None:
    handler = smtp_server[0]
    report = first_week_sent(sessions, replace(smtp_settings, batch_size=batch_size))
    assert (report.due, report.planned, report.sent) == (3, 3, 3)

    (alice,) = handler.to("alice@example.org")
    assert set(titles(alice.message)) == WATER_TITLES | {DHAKA} and len(titles(alice.message)) == 5
    (bob,) = handler.to("bob@example.org")
    assert sorted(titles(bob.message)) == sorted(GOAL6_ONLY | {KIOSK})
    (carol,) = handler.to("carol@example.org")
    # The kiosk once, though it is new in both her themes; under the theme it joined first.
    assert sorted(titles(carol.message)) == sorted(WATER_TITLES | GOAL6_ONLY | {DHAKA})
    subject = "5 new practices in Water and Sanitation and 2 in Goal 6: Clean water and sanitation"
    assert carol.message["Subject"] == subject  # each number that of the section it names
    assert handler.to("dave@example.org") == []  # not confirmed


def test_second_send_in_same_period_and_empty_week_send_nothing(
    sessions: sessionmaker[Session], smtp_settings: Settings, smtp_server: tuple[RecordingHandler, str]
) -> None:
    handler = smtp_server[0]
    first_week_sent(sessions, smtp_settings)
    sent = len(handler.received)
    at("2026-11-18T09:00:00Z")
    again = send(sessions, smtp_settings)
    assert (again.planned, again.sent) == (0, 0)
    at("2026-11-23T09:00:00Z")  # next week, nothing new anywhere
    quiet = send(sessions, smtp_settings)
    assert (quiet.due, quiet.planned, quiet.empty, quiet.sent) == (3, 0, 3, 0)
    assert len(handler.received) == sent


def test_practice_added_next_week_goes_only_to_its_theme(
    sessions: sessionmaker[Session], smtp_settings: Settings, smtp_server: tuple[RecordingHandler, str]
) -> None:
    handler = smtp_server[0]
    first_week_sent(sessions, smtp_settings)
    handler.received.clear()
    at("2026-11-19T10:00:00Z")
    ingest(sessions, "listing-water-week2.txt")
    at("2026-11-23T09:00:00Z")
    report = send(sessions, smtp_settings)
    assert report.sent == 2  # bob's theme had nothing new
    assert titles(handler.to("alice@example.org")[0].message) == ["Greywater Reuse in Jordanian Mosques"]
    assert titles(handler.to("carol@example.org")[0].message) == ["Greywater Reuse in Jordanian Mosques"]
    assert handler.to("bob@example.org") == []


def test_practice_joining_a_second_theme_is_new_there_but_never_sent_twice(
    sessions: sessionmaker[Session], smtp_settings: Settings, smtp_server: tuple[RecordingHandler, str]
) -> None:
    handler = smtp_server[0]
    at("2026-11-09T10:00:00Z")
    ingest(sessions, "listing-water-week2.txt")  # creates Water; the kiosk is in Water only
    create_themes(sessions, "Goal 6: Clean water and sanitation")
    at("2026-11-10T10:00:00Z")
    add(sessions, "alice@example.org", WATER)
    add(sessions, "bob@example.org", GOAL6)
    add(sessions, "carol@example.org", WATER, GOAL6)
    at("2026-11-11T10:00:00Z")
    ingest(sessions, "listing-water.txt")  # the kiosk is already in Water: unchanged there
    at("2026-11-16T09:00:00Z")
    send(sessions, smtp_settings)
    assert KIOSK not in titles(handler.to("carol@example.org")[0].message)  # it was in Water before carol
    handler.received.clear()
    at("2026-11-18T10:00:00Z")
    ingest(sessions, "listing-goal6.txt")  # now the kiosk joins Goal 6: new there
    at("2026-11-23T09:00:00Z")
    send(sessions, smtp_settings)
    assert KIOSK in titles(handler.to("bob@example.org")[0].message)
    assert KIOSK in titles(handler.to("carol@example.org")[0].message)  # never sent to her before
    assert handler.to("alice@example.org") == []
    handler.received.clear()
    at("2026-11-25T10:00:00Z")
    with db.transaction(sessions) as s:  # and once sent, never again, even from a third theme
        from digest.store.models import Membership, Practice
        from digest.store.themes import ThemeCache

        theme = ThemeCache(s).get("Kenya", at("2026-11-25T10:00:00Z"))
        kiosk = s.scalar(select(Practice).where(Practice.title == KIOSK))
        assert kiosk is not None
        s.add(Membership(practice_id=kiosk.id, theme_id=theme.id, added_at=at("2026-11-25T10:00:00Z")))
    with db.transaction(sessions) as s:
        subscribe(s, "carol@example.org", ["kenya"], at("2026-11-24T10:00:00Z"), confirmed=True)
    at("2026-11-30T09:00:00Z")
    send(sessions, smtp_settings)
    assert handler.to("carol@example.org") == []
    with sessions() as s:
        carol_id = s.scalar(select(Subscriber.id).where(Subscriber.email == "carol@example.org"))
        rows = s.scalars(given(carol_id).with_only_columns(ContentPractice.practice_id)).all()
        assert rows and len(rows) == len(set(rows))


def test_nothing_from_before_confirmation_unless_backfill(
    sessions: sessionmaker[Session], smtp_settings: Settings, smtp_server: tuple[RecordingHandler, str]
) -> None:
    handler = smtp_server[0]
    at("2026-11-09T10:00:00Z")
    ingest(sessions, "listing-water.txt")
    at("2026-11-12T10:00:00Z")
    add(sessions, "late@example.org", WATER)
    with db.transaction(sessions) as s:
        subscribe(s, "backfill@example.org", [WATER], at("2026-11-12T10:00:00Z"), confirmed=True, backfill_days=7)
    at("2026-11-16T09:00:00Z")
    send(sessions, smtp_settings)
    assert handler.to("late@example.org") == []
    assert len(titles(handler.to("backfill@example.org")[0].message)) == 5


def test_unsubscribe_takes_effect_at_once(
    sessions: sessionmaker[Session], smtp_settings: Settings, smtp_server: tuple[RecordingHandler, str]
) -> None:
    handler = smtp_server[0]
    setup_two_themes(sessions)
    at("2026-11-16T09:00:00Z")
    with db.transaction(sessions) as s:
        unsubscribe(s, "alice@example.org", at("2026-11-16T09:00:00Z"))
        unsubscribe(s, "carol@example.org", at("2026-11-16T09:00:00Z"), theme=GOAL6)
    send(sessions, smtp_settings)
    assert handler.to("alice@example.org") == []
    assert len(handler.to("carol@example.org")) == 1


def test_message_headers_structure_and_escaping(
    sessions: sessionmaker[Session], smtp_settings: Settings, smtp_server: tuple[RecordingHandler, str]
) -> None:
    handler = smtp_server[0]
    at("2026-11-09T10:00:00Z")
    ingest(sessions, "listing-water-week2.txt")
    # A long base URL: the List-Unsubscribe header must stay one unfolded, unencoded line anyway.
    settings = replace(smtp_settings, base_url="https://digest.test/" + "a-very-long-path-segment/" * 4)
    add(sessions, "alice@example.org", WATER)
    at("2026-11-11T10:00:00Z")
    ingest(sessions, "listing-hostile.txt")
    at("2026-11-16T09:00:00Z")
    send(sessions, settings)
    (received,) = handler.to("alice@example.org")
    raw = received.data.decode("ascii")  # 7-bit clean: bodies are quoted-printable
    message = received.message

    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Id"] == "Practice digest <practices.digest.example.org>"
    assert message["Subject"] == "1 new practice in Water and Sanitation"
    for name in ("Message-ID", "Date", "From"):
        assert message[name]
    for line in raw.split("\n\n", 1)[0].splitlines():
        if line.startswith("List-"):
            assert "=?" not in line
    unsubscribe_line = next(line for line in raw.splitlines() if line.startswith("List-Unsubscribe:"))
    # The https URL first (one click, RFC 8058), then the mailto: (RFC 2369), on the one unfolded line.
    url, mailto = unsubscribe_line.removeprefix("List-Unsubscribe: <").removesuffix(">").split(">, <")
    assert url.startswith(settings.base_url + "/unsubscribe/")
    assert re.fullmatch(r"mailto:[^@?]+\+u[0-9a-f]+-[0-9a-f]{12}@[^?]+\?subject=unsubscribe", mailto), mailto
    token = url.rsplit("/", 1)[1]
    with sessions() as session:
        key = session.scalars(select(Subscriber.key).where(Subscriber.email == "alice@example.org")).one()
    assert read_token(settings.secret_key, token, Purpose.UNSUBSCRIBE) == key
    # Opaque: the token names neither the subscriber's id nor their address.
    assert "alice" not in base64.urlsafe_b64decode(token.split(".")[0] + "==").decode("latin-1")

    html = message.get_body(("html",))
    assert html is not None
    body = html.get_content()
    assert "<script>" not in body and "&lt;script&gt;" in body
    assert "<img" not in body and "<b>Mallory</b>" not in body
    assert 'href="https://digest.test/a-very-long-path-segment' in body  # links are absolute
    text = titles(message)
    assert text == ['<script>alert("x")</script> Safe Streets & "Lights"']  # plain text stays literal


def test_message_id_is_fixed_at_planning_and_ledger_records_practices(
    sessions: sessionmaker[Session], smtp_settings: Settings, smtp_server: tuple[RecordingHandler, str]
) -> None:
    handler = smtp_server[0]
    first_week_sent(sessions, smtp_settings)
    with sessions() as s:
        carol_id = s.scalar(select(Subscriber.id).where(Subscriber.email == "carol@example.org"))
        digests = {d.subscriber_id: d for d in s.scalars(select(Digest))}
        ledger = s.execute(given(carol_id).with_only_columns(Digest.id, ContentPractice.practice_id)).all()
    assert carol_id is not None
    (carol,) = handler.to("carol@example.org")
    assert carol.message["Message-ID"] == digests[carol_id].message_id
    assert digests[carol_id].status == "sent" and digests[carol_id].sent_at is not None
    assert len(ledger) == 7 and {digest_id for digest_id, _ in ledger} == {digests[carol_id].id}


def test_maildir_outbox_without_smtp(sessions: sessionmaker[Session], settings: Settings) -> None:
    report = first_week_sent(sessions, settings)
    assert report.sent == 3
    assert len(list((Path(settings.outbox_dir) / "new").iterdir())) == 3


def test_mail_carries_the_subject_frozen_at_planning(
    sessions: sessionmaker[Session], smtp_settings: Settings, smtp_server: tuple[RecordingHandler, str]
) -> None:
    from digest.mail.plan.planner import PlanPolicy, plan_due
    from digest.mail.send.runs import deliver_due

    handler = smtp_server[0]
    setup_two_themes(sessions)
    now = at("2026-11-16T09:00:00Z")
    plan_due(sessions, PlanPolicy.from_settings(smtp_settings), now)
    with db.transaction(sessions) as s:  # as if the subject wording changed in code after planning
        s.execute(update(Digest).values(subject="Frozen at planning"))
    transport = transport_for(smtp_settings)
    try:
        deliver_due(sessions, smtp_settings, transport, SendReport())
    finally:
        transport.close()
    assert {r.message["Subject"] for r in handler.received} == {"Frozen at planning"}
    (alice,) = handler.to("alice@example.org")
    html = alice.message.get_body(("html",))
    assert html is not None and "<title>Frozen at planning</title>" in html.get_content()


def test_feed_html_reaches_the_html_part_sanitised(
    sessions: sessionmaker[Session], smtp_settings: Settings, smtp_server: tuple[RecordingHandler, str]
) -> None:
    at("2026-11-10T10:00:00Z")
    create_themes(sessions, "Water and Sanitation")
    add(sessions, "ada@example.org", "Water and Sanitation")
    at("2026-11-12T10:00:00Z")
    ingest(sessions, "feed-drupal-water.rss")
    at("2026-11-16T09:00:00Z")
    assert send(sessions, smtp_settings).sent == 1
    (received,) = smtp_server[0].to("ada@example.org")
    html_part, text_part = received.message.get_body(("html",)), received.message.get_body(("plain",))
    assert html_part is not None and text_part is not None
    html, text = html_part.get_content(), text_part.get_content()
    # The digest shows a teaser of the summary as text (the full HTML is on the practice's page): the feed's
    # markup, let alone its script, never reaches the mail.
    assert "monthly repair days with the utility;" in html
    assert "<li>" not in html and "alert" not in html and "onclick" not in html
    assert "monthly repair days" in " ".join(text.split()) and "<" not in text.split("Unsubscribe")[0]


def plan_batches() -> float:
    """The batches this process has planned so far (digest_plan_batch_seconds' count)."""
    from digest import metrics

    (family,) = metrics.PLAN_BATCH_SECONDS.collect()
    return next(s.value for s in family.samples if s.name.endswith("_count"))


def test_a_run_plans_a_small_batch_first_then_full_batches_each_subscriber_once(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    """Senders forked beside a run wait for its first planning commit: that batch is FIRST_BATCH subscribers, the
    next ones batch_size (the batches read, and plan_due's own, counted by its histogram), and every due subscriber
    is read once and gets one digest."""
    from digest import clock
    from digest.mail.plan.planner import FIRST_BATCH, PlanPolicy, plan_due, subscriber_batches

    at("2026-11-09T10:00:00Z")
    create_themes(sessions, "Water and Sanitation")
    at("2026-11-10T10:00:00Z")
    people = FIRST_BATCH + 130
    for n in range(people):
        add(sessions, f"reader{n}@example.org", WATER)
    at("2026-11-11T10:00:00Z")
    ingest(sessions, "listing-water.txt")
    at("2026-11-16T09:00:00Z")
    confirmed = Subscriber.status == SubscriberStatus.CONFIRMED
    sizes, seen = [], []
    for _, rows in subscriber_batches(sessions, [Subscriber.id], confirmed, 100, first=FIRST_BATCH):
        sizes.append(len(rows))
        seen += [r.id for r in rows]
    assert sizes == [FIRST_BATCH, 100, 30]
    assert len(seen) == len(set(seen)) == people
    batches_before = plan_batches()
    report = plan_due(sessions, replace(PlanPolicy.from_settings(settings), batch_size=100), clock.now())
    assert report.planned == people
    assert plan_batches() - batches_before == 3  # plan_due itself begins small: 50, 100, 30 (not 100, 80)
    with sessions() as session:
        assert session.scalar(select(func.count(func.distinct(Digest.subscriber_id)))) == people
