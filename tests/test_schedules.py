"""Schedules people choose: slots across DST changes and month ends, bad choices named, the cap, the CLI, and five
simulated weeks in which every practice reaches every subscriber exactly once, in their own local hour."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.config import Settings, SourceConfig
from digest.ingest import ingest_sources
from digest.mail.send.runs import plan_and_send
from digest.mail.send.transport import transport_for
from digest.schedules.slots import Choice, Defaults, ScheduleError, parse_choice, schedule_of
from digest.store import db
from digest.store.models import ContentPractice
from digest.subscriptions.subscribers import get_subscriber, pause, set_schedule, subscribe
from tests.conftest import Cli, RecordingHandler, at
from tests.test_send import create_themes, titles

DEFAULTS = Defaults(weekday=0, hour=8, timezone="Europe/Paris")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# -- slots --------------------------------------------------------------------------------------------------------


def test_an_hour_that_does_not_exist_goes_out_at_the_next_valid_time() -> None:
    paris = schedule_of(Choice("daily", None, 2, "Europe/Paris"), DEFAULTS)
    # 29 March 2026: clocks go from 02:00 to 03:00 in Paris. The 02:00 digest goes at 03:00 CEST = 01:00Z.
    assert paris.next_after(utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1)
    assert paris.next_after(utc(2026, 3, 29, 1)) == utc(2026, 3, 30, 0)  # 02:00 CEST again the day after


def test_an_hour_that_happens_twice_goes_out_once() -> None:
    paris = schedule_of(Choice("daily", None, 2, "Europe/Paris"), DEFAULTS)
    # 25 October 2026: 02:00-03:00 happens twice. One slot, the first one (02:00 CEST = 00:00Z).
    first = paris.next_after(utc(2026, 10, 24, 12))
    assert first == utc(2026, 10, 25, 0)
    assert paris.next_after(first) == utc(2026, 10, 26, 1)  # not 01:00Z on the 25th a second time


def test_a_morning_hour_stays_local_across_both_changes() -> None:
    paris = schedule_of(Choice("weekly", 6, 8, "Europe/Paris"), DEFAULTS)  # Sundays at 08:00
    slots = [paris.next_after(utc(2026, 10, 17, 12))]
    for _ in range(2):
        slots.append(paris.next_after(slots[-1]))
    assert slots == [utc(2026, 10, 18, 6), utc(2026, 10, 25, 7), utc(2026, 11, 1, 7)]
    new_york = schedule_of(Choice("daily", None, 8, "America/New_York"), DEFAULTS)
    assert new_york.next_after(utc(2026, 10, 31, 13)) == utc(2026, 11, 1, 13)  # EST from 1 November
    assert new_york.next_after(utc(2026, 10, 30, 13)) == utc(2026, 10, 31, 12)  # EDT the day before


def test_monthly_day_31_is_the_last_day_of_a_shorter_month() -> None:
    monthly = schedule_of(Choice("monthly", 31, 9, "UTC"), DEFAULTS)
    assert monthly.next_after(utc(2026, 1, 31, 10)) == utc(2026, 2, 28, 9)
    assert monthly.next_after(utc(2026, 2, 28, 9)) == utc(2026, 3, 31, 9)
    assert monthly.last_at_or_before(utc(2026, 4, 15)) == utc(2026, 3, 31, 9)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"frequency": "monthly", "day": "32"}, "day '32' is not a day of the month from 1 to 31"),
        ({"hour": "24"}, "hour '24' is not an hour from 0 to 23"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone 'Mars/Olympus_Mons' is not an IANA timezone"),
        ({"frequency": "hourly"}, "frequency 'hourly' is not one of daily, weekly, monthly"),
        ({"frequency": "weekly", "day": "3"}, "day '3' does not fit frequency weekly"),
        ({"frequency": "daily", "day": "monday"}, "a daily digest has no day"),
        ({"frequency": "monthly"}, "a monthly digest needs a day of the month"),
    ],
)
def test_bad_choices_name_the_field(args: dict[str, str], message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_choice(**args)


# -- the cap ------------------------------------------------------------------------------------------------------


def _add_practices(sessions: sessionmaker[Session], tmp: Path, theme: str, names: list[str]) -> None:
    path = tmp / f"{names[0].replace(' ', '-')}.json"
    path.write_text(json.dumps([{"id": n, "title": n, "summary": f"About {n}.", "themes": [theme]} for n in names]))
    (report,) = ingest_sources(sessions, [SourceConfig(str(path))], clock.now())
    assert report.ok, report.error


def test_past_the_cap_the_newest_are_listed_and_the_rest_counted_once(
    sessions: sessionmaker[Session],
    smtp_settings: Settings,
    smtp_server: tuple[RecordingHandler, str],
    tmp_path: Path,
) -> None:
    handler = smtp_server[0]
    settings = replace(smtp_settings, max_practices_per_digest=3)
    at("2026-11-10T10:00:00Z")
    create_themes(sessions, "Food")
    with db.transaction(sessions) as s:
        subscribe(s, "ada@example.org", ["food"], clock.now(), confirmed=True)
    at("2026-11-12T10:00:00Z")
    _add_practices(sessions, tmp_path, "Food", [f"Seed bank {n}" for n in range(1, 6)])
    at("2026-11-16T09:00:00Z")
    assert plan_and_send(sessions, settings, transport_for(settings)).sent == 1
    (mail,) = handler.received
    assert mail.message["Subject"] == "5 new practices in Food"
    assert titles(mail.message) == ["Seed bank 3", "Seed bank 4", "Seed bank 5"]
    text = mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "And 2 more new in Food:\r\n  https://digest.test/themes/food?lang=en" in text
    assert 'And 2 more new in Food: <a href="https://digest.test/themes/food?lang=en"' in html
    with sessions() as s:
        rows = s.execute(
            select(ContentPractice.summarised, ContentPractice.practice_id).order_by(ContentPractice.practice_id)
        ).all()
    assert [r.summarised for r in rows] == [True, True, False, False, False]
    # The summarised ones count as delivered: never sent later.
    at("2026-11-18T10:00:00Z")
    _add_practices(sessions, tmp_path, "Food", ["Seed bank 6"])
    at("2026-11-23T09:00:00Z")
    assert plan_and_send(sessions, settings, transport_for(settings)).sent == 1
    assert titles(handler.received[1].message) == ["Seed bank 6"]


# -- five weeks ----------------------------------------------------------------------------------------------------

PEOPLE = {
    # address: (themes, frequency, day, hour, timezone)
    "tokyo@example.org": (["food"], "daily", None, 7, "Asia/Tokyo"),
    "paris@example.org": (["food", "water"], "weekly", "sunday", 8, "Europe/Paris"),
    "newyork@example.org": (["water"], "monthly", "1", 9, "America/New_York"),
    "utc@example.org": (["food"], "weekly", "wednesday", 18, "UTC"),
    "switcher@example.org": (["water"], "weekly", "monday", 8, "UTC"),
    "pauser@example.org": (["food"], "daily", None, 9, "Europe/Paris"),
}


def test_five_weeks_every_practice_once_at_each_local_hour(
    sessions: sessionmaker[Session],
    smtp_settings: Settings,
    smtp_server: tuple[RecordingHandler, str],
    tmp_path: Path,
) -> None:
    """12 October to 16 November 2026: the October change in Paris (25th) and the November one in New York
    (1st). A practice a day, alternating themes; the worker's check every hour; one switch, one pause."""
    handler = smtp_server[0]
    settings = smtp_settings
    defaults = Defaults(0, 8, settings.timezone)
    at("2026-10-11T12:00:00Z")
    create_themes(sessions, "Food", "Water")
    with db.transaction(sessions) as s:
        for address, (themes, frequency, day, hour, zone) in PEOPLE.items():
            choice = parse_choice(frequency, day, str(hour), zone)
            subscribe(s, address, themes, clock.now(), confirmed=True, choice=choice)
    added: dict[str, set[str]] = {"food": set(), "water": set()}
    hours: dict[str, list[datetime]] = {a: [] for a in PEOPLE}
    start, end = datetime(2026, 10, 12, tzinfo=UTC), datetime(2026, 11, 16, tzinfo=UTC)
    instant = start
    while instant < end:
        clock.set_fixed_now(instant)
        if instant.hour == 12:
            n = (instant - start).days
            theme = "food" if n % 2 == 0 else "water"
            name = f"Practice of day {n} ({theme})"
            _add_practices(sessions, tmp_path, theme.capitalize(), [name])
            added[theme].add(name)
        if instant == utc(2026, 10, 21, 12):  # mid-way: from weekly on Mondays to daily at 18:00 UTC
            with db.transaction(sessions) as s:
                switcher = get_subscriber(s, "switcher@example.org")
                set_schedule(s, switcher, parse_choice("daily", None, "18", None), defaults, instant)
        if instant == utc(2026, 10, 19, 20):  # paused for a week: nothing from the 20th to the 26th
            with db.transaction(sessions) as s:
                pause(s, get_subscriber(s, "pauser@example.org"), date(2026, 10, 27), defaults, instant)
        before = len(handler.received)
        report = plan_and_send(sessions, settings, transport_for(settings))
        assert report.ok and report.failed == 0
        for mail in handler.received[before:]:
            hours[mail.recipients[0]].append(parsedate_to_datetime(mail.message["Date"]))
        instant += timedelta(hours=1)
    # Down for a month after the five weeks, with news in both themes: the first check gives everyone one
    # digest with all of it (no burst of the slots missed).
    clock.set_fixed_now(utc(2026, 12, 19, 12))
    for theme in ("food", "water"):
        _add_practices(sessions, tmp_path, theme.capitalize(), [f"Final {theme}"])
        added[theme].add(f"Final {theme}")
    before = len(handler.received)
    clock.set_fixed_now(utc(2026, 12, 20, 0))
    plan_and_send(sessions, settings, transport_for(settings))
    assert Counter(m.recipients[0] for m in handler.received[before:]) == Counter(list(PEOPLE))

    for address, (themes, frequency, day, hour, zone) in PEOPLE.items():
        received = [t for m in handler.to(address) for t in titles(m.message)]
        expected = set().union(*(added[t] for t in themes))
        assert Counter(received) == Counter(expected), address  # every practice of their themes, exactly once
        local = [h.astimezone(ZoneInfo(zone)) for h in hours[address]]
        if address == "switcher@example.org":
            assert {(t.weekday(), t.hour) for t in local if t < datetime(2026, 10, 21, tzinfo=UTC)} == {(0, 8)}
            assert {t.hour for t in local if t > datetime(2026, 10, 22, tzinfo=UTC)} == {18}
            after = sorted(t for t in local if t > datetime(2026, 10, 22, tzinfo=UTC))
            # Daily from then: water news comes every other day, and a day with nothing new sends nothing.
            assert len(after) >= 12 and all(b - a <= timedelta(days=2) for a, b in zip(after, after[1:], strict=False))
            continue
        assert {t.hour for t in local} == {hour}, (address, local)  # always the chosen local hour
        if frequency == "weekly":
            assert {t.strftime("%A").lower() for t in local} == {day}
        if frequency == "monthly":
            assert [t.date() for t in local] == [date(2026, 11, 1)]  # the 1st, at 09:00 on the day New York changes
    pauser = [h.astimezone(ZoneInfo("Europe/Paris")).date() for h in hours["pauser@example.org"]]
    assert not [d for d in pauser if date(2026, 10, 20) <= d <= date(2026, 10, 26)]
    first_after = min(d for d in pauser if d >= date(2026, 10, 27))
    assert first_after == date(2026, 10, 27)
    paris = ZoneInfo("Europe/Paris")
    resumed = [
        m
        for m in handler.to("pauser@example.org")
        if parsedate_to_datetime(m.message["Date"]).astimezone(paris).date() == first_after
    ]
    assert len(titles(resumed[0].message)) == 4  # the food practices of the paused week, in one digest
    tokyo = hours["tokyo@example.org"]
    assert len(tokyo) >= 17 and len(set(h.date() for h in tokyo)) == len(tokyo)  # daily, never twice a day


# -- the CLI ------------------------------------------------------------------------------------------------------


def test_subscribe_set_and_list_from_the_command_line(run_cli: Cli, tmp_path: Path) -> None:
    from tests.conftest import fixture_path

    assert run_cli("ingest", fixture_path("listing-water.txt"), now="2026-11-10T10:00:00Z").exit_code == 0
    done = run_cli(
        "subscribe",
        "ada@example.org",
        "--theme",
        "water-and-sanitation",
        "--frequency",
        "daily",
        "--hour",
        "7",
        "--timezone",
        "Asia/Tokyo",
        "--confirmed",
        now="2026-11-10T10:00:00Z",
    )
    assert done.exit_code == 0, done.stderr
    assert run_cli("send", now="2026-11-10T10:00:00Z").exit_code == 0  # places her: next 07:00 in Tokyo
    rows = json.loads(run_cli("subscribers", "list", "--json").stdout)
    assert rows[0]["schedule"] == "daily at 07:00 Asia/Tokyo"
    assert rows[0]["next_due_at"] == "2026-11-10T22:00:00+00:00"
    assert rows[0]["chosen"] == {"frequency": "daily", "day": None, "hour": 7, "timezone": "Asia/Tokyo"}
    monthly = run_cli(
        "subscribers", "set", "ada@example.org", "--frequency", "monthly", "--day", "31", now="2026-11-10T10:00:00Z"
    )
    assert monthly.exit_code == 0 and "monthly on day 31 at 07:00 Asia/Tokyo" in monthly.stdout
    assert "next 2026-11-30 07:00" in monthly.stdout  # 30 November, the month's last day, in her Tokyo time
    paused = run_cli("subscribers", "set", "ada@example.org", "--pause-until", "2027-01-05", now="2026-11-10T10:00:00Z")
    assert "paused until 2027-01-05" in paused.stdout  # the day she chose, not the UTC instant it starts at
    assert "next 2027-01-31 07:00" in paused.stdout
    resumed = run_cli("subscribers", "set", "ada@example.org", "--resume", now="2026-11-10T10:00:00Z")
    assert "paused" not in resumed.stdout and "next 2026-11-30 07:00" in resumed.stdout
    for args, message in (
        (["--day", "32", "--frequency", "monthly"], "error: day '32' is not a day of the month from 1 to 31"),
        (["--hour", "24"], "error: hour '24' is not an hour from 0 to 23"),
        (["--timezone", "Europe/Atlantis"], "error: timezone 'Europe/Atlantis' is not an IANA timezone"),
    ):
        bad = run_cli("subscribers", "set", "ada@example.org", *args)
        assert bad.exit_code == 1 and message in bad.stderr, bad.stderr
    people = tmp_path / "people.csv"
    with people.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["email", "themes", "frequency", "day", "hour", "timezone"])
        writer.writerow(["bo@example.org", "water-and-sanitation", "weekly", "friday", "17", "America/Lima"])
        writer.writerow(["cy@example.org", "water-and-sanitation", "", "", "", ""])
        writer.writerow(["dee@example.org", "water-and-sanitation", "monthly", "40", "", ""])
    imported = run_cli("subscribers", "import", str(people), "--confirmed", now="2026-11-10T10:00:00Z")
    assert "2 created" in imported.stdout and "line 4: dee@example.org: day '40'" in imported.stderr
    rows = {r["email"]: r for r in json.loads(run_cli("subscribers", "list", "--json").stdout)}
    assert rows["bo@example.org"]["schedule"] == "weekly on Friday at 17:00 America/Lima"
    assert rows["cy@example.org"]["schedule"] == "weekly on Monday at 08:00 Europe/Paris"  # the defaults


def test_a_stored_schedule_that_cannot_be_falls_back_to_the_defaults() -> None:
    """A hand-edited row (or a zone gone from tzdata) must not stop planning for everyone."""
    odd = schedule_of(Choice("weekly", 9, 30, "Mars/Olympus_Mons"), DEFAULTS)
    assert (odd.frequency, odd.day, odd.hour, odd.zone.key) == ("weekly", 0, 8, "Europe/Paris")
    assert odd.next_after(utc(2026, 11, 17)) == utc(2026, 11, 23, 7)
    assert schedule_of(Choice("monthly", 0, 9, "UTC"), DEFAULTS).day == 1
