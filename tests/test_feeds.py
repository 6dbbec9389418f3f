"""Atom feeds: valid, complete, permanent ids, byte-identical when nothing changed, atomic writes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import feedparser
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings, SourceConfig
from digest.feeds.files import build_feeds
from digest.ingest import ingest_sources
from tests.conftest import at, fixture_path


def ingest(sessions: sessionmaker[Session], *names: str) -> None:
    from digest import clock

    assert all(r.ok for r in ingest_sources(sessions, [SourceConfig(fixture_path(n)) for n in names], clock.now()))


def build(sessions: sessionmaker[Session], settings: Settings) -> dict[str, bool]:
    with sessions() as s:
        return {Path(r.path).name: r.changed for r in build_feeds(s, settings)}


def test_one_feed_per_theme_and_one_for_all(sessions: sessionmaker[Session], settings: Settings) -> None:
    at("2026-11-10T10:00:00Z")
    ingest(sessions, "listing-water.txt", "listing-goal6.txt")
    assert set(build(sessions, settings)) == {
        "water-and-sanitation.atom",
        "goal-6-clean-water-and-sanitation.atom",
        "all.atom",
        # Each with its JSON Feed beside it.
        "water-and-sanitation.json",
        "goal-6-clean-water-and-sanitation.json",
        "all.json",
    }


def test_feeds_parse_without_bozo_and_carry_required_elements(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    at("2026-11-10T10:00:00Z")
    ingest(sessions, "listing-water.txt", "listing-goal6.txt", "listing-hostile.txt")
    build(sessions, settings)
    for path in Path(settings.feeds_dir).glob("*.atom"):
        parsed = feedparser.parse(path.read_bytes())
        assert not parsed.bozo, (path, parsed.get("bozo_exception"))
        feed = parsed.feed
        assert feed.id.startswith("tag:digest.test,2026-01-01:")
        assert feed.title and feed.updated and feed.author
        assert any(link.rel == "self" and link.href == f"https://digest.test/feeds/{path.name}" for link in feed.links)
        assert parsed.entries
        for entry in parsed.entries:
            assert entry.id.startswith("tag:digest.test,2026-01-01:practice/")
            assert entry.title and entry.updated and entry.content
    water = feedparser.parse((Path(settings.feeds_dir) / "water-and-sanitation.atom").read_bytes())
    assert len(water.entries) == 6
    everything = feedparser.parse((Path(settings.feeds_dir) / "all.atom").read_bytes())
    assert len(everything.entries) == 8  # the kiosk once
    assert len({e.id for e in everything.entries}) == 8
    hostile = next(e for e in water.entries if "Safe Streets" in e.title)
    assert hostile.title == '<script>alert("x")</script> Safe Streets & "Lights"'  # text, escaped in the XML
    assert b"<script>" not in (Path(settings.feeds_dir) / "water-and-sanitation.atom").read_bytes()


def test_newest_first_and_limited(sessions: sessionmaker[Session], settings: Settings) -> None:
    at("2026-11-10T10:00:00Z")
    ingest(sessions, "listing-water.txt")
    at("2026-11-17T10:00:00Z")
    ingest(sessions, "listing-water-week2.txt")
    build(sessions, replace(settings, feed_max_entries=3))
    parsed = feedparser.parse((Path(settings.feeds_dir) / "water-and-sanitation.atom").read_bytes())
    assert len(parsed.entries) == 3
    assert parsed.entries[0].title == "Greywater Reuse in Jordanian Mosques"
    assert parsed.feed.updated.startswith("2026-11-17T10:00:00")


def test_byte_identical_when_nothing_changed(sessions: sessionmaker[Session], settings: Settings) -> None:
    at("2026-11-10T10:00:00Z")
    ingest(sessions, "listing-water.txt")
    build(sessions, settings)
    path = Path(settings.feeds_dir) / "water-and-sanitation.atom"
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    at("2026-11-12T10:00:00Z")  # time passes; nothing new
    ingest(sessions, "listing-water.txt")
    assert set(build(sessions, settings).values()) == {False}
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    ingest(sessions, "listing-water-week2.txt")
    assert build(sessions, settings)["water-and-sanitation.atom"] is True
    assert path.read_bytes() != before
    assert not [p for p in Path(settings.feeds_dir).iterdir() if p.name.startswith(".")]  # no temp files left
