"""What a newcomer found trying the service in its three roles (subscriber, feed reader, operator), third round:
each promise the pages, mails, feeds and commands make is kept."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

from tests.conftest import Cli, fixture_path, free_port
from tests.webserver import serving, write_config

WATER = "water-and-sanitation"


def test_a_304_keeps_the_connection_open(tmp_path: Path) -> None:
    """Feed readers poll with validators: the answer they get most is a 304, and it must not cost a connection."""
    port = free_port()
    config = write_config(
        tmp_path / "digest.toml", f"sqlite:///{tmp_path / 'digest.db'}", f"http://127.0.0.1:{port}", "",
        environment="development",
    )  # fmt: skip
    from digest import clock
    from digest.config import SourceConfig, load_settings
    from digest.ingest import ingest_sources
    from digest.store import db

    settings = load_settings(config)
    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    ingest_sources(db.session_factory(engine), [SourceConfig(fixture_path("listing-water.txt"))], clock.now())
    with serving(config, port):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", f"/feeds/{WATER}.atom")
        first = connection.getresponse()
        first.read()
        etag = first.getheader("ETag")
        assert first.status == 200 and etag
        opened = connection.sock
        for _ in range(3):
            connection.request("GET", f"/feeds/{WATER}.atom", headers={"If-None-Match": etag})
            again = connection.getresponse()
            again.read()
            assert again.status == 304 and again.getheader("Connection") is None, again.getheaders()
            assert not again.will_close and connection.sock is opened  # the same connection, still open
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200 and connection.sock is opened
        connection.close()


def test_the_sources_publication_date_reaches_feeds_pages_and_the_cli(run_cli: Cli, tmp_path: Path) -> None:
    """An export's `published` (2 November) is not the day it was added here (10 November): the feed's entry
    carries it as <published>, the practice's page and its theme's page show it, `practices --json` has it."""
    import feedparser

    from digest.web import create_app

    run_cli("ingest", fixture_path("export-practices.json"), now="2026-11-10T10:00:00Z")
    listed = json.loads(run_cli("practices", "--json").output)
    wardens = next(p for p in listed if p["title"] == "Flood Wardens in Jakarta")
    assert wardens["published"].startswith("2026-11-02") and wardens["added"].startswith("2026-11-10")
    assert all(p["published"] is None for p in listed if p["title"] != "Flood Wardens in Jakarta")
    assert run_cli("feeds", now="2026-11-10T10:00:00Z").exit_code == 0
    feed = feedparser.parse((tmp_path / "feeds" / "urban-resilience.atom").read_bytes())
    entry = next(e for e in feed.entries if e.title == "Flood Wardens in Jakarta")
    assert entry.published.startswith("2026-11-02") and entry.updated.startswith("2026-11-10")
    other = next(e for e in feed.entries if e.title != "Flood Wardens in Jakarta")
    assert other.published.startswith("2026-11-10")  # a source that says nothing: when it was first seen here

    from digest.config import load_settings

    client = create_app(load_settings(run_cli.config)).test_client()
    theme = client.get("/themes/urban-resilience").text
    assert theme.count("Published Nov 2, 2026.") == 1, theme
    uid = theme.split('">Flood Wardens in Jakarta</a>', 1)[0].rsplit('href="/practices/', 1)[1]
    page = client.get(f"/practices/{uid}").text
    assert "Published Nov 2, 2026." in page and "Added Nov 10, 2026." in page, page
