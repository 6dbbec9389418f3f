"""Feeds over real HTTP on loopback: parsing, conditional GET, retries, 410, limits, and bad feeds."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from digest.clock import now
from digest.config import SourceConfig
from digest.ingest import HttpPolicy, IngestReport, ingest_sources
from digest.store.models import Membership, Practice, PracticeKey, SourceState, Theme
from tests.conftest import at, fixture_bytes, fixture_path
from tests.feedserver import FeedServer

FAST = HttpPolicy(timeout=0.5, retries=3, backoff=0.01, max_bytes=1_000_000, max_redirects=3)
DRUPAL = fixture_bytes("feed-drupal-water.rss")


def ingest(
    sessions: sessionmaker[Session], *sources: str | SourceConfig, policy: HttpPolicy = FAST, skip_gone: bool = False
) -> list[IngestReport]:
    chosen = [s if isinstance(s, SourceConfig) else SourceConfig(s) for s in sources]
    return ingest_sources(sessions, chosen, now(), policy, skip_gone=skip_gone)


def practices(sessions: sessionmaker[Session]) -> dict[str, Practice]:
    with sessions() as s:
        return {p.title: p for p in s.scalars(select(Practice))}


def state(sessions: sessionmaker[Session], location: str) -> SourceState:
    with sessions() as s:
        found = s.scalar(select(SourceState).where(SourceState.location == location))
        assert found is not None
        return found


def count(sessions: sessionmaker[Session], model: type) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_drupal_taxonomy_feed(sessions: sessionmaker[Session], feed_server: FeedServer) -> None:
    url = feed_server.serve("/taxonomy/term/41/feed", body=DRUPAL)
    (report,) = ingest(sessions, url)
    assert report.ok and report.themes == ["Water and Sanitation"] and report.new == 3
    lima = practices(sessions)["Neighbourhood Water Committees & Repair Teams in Lima"]
    assert lima.identity == "guid:1207 at https://practices.example.org"
    assert lima.url == "https://practices.example.org/practice/water-committees-lima"
    assert lima.submitted_by == "Ms. Rosa QUISPE"
    assert lima.published_at == datetime(2026, 11, 11, 14, 2, 10, tzinfo=UTC)
    # Clean text: no tags, no entities, paragraphs apart, list items one per line, scripts gone.
    assert lima.summary == (
        "Lima's water utility trains neighbourhood committees to find leaks and organise repairs:\n\n"
        "- a hotline answered by committee members;\n"
        "- monthly repair days with the utility;\n"
        "- a public leak map.\n\n"
        "Losses fell by a third in two years."
    )
    html = lima.summary_html or ""
    assert "<li>monthly <strong>repair days</strong> with the utility;</li>" in html
    assert 'href="https://practices.example.org/reports/lima-leaks"' in html  # relative link made absolute
    assert "script" not in html and "onclick" not in html and "alert" not in html
    # The request named digest.
    assert feed_server.hits("/taxonomy/term/41/feed")[0].headers["user-agent"].startswith("digest/")


def test_atom_with_html_summary(sessions: sessionmaker[Session], feed_server: FeedServer) -> None:
    url = feed_server.serve("/themes/migration.atom", body=fixture_bytes("feed-atom-migration.atom"))
    (report,) = ingest(sessions, url)
    assert report.ok and report.themes == ["Connectivity and Migration"] and report.new == 2
    found = practices(sessions)
    remittance = found["Digital Remittance Literacy for Migrant Families"]  # title type="html" made text
    assert remittance.summary == (
        "Migrant families learn to compare transfer fees & use mobile money safely.\n\nSessions run in five languages."
    )
    assert remittance.summary_html == (
        "<p>Migrant families learn to compare transfer fees &amp; use mobile money safely.</p>"
        "<p>Sessions run in <b>five</b> languages.</p>"
    )  # the tracking pixel is gone
    assert remittance.submitted_by == "Mr. Yusuf ADEBAYO"
    assert remittance.published_at == datetime(2026, 11, 10, 6, 30, tzinfo=UTC)
    assert remittance.identity == "guid:tag:practices.example.org,2026:practice/3301"
    desks = found["Welcome Desks at Bus Terminals"]
    assert desks.submitted_by is None and desks.url == "https://practices.example.org/practice/welcome-desks"


def test_rss_1_0(sessions: sessionmaker[Session]) -> None:
    (report,) = ingest(sessions, fixture_path("feed-rdf.rdf"))
    assert report.ok and report.themes == ["Urban Resilience"]
    rooms = practices(sessions)["Cool Rooms for Heatwaves"]
    assert rooms.submitted_by == "Ms. Lena VOGEL" and rooms.published_at == datetime(2026, 11, 9, 8, tzinfo=UTC)


def test_theme_from_option_then_config_then_feed_title(
    sessions: sessionmaker[Session], feed_server: FeedServer
) -> None:
    url = feed_server.serve("/feed", body=DRUPAL)
    (named,) = ingest(sessions, SourceConfig(url, theme="Goal 6: Clean water and sanitation"))
    assert named.themes == ["Goal 6: Clean water and sanitation"]
    (own,) = ingest(sessions, fixture_path("feed-drupal-water.rss"))
    assert own.themes == ["Water and Sanitation"] and own.joined == 3 and own.new == 0


def test_feed_with_missing_fields(sessions: sessionmaker[Session], feed_server: FeedServer) -> None:
    url = feed_server.serve("/term/8/feed", body=fixture_bytes("feed-missing-fields.rss"))
    (report,) = ingest(sessions, url)
    assert report.new == 4 and not report.ok  # one entry had nothing to store
    assert [(p.where, p.reason) for p in report.rejected] == [("entry 4", "no title and no description; left out")]
    reasons = {p.where: p.reason for p in report.problems}
    assert reasons["entry 1"] == "no title; derived one from the description"
    assert reasons["entry 2"] == "empty description"
    assert reasons["entry 3"] == "no guid and no link; identified by its text"
    assert reasons["entry 5"] == "title reads like a sentence; check the entry"
    found = practices(sessions)
    assert "Street vendors in Accra register online and get a licence in one visit" in found
    assert found["Apprenticeships in Green Construction"].summary == ""
    assert state(sessions, url).status == "partial"
    # Text-identified entries stay one practice when the feed is read again.
    (again,) = ingest(sessions, url)
    assert (again.new, again.unchanged) == (0, 4)


def test_changed_entry_updates_without_being_new(sessions: sessionmaker[Session], feed_server: FeedServer) -> None:
    url = feed_server.serve("/feed", body=DRUPAL)
    first = at("2026-11-16T10:00:00Z")
    ingest(sessions, url)
    memberships = count(sessions, Membership)
    second = at("2026-11-23T10:00:00Z")
    feed_server.serve("/feed", body=DRUPAL.replace(b"a third in two years", b"half in three years"))
    (report,) = ingest(sessions, url)
    assert (report.new, report.updated, report.unchanged, report.joined) == (0, 1, 2, 0)
    assert count(sessions, Membership) == memberships  # not new in its theme again
    lima = practices(sessions)["Neighbourhood Water Committees & Repair Teams in Lima"]
    assert lima.summary.endswith("Losses fell by half in three years.")
    assert (lima.first_seen_at, lima.updated_at) == (first, second)


def test_listing_and_feed_of_one_theme_give_one_practice_each(
    sessions: sessionmaker[Session], feed_server: FeedServer
) -> None:
    ingest(sessions, fixture_path("listing-water.txt"))
    url = feed_server.serve("/feed", body=DRUPAL)
    (report,) = ingest(sessions, url)
    assert (report.new, report.updated) == (1, 2)  # Kisumu and the safety plans were already stored
    assert count(sessions, Practice) == 6 and count(sessions, Membership) == 6
    (listing_again,) = ingest(sessions, fixture_path("listing-water.txt"))
    assert (listing_again.new, listing_again.updated, listing_again.unchanged) == (0, 0, 5)
    kiosks = practices(sessions)["Community Water Kiosks in Kisumu, Kenya: Affordable Water for Informal Settlements"]
    assert kiosks.url == "https://practices.example.org/practice/community-water-kiosks-kisumu"  # the feed's
    with sessions() as s:
        keys = s.scalar(select(func.count()).select_from(PracticeKey).where(PracticeKey.practice_id == kiosks.id))
    assert keys == 4  # text, text with its exact title, guid, url


def test_conditional_get(sessions: sessionmaker[Session], feed_server: FeedServer) -> None:
    url = feed_server.serve("/feed", body=DRUPAL, etag='"v1"', last_modified="Thu, 12 Nov 2026 08:00:00 GMT")
    (first,) = ingest(sessions, url)
    assert first.new == 3
    assert (state(sessions, url).etag, state(sessions, url).last_modified) == ('"v1"', "Thu, 12 Nov 2026 08:00:00 GMT")
    (second,) = ingest(sessions, url)
    assert second.ok and second.not_modified and second.new == second.unchanged == 0
    sent = feed_server.hits("/feed")[1].headers
    assert sent["if-none-match"] == '"v1"' and sent["if-modified-since"] == "Thu, 12 Nov 2026 08:00:00 GMT"
    assert state(sessions, url).status == "not-modified"
    # Last-Modified alone is enough too.
    url2 = feed_server.serve("/feed2", body=DRUPAL, last_modified="Thu, 12 Nov 2026 08:00:00 GMT")
    ingest(sessions, url2)
    (again,) = ingest(sessions, url2)
    assert again.not_modified


def test_5xx_is_retried_with_backoff(sessions: sessionmaker[Session], feed_server: FeedServer) -> None:
    url = feed_server.serve("/flaky", body=DRUPAL, fail_first=2)
    (report,) = ingest(sessions, url)
    assert report.ok and report.new == 3 and len(feed_server.hits("/flaky")) == 3


def test_server_down_fails_the_source_and_no_other(sessions: sessionmaker[Session], feed_server: FeedServer) -> None:
    down = feed_server.serve("/down", body=DRUPAL, fail_first=99)
    good = feed_server.serve("/good", body=fixture_bytes("feed-atom-migration.atom"))
    reports = ingest(sessions, down, good)
    assert reports[0].error == f"{down}: HTTP 503 Service Unavailable (tried 3 times)"
    assert reports[1].ok and reports[1].new == 2
    assert len(feed_server.hits("/down")) == 3
    assert state(sessions, down).status == "failed" and state(sessions, down).failures == 1


def test_timeout_is_retried_then_fails(sessions: sessionmaker[Session], feed_server: FeedServer) -> None:
    url = feed_server.serve("/slow", body=DRUPAL, delay=1.0)
    policy = HttpPolicy(timeout=0.2, retries=2, backoff=0.01)
    (report,) = ingest(sessions, url, policy=policy)
    assert report.error is not None and "no answer within 0.2 s" in report.error and "tried 2 times" in report.error
    assert len(feed_server.hits("/slow")) == 2


def test_dead_url(sessions: sessionmaker[Session]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    (report,) = ingest(sessions, f"http://127.0.0.1:{port}/feed", policy=HttpPolicy(retries=2, backoff=0.01))
    assert report.error is not None and "connection failed" in report.error and f"127.0.0.1:{port}" in report.error


def test_404_names_the_url_and_keeps_what_was_stored(sessions: sessionmaker[Session], feed_server: FeedServer) -> None:
    url = feed_server.serve("/feed", body=DRUPAL)
    ingest(sessions, url)
    del feed_server.routes["/feed"]
    (report,) = ingest(sessions, url)
    # What happens next (read again by the next run, or not) is the CLI's to say: it knows what is configured.
    assert report.error == f"{url}: HTTP 404 Not Found" and report.hint == "check the URL"
    assert len(feed_server.hits("/feed")) == 2  # a 404 is not retried
    assert count(sessions, Practice) == 3


def test_410_marks_the_source_gone(sessions: sessionmaker[Session], feed_server: FeedServer) -> None:
    url = feed_server.serve("/old", status=410, body=b"gone")
    (report,) = ingest(sessions, url, skip_gone=True)
    assert report.error is not None and "410 Gone" in report.error and "[[sources]]" in report.hint
    assert state(sessions, url).status == "gone"
    (skipped,) = ingest(sessions, url, skip_gone=True)  # runs and the worker stop fetching it
    assert skipped.error is not None and "gone" in skipped.error
    assert len(feed_server.hits("/old")) == 1
    feed_server.serve("/old", body=DRUPAL)  # an operator may still ask for it by name
    (asked,) = ingest(sessions, url)
    assert asked.ok and state(sessions, url).status == "ok"


def test_redirects_are_followed_up_to_the_limit(sessions: sessionmaker[Session], feed_server: FeedServer) -> None:
    feed_server.serve("/moved", redirect_to="/feed")
    feed_server.serve("/feed", body=DRUPAL)
    (followed,) = ingest(sessions, feed_server.url("/moved"))
    assert followed.ok and followed.new == 3
    loop = feed_server.serve("/loop", redirect_to="/loop")
    (looping,) = ingest(sessions, loop)
    assert looping.error == f"{loop}: more than 3 redirects"


def test_size_limit(sessions: sessionmaker[Session], feed_server: FeedServer) -> None:
    url = feed_server.serve("/big", body=DRUPAL)
    (report,) = ingest(sessions, url, policy=HttpPolicy(max_bytes=1000, retries=1))
    assert report.error is not None and "over the 1,000 byte limit" in report.error
    assert count(sessions, Practice) == 0


def test_truncated_feed_stores_nothing_and_loses_nothing(
    sessions: sessionmaker[Session], feed_server: FeedServer
) -> None:
    url = feed_server.serve("/feed", body=DRUPAL, etag='"v1"')
    ingest(sessions, url)
    before = practices(sessions)
    feed_server.serve("/feed", body=fixture_bytes("feed-truncated.rss"), etag='"v2"')
    (report,) = ingest(sessions, url)
    assert report.error is not None
    assert report.error.startswith(f"{url}: the feed is not well-formed XML at line 36")
    assert "truncated" in report.error
    assert {t: p.summary for t, p in practices(sessions).items()} == {t: p.summary for t, p in before.items()}
    # The broken copy's validators were not kept: the next fetch asks for the whole feed again.
    assert state(sessions, url).etag == '"v1"' and state(sessions, url).status == "failed"


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("page.html", "an HTML page, not a feed"),
        ("not-a-listing.txt", "cannot tell what kind of source this is"),
        ("undecodable.txt", "not UTF-8"),
    ],
)
def test_sources_that_are_not_feeds(sessions: sessionmaker[Session], name: str, error: str) -> None:
    (report,) = ingest(sessions, fixture_path(name))
    assert report.error is not None and report.error.startswith(fixture_path(name)) and error in report.error
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Theme)) == 0
