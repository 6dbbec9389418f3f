"""JSON and CSV exports: fields, themes as a list or `;`-separated, rows left out with the reason."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from digest.clock import now
from digest.config import SourceConfig
from digest.ingest import detect_format, ingest_sources
from digest.store.models import Practice, Theme
from tests.conftest import fixture_bytes, fixture_path


def stored(sessions: sessionmaker[Session]) -> dict[str, tuple[Practice, list[str]]]:
    with sessions() as s:
        return {p.title: (p, sorted(m.theme.name for m in p.memberships)) for p in s.scalars(select(Practice)).unique()}


def test_json_export(sessions: sessionmaker[Session]) -> None:
    (report,) = ingest_sources(sessions, [SourceConfig(fixture_path("export-practices.json"))], now())
    assert report.new == 3 and not report.ok
    assert [(p.where, p.reason) for p in report.rejected] == [
        ("object 3", "no title; left out (give every record a title)"),
        ("object 5", "expected an object with a title, found str"),
        ("object 6", "themes must be a list of names or one string of names split by ';', none empty"),
    ]
    assert [(p.where, p.reason) for p in report.problems] == [
        ("object 2", "ignored unknown field(s): owner"),
        ("object 4", "empty summary"),
    ]
    found = stored(sessions)
    wardens, themes = found["Flood Wardens in Jakarta"]
    assert themes == ["Disaster Risk Reduction", "Urban Resilience"]  # an unknown theme is created
    assert wardens.identity == "guid:exp-1" and wardens.submitted_by == "Ms. Sari WIBOWO"
    assert (
        wardens.summary
        == "Trained residents warn their streets when the river rises.\n\nWardens also keep the evacuation lists."
    )
    assert wardens.published_at is not None and wardens.published_at.isoformat() == "2026-11-02T00:00:00+00:00"
    assert found["Municipal Jobs Board for Refugees"][1] == ["Connectivity and Migration", "Decent Work"]


def test_csv_export_matches_json_by_id(sessions: sessionmaker[Session]) -> None:
    ingest_sources(sessions, [SourceConfig(fixture_path("export-practices.json"))], now())
    (report,) = ingest_sources(sessions, [SourceConfig(fixture_path("export-practices.csv"))], now())
    assert (report.new, report.unchanged) == (1, 2)
    assert [(p.where, p.title, p.reason) for p in report.rejected] == [
        ("line 6", "exp-3", "no title; left out (give every record a title)")
    ]
    cafe, themes = stored(sessions)["Repair Cafés in Lyon"]
    assert themes == ["Urban Resilience"] and cafe.identity == "url:https://partner.example.net/p/4"


def test_a_list_of_objects_and_a_default_theme(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "plain.json"
    path.write_text('[{"title": "Bike Libraries", "summary": "Lend bikes like books."}]', encoding="utf-8")
    (failed,) = ingest_sources(sessions, [SourceConfig(str(path))], now())
    assert failed.error is not None and "no theme" in failed.error
    (report,) = ingest_sources(sessions, [SourceConfig(str(path), theme="Urban Mobility")], now())
    assert report.ok and stored(sessions)["Bike Libraries"][1] == ["Urban Mobility"]


def test_invalid_json_names_the_line(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text('[\n{"title": "A", "themes": ["T"]},\n{"title": "B", "the', encoding="utf-8")
    (report,) = ingest_sources(sessions, [SourceConfig(str(path))], now())
    assert report.error is not None and report.error.startswith(f"{path}: not valid JSON at line 3")
    with sessions() as s:
        assert s.scalars(select(Theme)).all() == []


def test_csv_without_title_column(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("name,summary,themes\nA,B,C\n", encoding="utf-8")
    (report,) = ingest_sources(sessions, [SourceConfig(str(path), format="csv")], now())
    assert report.error == f"{path}: line 1 is not a header row with a 'title' column"


def test_semicolon_csv_in_windows_1252(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(
        "Title;Summary;Themes\nCaf\xe9s solidaires;Un caf\xe9 pay\xe9 d'avance.;Decent Work\n".encode("cp1252")
    )
    (report,) = ingest_sources(sessions, [SourceConfig(str(path))], now())
    assert report.ok and stored(sessions)["Cafés solidaires"][0].summary == "Un café payé d'avance."


def test_detection() -> None:
    kinds = {
        name: detect_format(fixture_bytes(name), name)
        for name in (
            "feed-drupal-water.rss",
            "feed-rdf.rdf",
            "feed-atom-migration.atom",
            "feed-truncated.rss",
            "export-practices.json",
            "export-practices.csv",
            "listing-water.txt",
            "listing-hostile.txt",
        )
    }
    assert kinds == {
        "feed-drupal-water.rss": "rss",
        "feed-rdf.rdf": "rss",
        "feed-atom-migration.atom": "atom",
        "feed-truncated.rss": "rss",
        "export-practices.json": "json",
        "export-practices.csv": "csv",
        "listing-water.txt": "listing",
        "listing-hostile.txt": "listing",
    }
