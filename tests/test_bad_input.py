"""Bad input fails alone: each source, item and feed is its own failure, named with a fix; nothing stored is lost.

Covers the kinds the house review found: deeply nested JSON, lone surrogates, fields longer than their columns
(on SQLite and PostgreSQL alike), fields of the wrong type, unexpected exceptions, links that are not http(s),
characters XML cannot carry, credentials in source URLs, and servers that trickle bytes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import feedparser
import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from digest import clock
from digest.config import Settings, SourceConfig
from digest.feeds.files import build_feeds
from digest.ingest import HttpPolicy, ingest_sources
from digest.mail.build.render import Links, render_digest
from digest.mail.plan.compose import DigestContent, PracticeEntry, ThemeSection
from digest.store import db
from digest.store.models import Membership, Practice, SourceState, Theme
from tests.conftest import Cli, at, fixture_path
from tests.feedserver import FeedServer

GOOD = {"id": "g1", "title": "Community Seed Banks", "summary": "Farmers keep seeds.", "themes": ["Food"]}


def write_json(tmp_path: Path, name: str, data: object) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def practices(sessions: sessionmaker[Session]) -> dict[str, Practice]:
    with sessions() as s:
        return {p.title: p for p in s.scalars(select(Practice))}


def state_of(sessions: sessionmaker[Session], location: str) -> SourceState:
    with sessions() as s:
        state = s.scalar(select(SourceState).where(SourceState.location == location))
        assert state is not None
        return state


def test_deeply_nested_json_fails_alone(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    at("2026-11-10T10:00:00Z")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    good = write_json(tmp_path, "good.json", [GOOD])
    bad_report, good_report = ingest_sources(sessions, [SourceConfig(str(deep)), SourceConfig(good)], clock.now())
    assert bad_report.error is not None and "nested too deeply" in bad_report.error and str(deep) in bad_report.error
    assert bad_report.hint
    assert good_report.ok and good_report.new == 1  # the next source is still read
    assert state_of(sessions, str(deep)).status == "failed"


def test_lone_surrogates_and_controls_are_cleaned(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    at("2026-11-10T10:00:00Z")
    path = tmp_path / "surrogate.json"
    # json.dumps would refuse to write a lone surrogate as UTF-8; JSON's \\ud800 escape carries it.
    path.write_text(
        '[{"id": "s\\ud800", "title": "Seed \\ud800Banks\\u0007\\uffff\\u202e", "summary": "Keep \\udfff seeds.",'
        ' "themes": ["Food"]}]',
        encoding="utf-8",
    )
    (report,) = ingest_sources(sessions, [SourceConfig(str(path))], clock.now())
    assert report.ok, report.error
    (stored,) = practices(sessions).values()
    assert stored.title == "Seed Banks" and stored.summary == "Keep seeds."


def test_fields_of_the_wrong_type_leave_the_record_out(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    at("2026-11-10T10:00:00Z")
    records = [
        GOOD,
        {"title": {"en": "Seeds"}, "themes": ["Food"]},
        {"title": "Seeds", "url": 12, "themes": ["Food"]},
        {"id": 42, "title": "Numbered", "themes": ["Food"]},
    ]
    (report,) = ingest_sources(sessions, [SourceConfig(write_json(tmp_path, "types.json", records))], clock.now())
    assert [(p.where, p.reason) for p in report.rejected] == [
        ("object 2", "title must be text, found an object; left out"),
        ("object 3", "url must be text, found int; left out"),
    ]
    stored = practices(sessions)
    assert set(stored) == {"Community Seed Banks", "Numbered"}
    assert stored["Numbered"].identity == "guid:42"  # a numeric id is natural, and kept as text
    assert "{" not in "".join(stored)  # no repr of an object anywhere


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_fields_longer_than_their_columns_are_cut_alike(
    backend: str, request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> None:
    url = settings.database_url if backend == "sqlite" else request.getfixturevalue("pg_url")
    engine = db.make_engine(url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    at("2026-11-10T10:00:00Z")
    long = dict(GOOD, submitted_by="Ministry " * 200, title="Seed " * 200)
    later = write_json(tmp_path, "later.json", [dict(GOOD, id="g2", title="Water Kiosks")])
    reports = ingest_sources(
        sessions, [SourceConfig(write_json(tmp_path, "long.json", [long])), SourceConfig(later)], clock.now()
    )
    assert all(r.ok for r in reports), [r.error for r in reports]
    reasons = [p.reason for p in reports[0].problems]
    assert "title longer than 500 characters; cut" in reasons
    assert "submitted_by longer than 300 characters; cut" in reasons
    stored = practices(sessions)
    (cut,) = [p for t, p in stored.items() if t.startswith("Seed")]
    assert len(cut.title) <= 500 and cut.title.endswith("…")
    assert cut.submitted_by is not None and len(cut.submitted_by) <= 300
    assert "Water Kiosks" in stored
    engine.dispose()


def test_an_unexpected_exception_is_that_sources_failure(
    sessions: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the parser raises something no code path expects, for one source only."""
    import digest.ingest as ingest_module

    at("2026-11-10T10:00:00Z")
    poisoned = write_json(tmp_path, "poisoned.json", [dict(GOOD, title="Kept from before")])
    assert ingest_sources(sessions, [SourceConfig(poisoned)], clock.now())[0].ok
    real = ingest_module.parse_bytes

    def parse(data: bytes, source: str, *args: object) -> object:
        if source == poisoned:
            raise KeyError("surprise")
        return real(data, source, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest_module, "parse_bytes", parse)
    good = write_json(tmp_path, "good.json", [dict(GOOD, id="g9", title="Still Read")])
    bad_report, good_report = ingest_sources(sessions, [SourceConfig(poisoned), SourceConfig(good)], clock.now())
    assert bad_report.error == f"{poisoned}: KeyError while reading this source: 'surprise'"
    assert "report it" in bad_report.hint
    assert good_report.ok
    assert set(practices(sessions)) == {"Kept from before", "Still Read"}  # nothing stored before is lost
    state = state_of(sessions, poisoned)
    assert state.status == "failed" and state.last_error == bad_report.error


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "/node/12",
        "vbscript:msgbox",
        "file:///etc/passwd",
        "https://ok.example/a b",
    ],
)
def test_links_that_are_not_absolute_http_are_dropped_and_reported(
    sessions: sessionmaker[Session], tmp_path: Path, link: str
) -> None:
    at("2026-11-10T10:00:00Z")
    (report,) = ingest_sources(
        sessions, [SourceConfig(write_json(tmp_path, "links.json", [dict(GOOD, url=link)]))], clock.now()
    )
    assert report.ok
    assert any("is not an absolute http(s) URL; dropped" in p.reason for p in report.problems)
    (stored,) = practices(sessions).values()
    assert stored.url is None


def test_an_rss_link_with_a_script_scheme_is_dropped(sessions: sessionmaker[Session], feed_server: FeedServer) -> None:
    at("2026-11-10T10:00:00Z")
    body = b"""<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Food</title>
<link>https://site.example/</link><description>x</description>
<item><title>Seed Banks</title><link>javascript:alert(document.cookie)</link><guid>seed-1</guid>
<description>Farmers keep seeds.</description></item></channel></rss>"""
    url = feed_server.serve("/food.rss", body=body)
    (report,) = ingest_sources(sessions, [SourceConfig(url)], clock.now())
    assert report.ok and any("dropped" in p.reason for p in report.problems)
    assert practices(sessions)["Seed Banks"].url is None


def test_frozen_and_stored_unsafe_links_never_reach_a_mail_or_a_feed(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    """Rows written before links were checked at ingest: rendering and feeds check them again."""
    entry = PracticeEntry(1, "u1", "Seeds", "Keep seeds.", "javascript:alert(1)", None, "2026-11-10T10:00:00+00:00")
    frozen = DigestContent("2026-11-16", (ThemeSection("Food", "food", (entry,)),)).to_json()
    rendered = render_digest(DigestContent.from_json(frozen), Links("https://digest.test", "https://digest.test/u/x"))
    assert "javascript:" not in rendered.html and "javascript:" not in rendered.text
    now = at("2026-11-10T10:00:00Z")
    with db.transaction(sessions) as s:
        theme_id = s.execute(insert(Theme).values(name="Food", slug="food", created_at=now)).inserted_primary_key[0]
        practice_id = s.execute(
            insert(Practice).values(
                uid="u1",
                identity="guid:1",
                title="Seeds\uffff\x01 in XML",
                summary="Keep\x0b.",
                url="javascript:alert(1)",
                first_seen_at=now,
                updated_at=now,
                content_hash="x",
                title_derived=False,
                submitted_by="A\x00B",
            )
        ).inserted_primary_key[0]
        s.execute(insert(Membership).values(practice_id=practice_id, theme_id=theme_id, added_at=now))
    with sessions() as s:
        results = build_feeds(s, settings)
    assert [r.error for r in results] == [None] * 4  # the theme's and all practices', each in Atom and JSON Feed
    for result in results:
        data = Path(result.path).read_bytes()
        if result.path.endswith(".json"):
            import json

            item = json.loads(data)["items"][0]
            assert item["title"] == "Seeds in XML" and "javascript:" not in item["url"]
            continue
        parsed = feedparser.parse(data)
        assert not parsed.bozo, parsed.bozo_exception
        assert b"javascript:" not in data
        assert parsed.entries[0].title == "Seeds in XML"


def test_one_feed_that_cannot_be_written_stops_no_other(sessions: sessionmaker[Session], run_cli: Cli) -> None:
    assert run_cli("ingest", fixture_path("listing-water.txt"), fixture_path("listing-goal6.txt")).exit_code == 0
    feeds_dir = run_cli.config.parent / "feeds"
    (feeds_dir / "water-and-sanitation.atom").unlink()  # written by the ingest; now a folder stands there
    (feeds_dir / "water-and-sanitation.atom").mkdir(parents=True)
    result = run_cli("feeds")
    assert result.exit_code == 1
    assert "water-and-sanitation.atom: not written: IsADirectoryError" in result.stderr
    assert (feeds_dir / "all.atom").is_file() and (feeds_dir / "goal-6-clean-water-and-sanitation.atom").is_file()


def test_credentials_in_a_source_url_are_never_printed(run_cli: Cli, feed_server: FeedServer) -> None:
    feed_server.serve("/water.rss", body=Path(fixture_path("feed-drupal-water.rss")).read_bytes())
    secret_url = feed_server.url("/water.rss").replace("http://", "http://reader:s3cret-pw@")
    missing_url = feed_server.url("/gone.rss").replace("http://", "http://reader:s3cret-pw@")
    ingested = run_cli("ingest", secret_url, missing_url)
    listed = run_cli("sources", "--json")
    as_json = run_cli("ingest", secret_url, "--json")
    for result in (ingested, listed, as_json):
        assert "s3cret-pw" not in result.output + result.stderr
    assert ingested.exit_code == 1 and "HTTP 404" in ingested.stderr and "***@127.0.0.1" in ingested.stderr
    assert {row["location"] for row in json.loads(listed.stdout)} == {
        secret_url.replace("reader:s3cret-pw@", "***@"),
        missing_url.replace("reader:s3cret-pw@", "***@"),
    }


def test_a_trickling_server_is_cut_off_at_the_deadline(
    sessions: sessionmaker[Session], feed_server: FeedServer
) -> None:
    at("2026-11-10T10:00:00Z")
    slow = feed_server.serve("/slow.rss", body=Path(fixture_path("feed-drupal-water.rss")).read_bytes(), trickle=0.2)
    good = fixture_path("listing-water.txt")
    policy = HttpPolicy(timeout=1.0, retries=3, backoff=0.1, deadline=2.0)
    start = time.monotonic()
    slow_report, good_report = ingest_sources(
        sessions, [SourceConfig(slow), SourceConfig(good, theme="Water and Sanitation")], clock.now(), policy
    )
    took = time.monotonic() - start
    # Every read comes within the 1 s timeout, so only the whole-fetch deadline stops it (the body would take
    # minutes at this pace). Generous bound: the deadline is 2 s.
    assert took < 20, took
    assert slow_report.error is not None and "deadline" in slow_report.error, slow_report.error
    assert good_report.ok


def test_http_deadline_reaches_the_fetch_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from digest.config import load_settings
    from digest.ingest import policy_from

    monkeypatch.chdir(tmp_path)
    assert policy_from(load_settings(environ={"DIGEST_HTTP_DEADLINE": "45"})).deadline == 45
