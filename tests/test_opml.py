"""OPML 2.0 lists of the feeds: /feeds.opml (every theme's feed and all practices') and a subscriber's own
(/feeds/me/TOKEN.opml), checked against the themes, against the specification's required parts, and imported by a
real feed reader (Debian's newsboat) from a real `digest serve`, which then reads every feed they name."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest

from tests.conftest import fixture_path, free_port
from tests.webapp import WATER, Web, confirmed
from tests.webserver import environment, serving, write_config


def _outlines(data: bytes) -> list[dict[str, str]]:
    root = ElementTree.fromstring(data)
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.findtext("head/title") and root.find("body") is not None
    return [dict(o.attrib) for o in root.iterfind("body/outline")]


def test_the_opml_lists_every_feed_with_its_page_and_answers_conditional_gets(web: Web) -> None:
    client = web.client()
    answer = client.get("/feeds.opml")
    assert answer.status_code == 200 and answer.mimetype == "text/x-opml"
    outlines = _outlines(answer.data)
    with web.sessions() as session:
        from digest.store import queries

        themes = queries.themes(session)
    base = web.settings.base_url
    assert [o["xmlUrl"] for o in outlines] == [f"{base}/feeds/all.atom"] + [
        f"{base}/feeds/{t.slug}.atom" for t in themes
    ]
    assert [o["text"] for o in outlines[1:]] == [t.name for t in themes]
    assert all(o["type"] == "rss" and o["htmlUrl"].startswith(base) for o in outlines)
    assert all(client.get(o["xmlUrl"].removeprefix(base)).status_code == 200 for o in outlines)
    # The home page names it, for people and for browsers' discovery.
    home = client.get("/").text
    assert 'type="text/x-opml"' in home and 'href="/feeds.opml"' in home
    # Conditional GET: the same bytes, a 304.
    again = client.get("/feeds.opml", headers={"If-None-Match": answer.headers["ETag"]})
    assert again.status_code == 304 and client.get("/feeds.opml").data == answer.data


def test_a_subscribers_opml_holds_their_feed_and_their_themes_and_dies_with_the_link(web: Web) -> None:
    manage = confirmed(web, "ada@example.org", WATER)
    client = web.client()
    page = client.get(manage).text
    link = page.split('type="text/x-opml"', 1)[0].rsplit('href="', 1)[1].split('"', 1)[0]
    path = link.removeprefix(web.settings.base_url)
    answer = client.get(path)
    assert answer.status_code == 200 and "private" in answer.headers["Cache-Control"]
    outlines = _outlines(answer.data)
    assert outlines[0]["xmlUrl"] == link[: -len(".opml")] + ".atom"
    assert [o["xmlUrl"].rsplit("/", 1)[1] for o in outlines[1:]] == [f"{WATER}.atom"]
    # A new feed link revokes this one too.
    from tests.webapp import csrf

    client.post(manage, data={"csrf_token": csrf(client, manage), "action": "feed-link"})
    assert client.get(path).status_code == 404
    assert client.get("/feeds/me/not-a-token.opml").status_code == 404


def test_newsboat_imports_the_opml_and_reads_every_feed(tmp_path: Path) -> None:
    newsboat = shutil.which("newsboat")
    if newsboat is None:
        pytest.skip("newsboat is not installed here (.ci/run installs it: apt-get install newsboat)")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path / "digest.toml", f"sqlite:///{tmp_path / 'digest.db'}", base, "",
                          environment="development")  # fmt: skip
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "digest",
            "ingest",
            fixture_path("listing-water.txt"),
            fixture_path("listing-goal6.txt"),
        ],
        env=environment(config),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    with serving(config, port):
        opml = tmp_path / "feeds.opml"
        opml.write_bytes(httpx.get(base + "/feeds.opml", timeout=30).content)
        urls, cache = tmp_path / "urls", tmp_path / "cache.db"
        urls.write_text("", encoding="utf-8")
        reader = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "TERM": "dumb"}
        imported = subprocess.run(
            [newsboat, "-u", str(urls), "-c", str(cache), "-C", "/dev/null", "-i", str(opml)],
            capture_output=True, text=True, timeout=120, env=reader,
        )  # fmt: skip
        assert imported.returncode == 0, imported.stderr
        listed = [line.split()[0] for line in urls.read_text(encoding="utf-8").splitlines() if line.strip()]
        assert sorted(listed) == sorted(o["xmlUrl"] for o in _outlines(opml.read_bytes())), listed
        reloaded = subprocess.run(
            [newsboat, "-u", str(urls), "-c", str(cache), "-C", "/dev/null", "-x", "reload"],
            capture_output=True, text=True, timeout=120, env=reader,
        )  # fmt: skip
        assert reloaded.returncode == 0, reloaded.stderr
    with sqlite3.connect(cache) as db:
        feeds = {url for (url,) in db.execute("SELECT rssurl FROM rss_feed WHERE title != ''")}
        items = db.execute("SELECT count(*) FROM rss_item").fetchone()[0]
    assert feeds == set(listed) and items >= 7, (feeds, items)  # every feed it names was read, titled
