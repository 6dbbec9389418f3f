"""What a newcomer found trying the service in its three roles (subscriber, feed reader, operator), third round:
each promise the pages, mails, feeds and commands make is kept."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

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


def test_a_misspelt_theme_in_the_config_creates_nothing_and_says_what_it_nearly_is(
    run_cli: Cli, tmp_path: Path
) -> None:
    config = run_cli.config
    config.write_text(
        config.read_text(encoding="utf-8")
        + f'\n[[sources]]\npath = "{fixture_path("listing-water.txt")}"\n'
        + '\n[[subscribers]]\nemail = "ada@example.org"\nthemes = ["Water and Sanitaton"]\n'
        + '\n[[subscribers]]\nemail = "bo@example.org"\nthemes = ["Water and Sanitation"]\n',
        encoding="utf-8",
    )
    done = run_cli("run", now="2026-11-10T10:00:00Z")  # no --once: one cycle is what `run` means
    assert done.exit_code == 1
    assert (
        f"error: subscribers #1 (from {config}): ada@example.org: unknown theme(s): Water and Sanitaton" in done.stderr
    )
    assert "hint: did you mean 'Water and Sanitaton' -> 'Water and Sanitation'?" in done.stderr, done.stderr
    themes = json.loads(run_cli("themes", "--json").output)
    assert [t["name"] for t in themes] == ["Water and Sanitation"]  # nothing created by the typo
    # The one spelt right is there, and got the practices of this run's ingest in this run.
    listed = json.loads(run_cli("subscribers", "list", "--json").output)
    assert [s["email"] for s in listed] == ["bo@example.org"]
    assert "1 sent" in done.output or '"sent": 1' in done.output, done.output


def test_a_bad_address_in_the_config_names_its_table_and_file(tmp_path: Path) -> None:
    from digest.config import load_settings
    from digest.errors import ConfigError

    path = tmp_path / "digest.toml"
    path.write_text('[[subscribers]]\nemail = "not an address"\nthemes = ["Water"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"subscribers #1 \(from {path}\): email 'not an address' is not a"):
        load_settings(path, environ={})


def test_status_speaks_in_words(run_cli: Cli) -> None:
    run_cli("ingest", fixture_path("listing-water.txt"), now="2026-11-10T10:00:00Z")
    from digest import clock
    from digest.config import load_settings
    from digest.store import db

    settings = load_settings(run_cli.config)
    from digest.store.models import JobRun
    from digest.store.states import JobOutcome

    with db.transaction(db.session_factory(db.make_engine(settings.database_url))) as session:
        at = clock.parse_instant("2026-11-10T10:00:00Z")
        counts = json.dumps({"sources": 2, "new": 5})
        session.add(JobRun(job_id="poll", run_id="r", holder="h:1", started_at=at, finished_at=at,
                           outcome=JobOutcome.OK, counts=counts))  # fmt: skip
    shown = run_cli("status").output
    assert "{" not in shown and "'" not in shown, shown
    assert ": 2 sources, 5 new" in shown, shown


def test_an_unchanged_problem_is_said_once(run_cli: Cli) -> None:
    """A listing with a derived title: the problem is reported when the practice comes, not on every run (a cron
    job's mail would repeat it each time)."""
    first = run_cli("ingest", fixture_path("listing-water.txt"), "--json", now="2026-11-10T10:00:00Z")
    said = json.loads(first.output)[0]["problems"]
    assert said, first.output
    again = run_cli("ingest", fixture_path("listing-water.txt"), "--json", now="2026-11-11T10:00:00Z")
    assert [p for p in json.loads(again.output)[0]["problems"] if p["where"] != "file"] == [], again.output


def test_the_operator_page_offers_no_language_switcher(tmp_path: Path, run_cli: Cli) -> None:
    from dataclasses import replace

    from argon2 import PasswordHasher

    from digest.config import load_settings
    from digest.web import create_app
    from tests.test_operators import basic

    settings = replace(load_settings(run_cli.config), operator_password_hash=PasswordHasher().hash("pw"))
    client = create_app(settings).test_client()
    page = client.get("/operator/", headers=basic("pw")).text
    assert 'class="languages"' not in page and '<html lang="en">' in page
    assert 'class="languages"' in client.get("/").text  # the public pages keep theirs
