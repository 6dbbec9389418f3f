"""Subscribers: subscribe, unsubscribe, CSV import with bad rows, listing."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest.config import SourceConfig
from digest.errors import SubscriberError
from digest.ingest import ingest_sources
from digest.store import db
from digest.store.models import Subscriber
from digest.store.queries import subscribers as list_subscribers
from digest.subscriptions.imports import import_csv
from digest.subscriptions.subscribers import subscribe, unsubscribe
from tests.conftest import at, fixture_path


@pytest.fixture
def themed(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    now = at("2026-11-10T10:00:00Z")
    ingest_sources(
        sessions,
        [SourceConfig(fixture_path("listing-water.txt")), SourceConfig(fixture_path("listing-goal6.txt"))],
        now,
    )
    return sessions


def test_subscribe_by_slug_or_name_and_normalised_address(themed: sessionmaker[Session]) -> None:
    now = at("2026-11-10T11:00:00Z")
    with db.transaction(themed) as s:
        sub = subscribe(s, "  Ada@Example.ORG ", ["water-and-sanitation", "Goal 6: Clean water and sanitation"], now)
        assert (sub.email, sub.status) == ("ada@example.org", "pending")
    with db.transaction(themed) as s:
        sub = subscribe(s, "ada@example.org", ["water-and-sanitation"], now, confirmed=True)
        assert sub.status == "confirmed" and len(sub.subscriptions) == 2
    with themed() as s:
        assert [asdict(r) for r in list_subscribers(s)] == [
            {
                "email": "ada@example.org",
                "status": "confirmed",
                "themes": ["goal-6-clean-water-and-sanitation", "water-and-sanitation"],
                "confirmed_at": now.isoformat(),
                "frequency": None,
                "day": None,
                "hour": None,
                "timezone": None,
                "next_due_at": None,
                "paused_until": None,
                "theme_names": ["Goal 6: Clean water and sanitation", "Water and Sanitation"],
                "feed_only": False,
                "practice_languages": None,
                "language": None,
                "format": None,
                "reconfirm_asked_at": None,
                "left_reason": None,
                "last_bounce": None,
            }
        ]


@pytest.mark.parametrize(
    ("email", "themes", "match"),
    [
        ("not-an-address", ["water-and-sanitation"], "not a valid email address"),
        ("a@example.org", ["no-such-theme"], "unknown theme.*no-such-theme"),
        ("a@example.org", [], "no theme"),
    ],
)
def test_subscribe_refuses_bad_input(themed: sessionmaker[Session], email: str, themes: list[str], match: str) -> None:
    with pytest.raises(SubscriberError, match=match), db.transaction(themed) as s:
        subscribe(s, email, themes, at("2026-11-10T11:00:00Z"))


def test_unsubscribe_one_theme_then_all(themed: sessionmaker[Session]) -> None:
    now = at("2026-11-10T11:00:00Z")
    with db.transaction(themed) as s:
        subscribe(s, "ada@example.org", ["water-and-sanitation", "goal-6-clean-water-and-sanitation"], now, True)
    with db.transaction(themed) as s:
        assert unsubscribe(s, "ada@example.org", now, "water-and-sanitation").status == "confirmed"
    with db.transaction(themed) as s:
        sub = unsubscribe(s, "ada@example.org", now, "goal-6-clean-water-and-sanitation")
        assert sub.status == "unsubscribed"  # leaving the last theme leaves the list


def test_csv_import_reports_bad_lines_and_imports_the_rest(themed: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(
        "email,themes\n"
        "ada@example.org,water-and-sanitation;Goal 6: Clean water and sanitation\n"
        "not an address,water-and-sanitation\n"
        "bob@example.org,water-and-sanitation;atlantis\n"
        "carl@example.org,atlantis\n"
        "ADA@example.org,water-and-sanitation\n",
        encoding="utf-8",
    )
    report = import_csv(themed, str(path), at("2026-11-10T11:00:00Z"), confirmed=True)
    assert (report.created, report.updated) == (2, 0)
    assert [line for line, _ in report.errors] == [3, 4, 5, 5]
    assert "not a valid email address" in report.errors[0][1]
    assert "atlantis" in report.errors[1][1]
    with themed() as s:
        rows = {r.email: asdict(r) for r in list_subscribers(s)}
    assert set(rows) == {"ada@example.org", "bob@example.org"}
    assert rows["ada@example.org"]["themes"] == ["goal-6-clean-water-and-sanitation", "water-and-sanitation"]
    assert rows["bob@example.org"]["status"] == "confirmed"
    again = import_csv(themed, str(path), at("2026-11-10T12:00:00Z"), confirmed=True)
    assert (again.created, again.updated) == (0, 2)


def test_csv_import_never_resubscribes_someone_who_left(themed: sessionmaker[Session], tmp_path: Path) -> None:
    now = at("2026-11-10T11:00:00Z")
    with db.transaction(themed) as s:
        subscribe(s, "ada@example.org", ["water-and-sanitation"], now, True)
        unsubscribe(s, "ada@example.org", now)
    path = tmp_path / "people.csv"
    path.write_text("email,themes\nada@example.org,water-and-sanitation\n", encoding="utf-8")
    report = import_csv(themed, str(path), now, confirmed=True)
    assert report.errors == [(2, "ada@example.org: unsubscribed earlier; not re-subscribed")]
    with themed() as s:
        assert s.scalar(select(Subscriber.status)) == "unsubscribed"


def test_csv_import_many_rows_in_batches(themed: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    path.write_text(
        "email,themes\n" + "".join(f"user{i}@example.org,water-and-sanitation\n" for i in range(2500)),
        encoding="utf-8",
    )
    report = import_csv(themed, str(path), at("2026-11-10T11:00:00Z"), chunk=1000)
    assert (report.created, report.errors) == (2500, [])
    with themed() as s:
        assert len(list_subscribers(s)) == 2500


def test_csv_without_header_is_an_error_naming_the_file(themed: sessionmaker[Session], tmp_path: Path) -> None:
    from digest.errors import SourceError

    path = tmp_path / "noheader.csv"
    path.write_text("ada@example.org,water\n", encoding="utf-8")
    with pytest.raises(SourceError, match="noheader.csv.*email and themes"):
        import_csv(themed, str(path), at("2026-11-10T11:00:00Z"))
